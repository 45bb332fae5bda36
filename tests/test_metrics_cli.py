"""--mode=evaluate (progan_tf.cli.evaluate, progan_tf.metrics.report) and the periodic small-sample SWD."""

import json

import numpy as np
import pytest
from PIL import Image

from progan_tf.errors import UserInputError
from progan_tf.metrics import report, sources
from progan_tf.metrics.evaluate import evaluate
from progan_tf.metrics.periodic import small_swd
from tests.test_generate import main_in_process, run_main, tiny_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory)


def write_folder(folder, images):
    folder.mkdir(parents=True)
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{index:03d}.png")
    return folder


def test_metric_names_and_result_file_names():
    assert report.metric_names(["swd", "msssim", "FID", "ms_ssim"]) == ["swd", "ms_ssim", "fid"]
    assert report.metric_names(["msssim_real"]) == ["ms_ssim_real"]
    with pytest.raises(UserInputError, match="Received: metrics=swd,psnr"):
        report.metric_names(["swd", "psnr"])
    assert report.results_file_name(0.64) == "metrics-kimg000000.640.json"
    assert report.results_file_name().startswith("metrics-2")
    record = report.stats_record({"swd_avg": 1.5, "num_images": {"real": 4, "fake": 4}}, 0.64, "c.npz")
    assert record == {
        "kind": "evaluate",
        "kimg": 0.64,
        "checkpoint": "c.npz",
        "swd_avg": 1.5,
        "num_images_real": 4,
        "num_images_fake": 4,
    }


def test_identical_image_sets_give_swd_near_zero(run, tmp_path):
    _, data_dir = run
    textured = np.concatenate(list(sources.pyramid_batches(str(data_dir), 16)))
    noise = np.random.default_rng(0).integers(0, 256, textured.shape, dtype=np.uint8)

    def swd(a, b):
        return evaluate(["swd"], lambda: iter([a]), lambda: iter([b]), num_images=len(a), verbose=False)["swd_avg"]

    # Real and fake patches are drawn at independent random positions, so two identical textured
    # sets differ only by that sampling noise: far below a real mismatch ...
    assert swd(textured, textured) < 0.2 * swd(textured, noise)
    # ... and exactly nothing when position does not matter (flat images): the pipeline adds no bias.
    flat = np.broadcast_to(
        np.random.default_rng(1).integers(0, 256, (32, 1, 1, 3), dtype=np.uint8), (32, 16, 16, 3)
    ).copy()
    assert swd(flat, flat) < 1e-3


def test_evaluate_cli_on_a_run_writes_json_and_stats_and_matches_small_swd(run, tmp_path):
    run_dir, data_dir = run
    result = run_main(
        "--mode=evaluate", f"--run_dir={run_dir}", "--metrics=swd,msssim", "--num_images=32", "--generate_seed=7"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "swd_avg" in result.stdout and "ms_ssim" in result.stdout and "metric" in result.stdout
    report = json.loads((run_dir / "metrics-kimg000000.640.json").read_text())
    assert (
        report["kimg"] == 0.64 and report["resolution"] == 16 and report["checkpoint"].endswith("checkpoints/ckpt-640")
    )
    assert str(data_dir) in report["real"] and "EMA generator" in report["fake"]
    metrics = report["metrics"]
    assert metrics["num_images"] == {"real": 32, "fake": 32} and metrics["ms_ssim_pairs"] == 16
    assert 0 < metrics["ms_ssim"] <= 1 and metrics["swd_avg"] > 0
    last = json.loads((run_dir / "stats.jsonl").read_text().splitlines()[-1])
    assert last["kind"] == "evaluate" and last["kimg"] == 0.64 and last["swd_avg"] == pytest.approx(metrics["swd_avg"])

    # The periodic SWD sees the same reals, latents (seed) and patch positions: the same value.
    from progan_tf import runs

    model, config, _ = runs.load_trained_model(run_dir)
    periodic = small_swd(model.gs_model, config.data_dir, 16, 32, seed=7)
    assert periodic["eval_swd_avg"] == pytest.approx(metrics["swd_avg"], rel=1e-5)
    assert periodic["eval_num_images"] == 32 and set(periodic) >= {"eval_swd_16", "eval_sec"}
    assert small_swd(model.gs_model, config.data_dir, 8, 32, seed=7) == {}  # SWD needs >= 16 px
    assert small_swd(model.gs_model, config.data_dir, 16, 10_000, seed=7)["eval_num_images"] == 64  # capped


def test_evaluate_cli_two_folders_and_bad_paths(run, tmp_path, capsys):
    _, data_dir = run
    flat = np.broadcast_to(np.random.default_rng(2).integers(0, 256, (8, 1, 1, 3), dtype=np.uint8), (8, 16, 16, 3))
    real = write_folder(tmp_path / "real", flat)
    fake = write_folder(tmp_path / "fake", flat)
    out = tmp_path / "out"
    code, err = main_in_process(
        capsys,
        "--mode=evaluate",
        f"--real_dir={real}",
        f"--fake_dir={fake}",
        "--metrics=swd",
        "--num_images=8",
        f"--output_dir={out}",
    )
    assert code == 0, err
    (path,) = out.glob("metrics-*.json")
    report = json.loads(path.read_text())
    assert report["resolution"] == 16 and report["kimg"] is None
    assert report["metrics"]["swd_avg"] < 1e-3  # identical (flat) image sets

    # A pyramid as the fake side, against itself: every level and the folder logic are exercised.
    code, err = main_in_process(
        capsys,
        "--mode=evaluate",
        f"--real_dir={data_dir}",
        f"--fake_dir={data_dir}",
        "--metrics=msssim_real",
        "--num_images=8",
        f"--output_dir={out}",
    )
    assert code == 0, err

    result = run_main("--mode=evaluate", f"--real_dir={tmp_path / 'missing'}", f"--fake_dir={fake}")
    assert result.returncode == 1
    # TensorFlow's C++ start-up lines aside, stderr holds one line: ours, no traceback.
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in result.stderr and "missing" in line
    code, err = main_in_process(capsys, "--mode=evaluate", f"--fake_dir={fake}")
    assert code == 1 and err.count("\n") == 1 and "real_dir" in err
    code, err = main_in_process(capsys, "--mode=evaluate", f"--real_dir={real}", f"--savedmodel={tmp_path}")
    assert code == 1 and err.count("\n") == 1 and "saved_model.pb" in err
    code, err = main_in_process(
        capsys, "--mode=evaluate", f"--real_dir={real}", f"--fake_dir={fake}", "--metrics=swd,bogus"
    )
    assert code == 1 and "bogus" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = main_in_process(capsys, "--mode=evaluate", f"--real_dir={empty}", f"--fake_dir={fake}")
    assert code == 1 and err.count("\n") == 1 and "no images" in err
