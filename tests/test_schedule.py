"""The growth schedule against the paper's CelebA-HQ timeline (600k images per fade and per
stabilisation, 12M images in all, 1024x1024), worked out by hand below."""

import math

import numpy as np
import pytest
import tensorflow as tf

from progan_tf.errors import UserInputError
from progan_tf.schedule import (
    FADE_IN,
    STABILIZE,
    ScheduleConfig,
    format_schedule,
    learning_rate_at,
    lr_rampup,
    phase_at,
    phases,
)

# The reference's 8-GPU global minibatches and learning rates (PAPER_NOTES.md, Training).
BATCHES = ((4, 512), (8, 256), (16, 128), (32, 64), (64, 32), (128, 32), (256, 32), (512, 32), (1024, 32))
RATES = ((128, 0.0015), (256, 0.002), (512, 0.003), (1024, 0.003))
CELEBAHQ = ScheduleConfig(
    final_resolution=1024,
    stabilize_kimg=600,
    transition_kimg=600,
    total_kimg=12000,
    batch_sizes=BATCHES,
    learning_rates=RATES,
    learning_rate=0.001,
)

# (resolution, kind, start kimg, end kimg): 4x4 stabilises for 600k, then every resolution fades
# in for 600k and stabilises for 600k; 1024 stabilises from 9600k until the end at 12000k.
REFERENCE_TIMELINE = [
    (4, STABILIZE, 0, 600),
    (8, FADE_IN, 600, 1200),
    (8, STABILIZE, 1200, 1800),
    (16, FADE_IN, 1800, 2400),
    (16, STABILIZE, 2400, 3000),
    (32, FADE_IN, 3000, 3600),
    (32, STABILIZE, 3600, 4200),
    (64, FADE_IN, 4200, 4800),
    (64, STABILIZE, 4800, 5400),
    (128, FADE_IN, 5400, 6000),
    (128, STABILIZE, 6000, 6600),
    (256, FADE_IN, 6600, 7200),
    (256, STABILIZE, 7200, 7800),
    (512, FADE_IN, 7800, 8400),
    (512, STABILIZE, 8400, 9000),
    (1024, FADE_IN, 9000, 9600),
    (1024, STABILIZE, 9600, 12000),
]


def test_celebahq_timeline_matches_the_reference():
    got = [(p.resolution, p.kind, p.start_kimg, p.end_kimg) for p in phases(CELEBAHQ)]
    assert got == REFERENCE_TIMELINE
    assert [p.index for p in phases(CELEBAHQ)] == list(range(17))


def test_fade_into_1024_starts_at_9000_kimg():
    fades = [p for p in phases(CELEBAHQ) if p.resolution == 1024 and p.fade_in]
    assert len(fades) == 1
    assert fades[0].start_images == 9_000_000
    assert fades[0].end_images == 9_600_000
    assert phase_at(CELEBAHQ, 8_999_999).resolution == 512
    assert phase_at(CELEBAHQ, 9_000_000).resolution == 1024


@pytest.mark.parametrize(
    "images_shown, resolution, kind, batch, lr",
    [
        (0, 4, STABILIZE, 512, 0.001),
        (599_999, 4, STABILIZE, 512, 0.001),
        (600_000, 8, FADE_IN, 256, 0.001),  # a fade uses the new resolution's batch and lr
        (1_500_000, 8, STABILIZE, 256, 0.001),
        (2_000_000, 16, FADE_IN, 128, 0.001),
        (4_000_000, 32, STABILIZE, 64, 0.001),
        (5_000_000, 64, STABILIZE, 32, 0.001),
        (5_500_000, 128, FADE_IN, 32, 0.0015),
        (7_000_000, 256, FADE_IN, 32, 0.002),
        (8_500_000, 512, STABILIZE, 32, 0.003),
        (9_300_000, 1024, FADE_IN, 32, 0.003),
        (11_999_999, 1024, STABILIZE, 32, 0.003),
        (12_000_000, 1024, STABILIZE, 32, 0.003),  # at and after the end: the last phase
        (20_000_000, 1024, STABILIZE, 32, 0.003),
    ],
)
def test_phase_at_given_image_counts(images_shown, resolution, kind, batch, lr):
    phase = phase_at(CELEBAHQ, images_shown)
    assert (phase.resolution, phase.kind, phase.batch_size) == (resolution, kind, batch)
    assert phase.learning_rate == pytest.approx(lr)


@pytest.mark.parametrize(
    "images_shown, alpha",
    [
        (600_000, 0.0),
        (600_001, 1 / 600_000),
        (750_000, 0.25),
        (900_000, 0.5),
        (1_080_000, 0.8),
        (1_199_999, 1 - 1 / 600_000),
        (1_200_000, 1.0),  # clipped outside the fade
        (500_000, 0.0),
    ],
)
def test_alpha_is_linear_within_a_fade(images_shown, alpha):
    fade_8 = phases(CELEBAHQ)[1]
    assert fade_8.fade_in and fade_8.resolution == 8
    assert fade_8.alpha(images_shown) == pytest.approx(alpha, abs=1e-12)


def test_alpha_in_the_1024_fade():
    fade_1024 = phase_at(CELEBAHQ, 9_000_000)
    assert fade_1024.alpha(9_000_000) == 0.0
    assert fade_1024.alpha(9_150_000) == pytest.approx(0.25)
    assert fade_1024.alpha(9_450_000) == pytest.approx(0.75)


def test_alpha_of_a_tensor_count_is_the_float32_of_the_python_alpha():
    """The compiled step passes the image-count variable: one formula, the same values."""
    fade_1024 = phase_at(CELEBAHQ, 9_000_000)
    counts = [8_000_000, 9_000_000, 9_000_001, 9_000_007, 9_123_457, 9_333_333, 9_599_999, 9_600_000, 9_700_000]
    images_shown = tf.Variable(0, dtype=tf.int64)

    @tf.function
    def traced_alpha():
        return fade_1024.alpha(images_shown)

    for count in counts:
        images_shown.assign(count)
        got = traced_alpha()
        expected = np.float32(min(max((count - 9_000_000) / 600_000, 0.0), 1.0))
        assert got.dtype == tf.float32
        assert got.numpy().tobytes() == expected.tobytes(), count
        assert np.float32(fade_1024.alpha(count)).tobytes() == expected.tobytes(), count
    assert phases(CELEBAHQ)[0].alpha(tf.constant(5, tf.int64)) == 1.0  # no fade at 4x4


def test_4x4_has_no_fade_and_stabilised_phases_have_alpha_one():
    all_phases = phases(CELEBAHQ)
    assert all_phases[0].resolution == 4 and all_phases[0].kind == STABILIZE
    assert not any(p.fade_in for p in all_phases if p.resolution == 4)
    for p in all_phases:
        if not p.fade_in:
            assert p.alpha(p.start_images) == 1.0
            assert p.alpha((p.start_images + p.end_images) // 2) == 1.0
    # Every resolution above 4 has exactly one fade followed by one stabilisation.
    for resolution in (8, 16, 32, 64, 128, 256, 512, 1024):
        kinds = [p.kind for p in all_phases if p.resolution == resolution]
        assert kinds == [FADE_IN, STABILIZE]


def test_phases_are_contiguous():
    all_phases = phases(CELEBAHQ)
    for before, after in zip(all_phases, all_phases[1:]):
        assert before.end_kimg == after.start_kimg
    assert all_phases[0].start_kimg == 0 and all_phases[-1].end_kimg == 12000


@pytest.mark.parametrize(
    "total_kimg, expected",
    [
        # Ends inside the 16x16 fade: that fade is cut short and is the last phase.
        (
            2000,
            [(4, STABILIZE, 0, 600), (8, FADE_IN, 600, 1200), (8, STABILIZE, 1200, 1800), (16, FADE_IN, 1800, 2000)],
        ),
        # Ends exactly at a phase boundary: no empty phase after it.
        (1800, [(4, STABILIZE, 0, 600), (8, FADE_IN, 600, 1200), (8, STABILIZE, 1200, 1800)]),
        # Shorter than the first phase.
        (100, [(4, STABILIZE, 0, 100)]),
    ],
)
def test_truncation_at_total_kimg(total_kimg, expected):
    config = ScheduleConfig(final_resolution=1024, stabilize_kimg=600, transition_kimg=600, total_kimg=total_kimg)
    assert [(p.resolution, p.kind, p.start_kimg, p.end_kimg) for p in phases(config)] == expected
    last = phases(config)[-1]
    assert last.end_images == round(total_kimg * 1000)
    assert phase_at(config, round(total_kimg * 1000)) == last


def test_final_resolution_stabilises_until_total_kimg():
    config = ScheduleConfig(final_resolution=16, stabilize_kimg=600, transition_kimg=600, total_kimg=5000)
    got = [(p.resolution, p.kind, p.start_kimg, p.end_kimg) for p in phases(config)]
    assert got == [
        (4, STABILIZE, 0, 600),
        (8, FADE_IN, 600, 1200),
        (8, STABILIZE, 1200, 1800),
        (16, FADE_IN, 1800, 2400),
        (16, STABILIZE, 2400, 5000),
    ]


def test_fractional_kimg_rounds_to_whole_images():
    config = ScheduleConfig(final_resolution=16, stabilize_kimg=0.128, transition_kimg=0.128, total_kimg=0.64)
    assert [(p.start_images, p.end_images) for p in phases(config)] == [
        (0, 128),
        (128, 256),
        (256, 384),
        (384, 512),
        (512, 640),
    ]
    assert phases(config)[1].alpha(160) == pytest.approx(0.25)


def test_format_schedule_rows():
    lines = format_schedule(CELEBAHQ).splitlines()
    assert len(lines) == 2 + 17
    assert lines[0].split() == ["phase", "resolution", "kind", "kimg", "batch", "lr"]
    assert set(lines[1]) == {"-"}
    assert lines[2].split() == ["0", "4x4", "stabilize", "0", "-", "600", "512", "0.001"]
    assert lines[3].split() == ["1", "8x8", "fade_in", "600", "-", "1200", "256", "0.001"]
    assert lines[-2].split() == ["15", "1024x1024", "fade_in", "9000", "-", "9600", "32", "0.003"]
    assert lines[-1].split() == ["16", "1024x1024", "stabilize", "9600", "-", "12000", "32", "0.003"]
    # Fixed-width columns: every row is as wide as the header.
    assert {len(line) for line in lines[2:]} == {len(lines[0])}


def test_non_positive_lengths_are_rejected():
    with pytest.raises(UserInputError, match="transition_kimg"):
        ScheduleConfig(transition_kimg=0)


def test_fade_cut_short_by_total_kimg_keeps_the_nominal_alpha_rate():
    config = ScheduleConfig(final_resolution=16, stabilize_kimg=1, transition_kimg=1, total_kimg=1.5)
    fade = phases(config)[-1]
    assert (fade.resolution, fade.kind, fade.end_kimg) == (8, FADE_IN, 1.5)
    # Half of the nominal 1-kimg fade has passed at the (truncated) end: alpha is 0.5, not 1.
    assert fade.alpha(1500) == pytest.approx(0.5)
    assert fade.alpha(1250) == pytest.approx(0.25)


def test_a_run_can_start_stabilising_an_imported_resolution():
    # The released 1024x1024 network (lod 0, image count unknown): the run stabilises 1024 from 0.
    config = ScheduleConfig(final_resolution=1024, total_kimg=500, start_resolution=1024)
    assert [(p.resolution, p.kind, p.start_kimg, p.end_kimg) for p in phases(config)] == [(1024, STABILIZE, 0, 500)]
    # A 256x256 snapshot at 7500 kimg (lod 2): stabilise 256 for 600 kimg, then grow as usual.
    config = ScheduleConfig(final_resolution=1024, total_kimg=12000, start_resolution=256, start_kimg=7500)
    got = [(p.resolution, p.kind, p.start_kimg, p.end_kimg) for p in phases(config)]
    assert got == [
        (256, STABILIZE, 7500, 8100),
        (512, FADE_IN, 8100, 8700),
        (512, STABILIZE, 8700, 9300),
        (1024, FADE_IN, 9300, 9900),
        (1024, STABILIZE, 9900, 12000),
    ]
    assert phase_at(config, 7_500_000).index == 0


def test_a_run_can_start_inside_an_imported_fade():
    # A snapshot at 6900 kimg with lod 2.5 under the 600/600 schedule: half way into the 256 fade,
    # which began at 6600 kimg (the reference timeline's own fade).
    config = ScheduleConfig(
        final_resolution=1024, total_kimg=12000, start_resolution=256, start_kimg=6900, start_alpha=0.5
    )
    first = phases(config)[0]
    assert (first.resolution, first.kind, first.start_kimg, first.end_kimg) == (256, FADE_IN, 6600, 7200)
    assert first.alpha(6_900_000) == pytest.approx(0.5) and first.alpha(7_050_000) == pytest.approx(0.75)
    reference = phases(CELEBAHQ)
    assert [(p.resolution, p.kind, p.start_kimg, p.end_kimg) for p in phases(config)] == [
        (p.resolution, p.kind, p.start_kimg, p.end_kimg) for p in reference[11:]
    ]
    # With an unknown image count (0) the fade's past part lies before 0: alpha is still 0.5.
    config = ScheduleConfig(final_resolution=256, total_kimg=1000, start_resolution=256, start_alpha=0.5)
    first = phase_at(config, 0)
    assert (first.kind, first.start_kimg, first.end_kimg, first.alpha(0)) == (FADE_IN, -300, 300, 0.5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"start_resolution": 12}, "start_resolution=12"),
        ({"start_resolution": 2048}, "start_resolution=2048"),
        ({"final_resolution": 64, "start_resolution": 128}, "start_resolution=128"),
        ({"start_resolution": 4, "start_alpha": 0.5}, "start_alpha=0.5"),
        ({"start_resolution": 8, "start_alpha": 0.0}, "start_alpha=0.0"),
        ({"start_kimg": 12000}, "start_kimg=12000"),
        ({"lr_rampup_kimg": -1}, "lr_rampup_kimg=-1"),
    ],
)
def test_bad_starts_are_rejected(kwargs, message):
    with pytest.raises(UserInputError, match=f"Received: {message}"):
        ScheduleConfig(**kwargs)


def test_lr_rampup_is_the_theano_codes_s_curve():
    # exp(-5 (1 - t)^2) for t = kimg / 40 below 1, then 1; no ramp when the length is 0.
    assert lr_rampup(0, 40) == pytest.approx(math.exp(-5))
    assert lr_rampup(20, 40) == pytest.approx(math.exp(-1.25))
    assert lr_rampup(30, 40) == pytest.approx(math.exp(-5 / 16))
    assert lr_rampup(40, 40) == 1.0 and lr_rampup(1000, 40) == 1.0
    assert lr_rampup(0, 0) == 1.0
    config = ScheduleConfig(final_resolution=1024, learning_rates=((1024, 0.0015),), lr_rampup_kimg=40)
    first = phases(config)[0]
    assert learning_rate_at(config, first, 10_000) == pytest.approx(0.001 * math.exp(-5 * 0.75**2))
    assert learning_rate_at(config, phases(config)[-1], 9_600_000) == pytest.approx(0.0015)
