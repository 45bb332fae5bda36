"""What a person sees: quiet start-up, the devices line, tick lines with %, elapsed, ETA and
start-up time, and sample grids (reals.png beside the fakes) with tiles of at least 64 px.

Real subprocesses of main.py and the dataset builder, with the environment a user has (no
TF_CPP_MIN_LOG_LEVEL), and once with the user's own TF_CPP_MIN_LOG_LEVEL, which must win.
"""

import json
import re

import numpy as np
import pytest
from PIL import Image

from tests import helpers_training as helpers

# TensorFlow's C++ log lines (absl format: severity letter, MMDD, time, thread, file:line]).
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog|cuInit", re.MULTILINE)


def user_env(**extra):
    env = helpers.subprocess_env(**extra)
    if "TF_CPP_MIN_LOG_LEVEL" not in extra:
        env.pop("TF_CPP_MIN_LOG_LEVEL")
    return env


@pytest.mark.slow
def test_quiet_start_progress_lines_and_sample_grids(tmp_path):
    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    build = helpers.run_checked(
        [
            helpers.sys.executable,
            "-m",
            "datasets.build",
            "--source=synthetic",
            f"--output_dir={data_dir}",
            "--resolution=8",
            "--num_images=32",
            "--num_workers=0",
        ],
        env=user_env(),
    )
    assert not TF_LOG_LINE.search(build.stderr), build.stderr
    assert build.stdout.startswith(f"wrote {data_dir}: 32 images")

    flags = helpers.main_flags(
        data_dir,
        run_dir,
        resolution=8,
        stabilize_kimg=0.064,
        transition_kimg=0.064,
        total_kimg=0.192,
        tick_kimg=0.032,
        sample_kimg=0.064,
        checkpoint_kimg=0.064,
    )
    result = helpers.run_checked(helpers.main_command(*flags), env=user_env())
    assert not TF_LOG_LINE.search(result.stderr), result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "devices: CPU only (no GPU visible); strategy: default (one device: /device:CPU:0)"

    ticks = [line for line in lines if line.startswith("tick ")]
    assert len(ticks) == 6
    position = re.compile(r"kimg +(\d+\.\d+)/0\.192 \( *(\d+\.\d)%\)")
    for line, images in zip(ticks, (32, 64, 96, 128, 160, 192)):
        kimg, percent = position.search(line).groups()
        assert float(kimg) == images / 1000 and float(percent) == round(100 * images / 192, 1)
        # A loaded machine can take over a minute to get here: "1m02s" as well as "42s".
        assert re.search(r"elapsed (\d+m)?\d+s +eta (\?|(\d+m)?\d+s)$", line), line
    # No ETA from the first phase alone (one cost measured), then one.
    assert [line.endswith("eta ?") for line in ticks] == [True, True, False, False, False, False]
    # Each phase's first tick reports its start-up (tracing) apart from img/s; the others don't.
    first_of_phase = [lines[i + 1] for i, line in enumerate(lines) if line.startswith("phase ")]
    assert len(first_of_phase) == 3
    for line in ticks:
        assert ("startup " in line) == (line in first_of_phase), line
    assert ticks[-1].endswith("eta 0s")

    records = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    assert [r["percent"] for r in records] == [round(100 * i / 192, 2) for i in (32, 64, 96, 128, 160, 192)]
    assert all(r["img_per_sec"] > 0 for r in records)
    assert [r["eta_sec"] is None for r in records] == [True, True, False, False, False, False]
    assert [r["startup_sec"] > 0 for r in records] == [True, False] * 3
    elapsed = [r["elapsed_sec"] for r in records]
    assert elapsed == sorted(elapsed)

    # reals.png: the first 4 training images at the final 8x8, each tile 8x enlarged (64 px).
    from progan_tf.data import iterate_images

    reals = np.asarray(Image.open(run_dir / "samples" / "reals.png"))
    first = np.concatenate(list(iterate_images(str(data_dir), 8, 4, limit=4)))
    assert reals.shape == (128, 128, 3)
    np.testing.assert_array_equal(reals[:64, 64:], np.kron(first[1], np.ones((8, 8, 1), np.uint8)))
    for name in ("fakes-ema-kimg000000.064.png", "fakes-raw-kimg000000.192.png"):  # 4x4 and 8x8 tiles
        assert Image.open(run_dir / "samples" / name).size == (128, 128)


def test_the_users_own_log_level_wins(tmp_path):
    # TF_CPP_MIN_LOG_LEVEL=0 from the user: main.py leaves TensorFlow's logging alone, so the
    # start-up lines it hides by default appear (TensorFlow 2.21 logs them on import).
    command = helpers.main_command("--dry_run", f"--data_dir={tmp_path}")
    loud = helpers.run_checked(command, env=user_env(TF_CPP_MIN_LOG_LEVEL="0"))
    assert TF_LOG_LINE.search(loud.stderr)
    quiet = helpers.run_checked(command, env=user_env())
    assert not TF_LOG_LINE.search(quiet.stderr) and quiet.stdout == loud.stdout


def test_devices_line_names_the_strategy():
    import tensorflow as tf

    from progan_tf import distribute

    if tf.config.list_logical_devices("GPU"):
        pytest.skip("the expected lines are those of a machine without a GPU")
    assert distribute.describe(tf.distribute.get_strategy()) == (
        "devices: CPU only (no GPU visible); strategy: default (one device: /device:CPU:0)"
    )
    mirrored = distribute.describe(tf.distribute.MirroredStrategy(["/cpu:0"]))
    assert mirrored.startswith("devices: CPU only (no GPU visible); strategy: MirroredStrategy over ")
    assert mirrored.endswith("device:CPU:0")
