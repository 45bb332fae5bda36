"""--mode=generate: the SavedModel and the checkpoint's EMA generator agree; strips, walks and files.

`tiny_run` (also used by test_explain.py and test_report.py) writes a real run directory
without training: config.json, two checkpoints (16x16 fade-in at alpha 0.5, 16x16 stabilised) and
the export of the EMA generator. The EMA weights are perturbed away from G's so that using the raw
generator instead of the EMA one would show.
"""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
LATENT_SIZE = 16
RESOLUTION = 16
_RUNS = {}


def tiny_run(tmp_path_factory):
    """(run_dir, data_dir) of a 16x16 run; built once per test process."""
    if "run" in _RUNS:
        return _RUNS["run"]
    from datasets.build import build_pyramid
    from progan_tf import checkpoint as ckpt_lib
    from progan_tf import export
    from progan_tf.config import TrainConfig
    from progan_tf.networks import NetworkConfig
    from progan_tf.progan import ProGAN
    from progan_tf.schedule import ScheduleConfig, phase_at

    root = tmp_path_factory.mktemp("tiny_run")
    data_dir, run_dir = root / "data", root / "run"
    build_pyramid("synthetic", str(data_dir), RESOLUTION, num_images=64, num_workers=0, progress=False)
    network = NetworkConfig(resolution=RESOLUTION, latent_size=LATENT_SIZE, fmap_base=64, fmap_max=16)
    schedule = ScheduleConfig(
        final_resolution=RESOLUTION, stabilize_kimg=0.128, transition_kimg=0.128, total_kimg=0.64, default_batch_size=8
    )
    config = TrainConfig(data_dir=str(data_dir), run_dir=str(run_dir), network=network, schedule=schedule, seed=3)
    run_dir.mkdir()
    (run_dir / "config.json").write_text(config.to_json())
    model = ProGAN(network, seed=config.seed)
    rng = np.random.default_rng(0)
    model.ema_generator.set_weights(
        [
            w + 0.3 * np.std(w) * rng.standard_normal(w.shape).astype(w.dtype) if w.ndim else w
            for w in model.generator.get_weights()
        ]
    )
    for images_shown in (448, 640):  # 16x16 fade-in (alpha 0.5), then the final stabilised stage
        phase = phase_at(schedule, images_shown - 1)
        model.images_shown.assign(images_shown)
        model.start_phase(phase)
        meta = {"images_shown": images_shown, "phase_index": phase.index, "phase_begin_images": phase.start_images}
        ckpt_lib.save_checkpoint(run_dir / "checkpoints", model, meta, keep=0)
    export.export_generator(model.gs_model, run_dir / "export", LATENT_SIZE)
    _RUNS["run"] = (run_dir, data_dir)
    return _RUNS["run"]


def subprocess_env():
    env = dict(os.environ)
    env.update(
        TF_CPP_MIN_LOG_LEVEL="3",
        CUDA_VISIBLE_DEVICES="",
        PYTHONPATH=str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    return env


def run_main(*args, timeout=240):
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "main.py"), *args],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def main_in_process(capsys, *args):
    """Runs main.py's `main` in this process with `args` as flags; returns (exit code, stderr)."""
    import main as main_module
    from progan_tf.flags import FLAGS, define_flags

    define_flags()
    FLAGS.unparse_flags()
    try:
        FLAGS(["main.py", *args])
        code = main_module.main(["main.py"])
    finally:
        FLAGS.unparse_flags()
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory)


def test_savedmodel_matches_the_checkpoints_ema_generator(run):
    from progan_tf import generators, images
    from progan_tf.latents import seeded_latents

    run_dir, _ = run
    from_run, model, _, saved = generators.load_run_generator(run_dir)
    from_export = generators.load_savedmodel(run_dir / "export")
    assert saved.images_shown == 640
    assert (from_run.latent_size, from_run.resolution) == (from_export.latent_size, from_export.resolution) == (16, 16)
    latents = seeded_latents(5, 12, LATENT_SIZE)
    a, b = from_run(latents, batch_size=5), from_export(latents)
    assert a.dtype == b.dtype == np.uint8 and a.shape == (12, 16, 16, 3)
    assert np.abs(a.astype(int) - b).max() <= 1
    # The export's own seeded endpoint draws the same latents.
    seeded = from_export.loaded.generate_from_seed(np.int64(5), np.int32(12)).numpy()
    assert np.abs(seeded.astype(int) - b).max() <= 1
    # ... and it is the EMA generator, not the raw one.
    raw = images.to_uint8(model.g_model(latents, training=False))
    assert np.abs(raw.astype(int) - a).max() > 10


def test_slerp_and_walk_latents():
    from progan_tf import generate

    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(8), rng.standard_normal(8)
    frames = generate.interpolation_latents(a, b, 7)
    na, nb = generate.normalize_latents(a), generate.normalize_latents(b)
    np.testing.assert_array_equal(frames[0], na)
    np.testing.assert_array_equal(frames[-1], nb)
    np.testing.assert_allclose(np.linalg.norm(frames, axis=1), np.sqrt(8), rtol=1e-5)  # stays on the sphere
    angles = np.arccos(np.clip(np.sum(frames[:-1] * frames[1:], axis=1) / 8, -1, 1))
    np.testing.assert_allclose(angles, angles[0], rtol=1e-4)  # constant angular speed
    keys = rng.standard_normal((3, 8))
    walk = generate.walk_latents(keys, 5)
    assert walk.shape == (15, 8)
    np.testing.assert_allclose(walk[::5], generate.normalize_latents(keys), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(walk, axis=1), np.sqrt(8), rtol=1e-5)
    # Looping: the step from the last frame back to the first is no larger than the largest step.
    steps = np.linalg.norm(np.diff(np.concatenate([walk, walk[:1]]), axis=0), axis=1)
    assert steps[-1] <= steps.max() + 1e-6
    with pytest.raises(ValueError):
        generate.interpolation_latents(a, b, 1)


def _tiles(strip, count, resolution):
    """Cuts a strip of `count` enlarged tiles and undoes the nearest-neighbour enlargement."""
    width = strip.shape[1] // count
    factor = width // resolution
    return [strip[:, i * width : (i + 1) * width][::factor, ::factor] for i in range(count)]


def test_generate_outputs_files_strip_endpoints_and_gif(run, tmp_path):
    from progan_tf import generate, generators
    from progan_tf.latents import seeded_latents

    run_dir, _ = run
    generator = generators.load_run_generator(run_dir)[0]
    written = generate.generate_outputs(
        generator, tmp_path, num_images=5, seed=2, interpolation_steps=6, walk_keyframes=3, frame_ms=50
    )
    assert [p.name for p in written["images"]] == [f"image-{i:04d}.png" for i in range(5)]
    singles = [np.asarray(Image.open(p)) for p in written["images"]]
    assert all(s.shape == (16, 16, 3) for s in singles)
    latents = seeded_latents(2, 5, LATENT_SIZE)
    assert np.abs(np.stack(singles).astype(int) - generator(latents)).max() == 0
    grid = np.asarray(Image.open(written["grid"]))
    assert grid.shape == (2 * 128, 3 * 128, 3)
    np.testing.assert_array_equal(grid[::8, ::8][:16, :16], singles[0])

    strip = np.asarray(Image.open(written["interpolation"]))
    tiles = _tiles(strip, 6, 16)
    # Endpoints are the first two images (latents normalised: the generator pixel-normalises anyway).
    assert np.abs(tiles[0].astype(int) - singles[0]).max() <= 1
    assert np.abs(tiles[-1].astype(int) - singles[1]).max() <= 1
    assert np.abs(tiles[2].astype(int) - singles[0]).max() > 0  # it does move in between

    with Image.open(written["walk"]) as gif:
        assert gif.n_frames == 3 * 6
        assert gif.info["loop"] == 0 and gif.info["duration"] == 50
        assert gif.size == (128, 128)
        gif.seek(0)
        first = np.asarray(gif.convert("RGB"))[::8, ::8]
    keyframe = generator(generate.normalize_latents(seeded_latents(3, 3, LATENT_SIZE))[:1])[0]
    # GIF palettes quantise colours; the first frame is keyframe 0 up to that.
    assert np.abs(first.astype(int) - keyframe).mean() < 6


def test_generate_cli_from_savedmodel_and_bad_paths(run, tmp_path, capsys):
    run_dir, _ = run
    out = tmp_path / "out"
    result = run_main(
        "--mode=generate",
        f"--savedmodel={run_dir / 'export'}",
        f"--output_dir={out}",
        "--num_images=4",
        "--interpolation_steps=3",
        "--walk_keyframes=2",
        "--generate_seed=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "grid.png",
        "image-0000.png",
        "image-0001.png",
        "image-0002.png",
        "image-0003.png",
        "interpolation.png",
        "walk.gif",
        "walk.mp4",
    ]
    with Image.open(out / "walk.gif") as gif:
        assert gif.n_frames == 6
    # Same seed from the checkpoint (in-process): the same images up to rounding.
    from progan_tf import generate, generators

    from_run = generators.load_run_generator(run_dir)[0]
    again = generate.generate_outputs(from_run, tmp_path / "again", num_images=4, seed=2)
    for path in again["images"]:
        diff = np.abs(np.asarray(Image.open(path)).astype(int) - np.asarray(Image.open(out / path.name)))
        assert diff.max() <= 1

    code, err = main_in_process(capsys, "--mode=generate", f"--savedmodel={tmp_path / 'missing'}")
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: ") and "missing" in err
    code, err = main_in_process(capsys, "--mode=generate", f"--run_dir={tmp_path}")
    assert code == 1 and err.count("\n") == 1 and "config.json" in err
    code, err = main_in_process(capsys, "--mode=generate")
    assert code == 1 and "--savedmodel" in err
    code, err = main_in_process(
        capsys, "--mode=generate", f"--run_dir={run_dir}", f"--checkpoint={tmp_path / 'nope.npz'}"
    )
    assert code == 1 and err.count("\n") == 1 and "nope.npz" in err


def test_walk_mp4_decodes_to_the_walk_frames(run, tmp_path):
    import imageio.v2 as imageio

    from progan_tf import generate, generators

    run_dir, _ = run
    generator = generators.load_run_generator(run_dir)[0]
    written = generate.generate_outputs(
        generator, tmp_path, num_images=2, seed=4, interpolation_steps=5, walk_keyframes=2, video_fps=10, video_size=64
    )
    assert written["video"] == tmp_path / "walk.mp4" and not list(tmp_path.glob("*.tmp*"))
    with imageio.get_reader(written["video"], format="FFMPEG") as reader:
        assert reader.get_meta_data()["fps"] == 10
        decoded = np.stack([frame for frame in reader.iter_data()])
    assert decoded.shape == (2 * 5, 64, 64, 3)
    keyframes = generate.seeded_latents(5, 2, LATENT_SIZE)
    expected = generator(generate.walk_latents(keyframes, 5)).repeat(4, axis=1).repeat(4, axis=2)
    # H.264 at high quality: close to the nearest-enlarged frames, and the frames are in order.
    errors = np.abs(decoded.astype(int) - expected).mean(axis=(1, 2, 3))
    assert errors.max() < 8, errors
    assert np.abs(decoded[0].astype(int) - expected[5]).mean() > errors[0]


def test_walk_falls_back_to_gif_only_without_a_video_writer(run, tmp_path, monkeypatch, capsys):
    from progan_tf import generate, generators

    run_dir, _ = run
    # A real user environment: IMAGEIO_FFMPEG_EXE names an ffmpeg that is not there.
    out = tmp_path / "no-ffmpeg"
    env = subprocess_env()
    env["IMAGEIO_FFMPEG_EXE"] = str(tmp_path / "missing" / "ffmpeg")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "main.py"),
            "--mode=generate",
            f"--savedmodel={run_dir / 'export'}",
            f"--output_dir={out}",
            "--num_images=2",
            "--interpolation_steps=3",
            "--walk_keyframes=2",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    notes = [line for line in result.stdout.splitlines() if "walk.mp4" in line]
    assert len(notes) == 1 and notes[0].startswith("walk.mp4 not written: IMAGEIO_FFMPEG_EXE names")
    assert notes[0].endswith("the walk is walk.gif only")
    assert (out / "walk.gif").is_file() and not list(out.glob("walk*.mp4"))
    # The package itself missing (an import that fails, as in an environment without it).
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    frames = generators.generator_from_keras(generators.load_run_generator(run_dir)[1].gs_model)(
        generate.seeded_latents(1, 3, LATENT_SIZE)
    )
    written = generate.save_walk(tmp_path, frames)
    assert set(written) == {"walk"} and not (tmp_path / "walk.mp4").exists()
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "walk.mp4 not written: the Python package imageio_ffmpeg is not installed "
        "(pip install imageio imageio-ffmpeg); the walk is walk.gif only"
    ]


def test_save_mp4_checks_its_size_and_rate(tmp_path):
    from progan_tf import generate
    from progan_tf.errors import UserInputError

    frames = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(UserInputError, match="multiple of 16"):
        generate.save_mp4(tmp_path / "a.mp4", frames, size=40)
    with pytest.raises(UserInputError, match="frame rate"):
        generate.save_mp4(tmp_path / "a.mp4", frames, fps=0)
    # Frames that do not divide the size are resized smoothly, single-channel ones made RGB.
    assert generate.video_frame(np.zeros((24, 24, 1), np.uint8), 64).shape == (64, 64, 3)
