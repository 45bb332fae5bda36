"""progan_tf.progress: the ETA arithmetic, start-up accounting and the cost model, with a fake clock."""

import pytest

from progan_tf import progress
from progan_tf.schedule import ScheduleConfig, phases


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def schedule():
    # 4x4 stabilize 0-1000, 8x8 fade 1000-2000, 8x8 stabilize 2000-3000 images.
    return phases(
        ScheduleConfig(final_resolution=8, stabilize_kimg=1, transition_kimg=1, total_kimg=3, default_batch_size=100)
    )


def run_steps(tracker, clock, images, seconds_each, count):
    for _ in range(count):
        clock.now += seconds_each
        images += 100
        tracker.step_done(images)
    return images


def run_phase(tracker, clock, phase_index, images, startup, seconds_each, count):
    """Starts a phase: a first step of `startup` seconds, then `count` steps of `seconds_each`."""
    tracker.start_phase(phase_index)
    images = run_steps(tracker, clock, images, startup, 1)
    return run_steps(tracker, clock, images, seconds_each, count)


def test_tick_fields_keep_the_start_up_out_of_the_rate():
    clock = Clock()
    all_phases = schedule()
    tracker = progress.RunProgress(all_phases, 3000, 0, [1.0, 3.0, 2.0], clock=clock)
    assert tracker.eta_seconds(0) is None  # nothing measured yet
    images = run_phase(tracker, clock, 0, 0, 5.0, 0.1, 4)  # 4 steps of 100 images at 0.1 s: 0.001 s/img
    fields = tracker.tick(images)
    assert fields["startup_sec"] == 5.0
    assert fields["img_per_sec"] == pytest.approx(1000.0)
    assert fields["sec_per_kimg"] == pytest.approx(1.0)
    assert fields["percent"] == pytest.approx(500 / 3000 * 100, abs=0.01)
    assert fields["elapsed_sec"] == pytest.approx(5.4)
    # One measured cost cannot say what the fade (cost 3) and 8x8 (cost 2) will take.
    assert fields["eta_sec"] is None
    # The next tick has no start-up and its own rate.
    images = run_steps(tracker, clock, images, 0.2, 5)
    fields = tracker.tick(images)
    assert fields["startup_sec"] == 0 and fields["img_per_sec"] == pytest.approx(500.0)
    # Phase 0 measured over 900 images in 1.4 s.
    assert tracker.seconds_per_image(0) == pytest.approx(1.4 / 900)


def test_eta_when_later_phases_cost_what_a_measured_one_did():
    clock = Clock()
    tracker = progress.RunProgress(schedule(), 3000, 0, [1.0, 1.0, 1.0], clock=clock)
    images = run_phase(tracker, clock, 0, 0, 5.0, 0.1, 4)  # 0.001 s/img
    # Remaining: 500 images of phase 0 and 2 x 1000 later ones at 0.001 s, and two phase
    # start-ups of 5 s (the mean so far).
    assert tracker.tick(images)["eta_sec"] == pytest.approx(0.5 + 1.0 + 1.0 + 2 * 5.0)


def test_eta_uses_each_phase_own_rate_and_fits_overhead():
    clock = Clock()
    all_phases = schedule()
    tracker = progress.RunProgress(all_phases, 3000, 0, [1.0, 3.0, 2.0], clock=clock)
    images = run_phase(tracker, clock, 0, 0, 2.0, 0.2, 9)  # 0.002 s/img at cost 1
    images = run_phase(tracker, clock, 1, images, 4.0, 0.4, 4)  # 0.004 s/img at cost 3
    # Fit through (1, 0.002) and (3, 0.004): a = 0.001, b = 0.001; phase 2 (cost 2): 0.003 s/img.
    assert progress.fit_cost_model([(1.0, 0.002), (3.0, 0.004)]) == pytest.approx((0.001, 0.001))
    assert tracker.seconds_per_image(2) == pytest.approx(0.003)
    assert tracker.seconds_per_image(1) == pytest.approx(0.004)
    # At 1500 images: 500 fade images at 0.004, 1000 at 0.003, one start-up (mean of 2 and 4 s).
    assert tracker.eta_seconds(images) == pytest.approx(2.0 + 3.0 + 3.0)
    # total_images cuts the last phase: only the images up to it count.
    short = progress.RunProgress(all_phases, 2500, 0, [1.0, 3.0, 2.0], clock=clock)
    short.measured = tracker.measured
    short.startups, short.started = [3.0], tracker.started
    assert short.eta_seconds(1500) == pytest.approx(2.0 + 500 * 0.003 + 3.0)
    assert short.eta_seconds(2500) == 0.0


def test_cost_model_falls_back_to_proportional_when_the_fit_goes_negative():
    # Cheaper per image at higher cost would give b < 0: proportional to the latest instead.
    assert progress.fit_cost_model([(1.0, 0.004), (3.0, 0.003)]) == (0.0, 0.001)
    # Fewer than two distinct costs: no model.
    assert progress.fit_cost_model([(2.0, 0.004), (2.0, 0.005)]) is None
    assert progress.fit_cost_model([]) is None


def test_resumed_run_counts_from_its_images():
    clock = Clock()
    tracker = progress.RunProgress(schedule(), 3000, 1500, [1.0, 3.0, 3.0], clock=clock)
    images = run_phase(tracker, clock, 1, 1500, 1.0, 0.3, 4)  # 0.003 s/img
    fields = tracker.tick(images)
    assert fields["percent"] == pytest.approx(2000 / 3000 * 100, abs=0.01)
    assert fields["eta_sec"] == pytest.approx(0.0 + 1000 * 0.003 + 1.0)  # phase 2: the same cost


def test_format_duration_and_tick_text():
    assert progress.format_duration(None) == "?"
    assert progress.format_duration(42.4) == "42s"
    assert progress.format_duration(245) == "4m05s"
    assert progress.format_duration(3 * 3600 + 7 * 60 + 59) == "3h07m"
    assert progress.format_duration(12 * 86400 + 4 * 3600 + 5) == "12d04h"
    fields = {
        "kimg_total": 42.0,
        "percent": 21.43,
        "elapsed_sec": 72.0,
        "eta_sec": 220.0,
        "img_per_sec": 733.2,
        "sec_per_kimg": 1.364,
        "startup_sec": 2.06,
    }
    assert progress.format_position(9.008, fields) == "kimg     9.008/42 (21.4%)"
    assert progress.format_speed(fields) == "img/s    733.2  sec/kimg    1.36  startup 2.1s"
    assert progress.format_times(fields) == "elapsed 1m12s  eta 3m40s"
    fields.update(img_per_sec=None, sec_per_kimg=None, startup_sec=0.0, eta_sec=None)
    assert progress.format_speed(fields) == "img/s        -  sec/kimg       -"
    assert progress.format_times(fields).endswith("eta ?")
