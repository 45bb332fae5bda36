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


RESOLUTIONS = (4, 8, 16, 32, 64, 128, 256, 512, 1024)
# PAPER_NOTES.md, Training (corrected 2026-12-01): the reference v2 presets' global minibatch and
# learning rate per resolution, and the paper's own (v1) runs.
PRESETS = {
    "celebahq": (
        {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4, 1024: 4},
        {1024: 0.0015},
    ),
    "celebahq_2gpu": (
        {4: 256, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 8, 1024: 8},
        {512: 0.0015, 1024: 0.002},
    ),
    "celebahq_4gpu": (
        {4: 512, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16, 256: 16, 512: 16, 1024: 16},
        {256: 0.0015, 512: 0.002, 1024: 0.003},
    ),
    "celebahq_8gpu": (
        {4: 512, 8: 256, 16: 128, 32: 64, 64: 32, 128: 32, 256: 32, 512: 32, 1024: 32},
        {128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003},
    ),
    "celebahq_paper": (
        {4: 16, 8: 16, 16: 16, 32: 16, 64: 16, 128: 16, 256: 14, 512: 6, 1024: 3},
        {},
    ),
}


def _check_common_settings(config):
    assert (config.network.resolution, config.network.latent_size, config.network.fmap_base) == (1024, 512, 8192)
    assert (config.network.fmap_max, config.network.fmap_decay, config.network.fused_resample) == (512, 1.0, "auto")
    assert (config.loss.gp_weight, config.loss.drift_weight, config.optimizer.ema_beta) == (10.0, 0.001, 0.999)
    assert (config.optimizer.beta_1, config.optimizer.beta_2) == (0.0, 0.99)
    assert config.loss.gp_reference_scaling and config.mirror_augment and not config.mixed_precision


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_celebahq_presets_are_the_reference_tables(parse, preset):
    parse(f"--flagfile={REPO_ROOT}/experiments/{preset}.flags")
    config = train_config_from_flags(FLAGS)
    _check_common_settings(config)
    batches, rates = PRESETS[preset]
    assert {r: config.schedule.batch_size(r) for r in RESOLUTIONS} == batches
    assert {r: config.schedule.lr(r) for r in RESOLUTIONS} == {r: rates.get(r, 0.001) for r in RESOLUTIONS}
    # Every phase uses its resolution's entries (a fade the new resolution's).
    for phase in phases(config.schedule):
        expected = (batches[phase.resolution], rates.get(phase.resolution, 0.001))
        assert (phase.batch_size, phase.learning_rate) == expected
    assert config.run_dir == f"runs/{preset.replace('celebahq', 'celebahq-1024').replace('_', '-')}"


@pytest.mark.parametrize("preset", ["celebahq", "celebahq_2gpu", "celebahq_4gpu", "celebahq_8gpu"])
def test_v2_presets_timeline(parse, preset):
    parse(f"--flagfile={REPO_ROOT}/experiments/{preset}.flags")
    config = train_config_from_flags(FLAGS)
    all_phases = phases(config.schedule)
    assert len(all_phases) == 17
    fade_1024 = next(p for p in all_phases if p.resolution == 1024 and p.kind == FADE_IN)
    assert fade_1024.start_kimg == 9000 and all_phases[-1].end_kimg == 12000
    assert (config.network.mbstd_group_size, config.schedule.lr_rampup_kimg) == (4, 0.0)


def test_paper_preset_timeline_groups_and_ramp(parse):
    parse(f"--flagfile={REPO_ROOT}/experiments/celebahq_paper.flags")
    config = train_config_from_flags(FLAGS)
    all_phases = phases(config.schedule)
    assert [(p.resolution, p.kind, p.start_kimg, p.end_kimg) for p in all_phases[:3]] == [
        (4, "stabilize", 0, 800),
        (8, FADE_IN, 800, 1600),
        (8, "stabilize", 1600, 2400),
    ]
    fade_1024 = next(p for p in all_phases if p.resolution == 1024 and p.kind == FADE_IN)
    assert (fade_1024.start_kimg, all_phases[-1].end_kimg) == (12000, 19000)
    assert (config.network.mbstd_group_size, config.schedule.lr_rampup_kimg) == (16, 40.0)
    # Groups of min(16, minibatch): the whole minibatch of 14, 6 and 3 at 256, 512 and 1024.
    assert [min(16, config.schedule.batch_size(r)) for r in (128, 256, 512, 1024)] == [16, 14, 6, 3]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch_sizes=4:x"], "entries must look like RESOLUTION:VALUE. Received: batch_sizes=4:x"),
        (["--batch_sizes=4"], "Received: batch_sizes=4"),
        (["--batch_sizes=5:16"], "Received: batch_sizes resolution=5"),
        (["--learning_rates=8:-1"], "values must be positive. Received: 8:-1"),
        (
            ["--batch_sizes=4:6"],
            r"--mbstd_group_size\) must be divisible by the minibatch-stddev group size 4. "
            r"Received: batch_size=6",
        ),
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
        [
            sys.executable,
            "main.py",
            f"--flagfile={REPO_ROOT}/experiments/demo.flags",
            f"--run_dir={run_dir}",
            "--dry_run",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = [line for line in result.stdout.splitlines() if "x" in line and ("stabilize" in line or "fade_in" in line)]
    assert [row.split()[1] for row in table] == ["4x4", "8x8", "8x8", "16x16", "16x16", "32x32", "32x32"]
    assert '"ema_beta": 0.99' in result.stdout
    assert not run_dir.exists()


def test_intra_op_threads_sets_the_processs_op_thread_pool():
    script = (
        "import sys, tensorflow as tf\n"
        "from progan_tf import cli\n"
        "from progan_tf.flags import FLAGS, define_flags\n"
        "define_flags(); FLAGS(['main.py'] + sys.argv[1:])\n"
        "cli.set_process_options(FLAGS)\n"
        "print(tf.config.threading.get_intra_op_parallelism_threads())\n"
    )
    threads = [
        subprocess.run(
            [sys.executable, "-c", script, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
        ).stdout.split()[-1]
        for args in ((), ("--intra_op_threads=1",), ("--intra_op_threads=3",))
    ]
    assert threads == ["0", "1", "3"]  # 0: TensorFlow's own choice
