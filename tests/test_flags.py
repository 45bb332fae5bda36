"""main.py's flags: the experiment flagfiles resolve to the paper's settings; bad values are one line."""

import subprocess
import sys

import pytest

from progan_tf.cli.train import train_config_from_flags
from progan_tf.errors import UserInputError
from progan_tf.flags import FLAGS, define_flags
from progan_tf.schedule import FADE_IN, phases
from tests.conftest import REPO_ROOT


@pytest.fixture
def parse():
    define_flags()

    def parse_flags(*args):
        FLAGS.unparse_flags()
        FLAGS(["main.py", *args])
        return FLAGS

    yield parse_flags
    FLAGS.unparse_flags()


def test_celebahq_flagfile_is_the_reference_preset(parse):
    parse(f"--flagfile={REPO_ROOT}/experiments/celebahq.flags")
    config = train_config_from_flags(FLAGS)
    assert (config.network.resolution, config.network.latent_size, config.network.fmap_base) == (1024, 512, 8192)
    all_phases = phases(config.schedule)
    assert len(all_phases) == 17
    fade_1024 = next(p for p in all_phases if p.resolution == 1024 and p.kind == FADE_IN)
    assert fade_1024.start_kimg == 9000 and all_phases[-1].end_kimg == 12000
    assert [config.schedule.batch_size(r) for r in (4, 32, 128, 1024)] == [128, 64, 16, 4]
    assert (config.loss.gp_weight, config.loss.drift_weight, config.optimizer.ema_beta) == (10.0, 0.001, 0.999)
    assert (config.optimizer.beta_1, config.optimizer.beta_2) == (0.0, 0.99)
    assert config.loss.gp_reference_scaling and config.mirror_augment


def test_8gpu_flagfile_overrides_batches_and_learning_rates(parse):
    parse(f"--flagfile={REPO_ROOT}/experiments/celebahq_8gpu.flags")
    config = train_config_from_flags(FLAGS)
    assert config.network.resolution == 1024
    assert [config.schedule.batch_size(r) for r in (4, 8, 16, 1024)] == [512, 256, 128, 4]
    assert [config.schedule.lr(r) for r in (64, 128, 256, 512, 1024)] == [0.001, 0.0015, 0.002, 0.003, 0.003]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch_sizes=4:x"], "entries must look like RESOLUTION:VALUE. Received: batch_sizes=4:x"),
        (["--batch_sizes=4"], "Received: batch_sizes=4"),
        (["--batch_sizes=5:16"], "Received: batch_sizes resolution=5"),
        (["--learning_rates=8:-1"], "values must be positive. Received: 8:-1"),
        (["--batch_sizes=4:6"], r"--mbstd_group_size\) must be divisible by the minibatch-stddev group size 4. "
                                r"Received: batch_size=6"),
        (["--resolution=100"], "Received: resolution=100"),
    ],
)
def test_bad_values_are_user_errors(parse, args, message):
    parse("--data_dir=somewhere", *args)
    with pytest.raises(UserInputError, match=message):
        train_config_from_flags(FLAGS)


def test_dry_run_prints_config_and_schedule_and_trains_nothing(tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "main.py", f"--flagfile={REPO_ROOT}/experiments/demo.flags", f"--run_dir={run_dir}",
         "--dry_run"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = [line for line in result.stdout.splitlines() if "x" in line and ("stabilize" in line or "fade_in" in line)]
    assert [row.split()[1] for row in table] == ["4x4", "8x8", "8x8", "16x16", "16x16", "32x32", "32x32"]
    assert '"ema_beta": 0.99' in result.stdout
    assert not run_dir.exists()
