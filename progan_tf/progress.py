"""Run progress a person can read: kimg done of the total, %, elapsed time, ETA and throughput.

`RunProgress` is told when each training step finishes and turns that into tick fields. Every
second of wall time is counted once, either as a phase's start-up or in a phase's rate:

- Start-up: the time from the previous step (or the run's start) to the end of a phase's first
  step: building the phase's networks, optimizers and input pipeline, tracing the step function
  and running it once (tracing is most of it), and what the previous phase did after its last
  step (its samples and checkpoint). The tick line reports it as `startup`, apart from img/s,
  which it would skew.
- Rate: seconds per image of the phase's other steps, including whatever runs between steps
  (logging, samples, checkpoints): what the phase really costs per image.

ETA estimator: the schedule's remaining images of each phase times that phase's seconds per
image, plus one mean measured start-up for each phase not yet begun. A phase that has been
measured uses its own rate. A phase not yet run uses a cost model fitted to the measured phases,
seconds per image = a + b * cost, where cost is the analytic FLOPs of one training iteration per
image (`cost_model.iteration_flops`) and `a` takes the fixed per-step overhead that dominates small
networks at low resolution. The fit needs two measured phases of different cost, so the ETA is
unknown ("?") during the first phase: from one point, overhead and compute cannot be told apart
(on the demo, a line through the origin from the 4x4 phase alone said 11 minutes for a 3.5 minute
run). A fit that would make a or b negative is replaced by the line through the origin and the
latest measured phase. Batch size effects are ignored, so the ETA is a guess until the expensive
phases have been measured, and exact arithmetic on measured rates after that.
"""

import time


def fit_cost_model(measured):
    """(a, b) of seconds per image = a + b * cost, from [(cost, seconds_per_image), ...].

    Least squares over the measured phases; where it would give a negative a or b, the line
    through the origin and the latest measurement. None with fewer than two distinct costs.
    """
    costs = [c for c, _ in measured]
    if len(set(costs)) < 2:
        return None
    n = len(measured)
    mean_c = sum(costs) / n
    mean_t = sum(t for _, t in measured) / n
    var = sum((c - mean_c) ** 2 for c in costs)
    b = sum((c - mean_c) * (t - mean_t) for c, t in measured) / var
    a = mean_t - b * mean_c
    if a >= 0 and b >= 0:
        return a, b
    cost, seconds = measured[-1]
    return 0.0, seconds / cost


def format_duration(seconds):
    """Two most significant units: 42s, 4m05s, 3h07m, 12d04h; '?' for None."""
    if seconds is None:
        return "?"
    seconds = int(round(max(seconds, 0.0)))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class RunProgress:
    """Progress of one training session over the schedule's phases.

    Args:
        phases: the schedule's `Phase` list (`schedule.phases(config)`).
        total_images: images of the whole run.
        images_shown: images already shown when this session starts (a resumed run).
        phase_costs: relative cost per image of each phase (e.g. `cost_model.iteration_flops` per image), same order.
        clock: seconds as a float (`time.perf_counter`; tests pass their own).
        elapsed_before: training seconds of the earlier sessions of a resumed run.

    Example (the training loop):
        >>> progress = RunProgress(all_phases, total_images, images_shown, costs)
        >>> progress.start_phase(phase.index)       # before the phase's first step
        >>> call = step(iterator, n); images_shown += n * batch
        >>> progress.step_done(images_shown)        # after the step's results are fetched
        >>> record.update(progress.tick(images_shown))
    """

    def __init__(self, phases, total_images, images_shown, phase_costs, clock=time.perf_counter, elapsed_before=0.0):
        self.phases = list(phases)
        self.total_images = int(total_images)
        self.costs = [float(c) for c in phase_costs]
        self.clock = clock
        self.last_time = clock()
        self.start_time = self.last_time - float(elapsed_before)
        self.last_images = int(images_shown)
        self.phase_index = None
        self.first_step_pending = False
        self.started = set()  # phase indices whose start-up this session has begun
        self.startups = []  # seconds of each phase start-up seen
        self.measured = {}  # phase index -> [images, seconds] after its first step
        self._reset_tick()

    def _reset_tick(self):
        self.tick_images, self.tick_seconds, self.tick_startup = 0, 0.0, 0.0

    def start_phase(self, phase_index):
        """The next step is the phase's first: its time is start-up, not rate."""
        self.phase_index = int(phase_index)
        self.started.add(self.phase_index)
        self.first_step_pending = True

    def step_done(self, images_shown):
        now = self.clock()
        seconds, images = now - self.last_time, images_shown - self.last_images
        if self.first_step_pending:
            self.first_step_pending = False
            self.startups.append(seconds)
            self.tick_startup += seconds
        else:
            entry = self.measured.setdefault(self.phase_index, [0, 0.0])
            entry[0] += images
            entry[1] += seconds
            self.tick_images += images
            self.tick_seconds += seconds
        self.last_time, self.last_images = now, images_shown

    def seconds_per_image(self, phase_index):
        """Measured seconds per image of a phase, else the cost model's estimate, else that of a
        measured phase of the same cost; None when nothing applies."""
        images, seconds = self.measured.get(phase_index, (0, 0.0))
        if images > 0:
            return seconds / images
        measured = [(self.costs[i], s / n) for i, (n, s) in sorted(self.measured.items()) if n > 0]
        model = fit_cost_model(measured)
        if model is not None:
            a, b = model
            return a + b * self.costs[phase_index]
        same_cost = [rate for cost, rate in measured if cost == self.costs[phase_index]]
        return same_cost[-1] if same_cost else None

    def eta_seconds(self, images_shown):
        """Seconds until `total_images`, or None before any rate is measured."""
        eta = 0.0
        startup = sum(self.startups) / len(self.startups) if self.startups else 0.0
        for phase in self.phases:
            end = min(phase.end_images, self.total_images)
            remaining = end - max(images_shown, phase.start_images)
            if remaining <= 0:
                continue
            rate = self.seconds_per_image(phase.index)
            if rate is None:
                return None
            eta += remaining * rate
            if phase.index not in self.started:
                eta += startup
        return eta

    def elapsed_seconds(self):
        """Training seconds of the run so far, earlier sessions included."""
        return self.clock() - self.start_time

    def tick(self, images_shown):
        """Fields for a tick record (and resets the tick's throughput counters).

        Returns:
            dict: kimg_total, percent, elapsed_sec, eta_sec (None: not yet known), img_per_sec
            and sec_per_kimg over this tick's steps after start-up (None if there were none),
            startup_sec (phase start-up time, mostly tracing, inside this tick; 0 for most ticks).
        """
        img_per_sec = self.tick_images / self.tick_seconds if self.tick_seconds > 0 else None
        eta = self.eta_seconds(images_shown)
        fields = {
            "kimg_total": round(self.total_images / 1000, 3),
            "percent": round(100.0 * min(images_shown, self.total_images) / self.total_images, 2),
            "elapsed_sec": round(self.elapsed_seconds(), 1),
            "eta_sec": None if eta is None else round(eta, 1),
            "img_per_sec": img_per_sec,
            "sec_per_kimg": 1000.0 / img_per_sec if img_per_sec else None,
            "startup_sec": round(self.tick_startup, 2),
        }
        self._reset_tick()
        return fields


def format_position(kimg, fields):
    """'kimg   9.008/42 (21.4%)'."""
    return f"kimg {kimg:9.3f}/{fields['kimg_total']:g} ({fields['percent']:4.1f}%)"


def format_speed(fields):
    """'img/s  733.2  sec/kimg 1.36' plus '  startup 2.1s' on a tick that started a phase."""
    if fields["img_per_sec"] is None:
        text = f"img/s {'-':>8}  sec/kimg {'-':>7}"
    else:
        text = f"img/s {fields['img_per_sec']:8.1f}  sec/kimg {fields['sec_per_kimg']:7.2f}"
    if fields["startup_sec"] > 0:
        text += f"  startup {fields['startup_sec']:.1f}s"
    return text


def format_times(fields):
    """'elapsed 1m12s  eta 3m40s'."""
    return f"elapsed {format_duration(fields['elapsed_sec'])}  eta {format_duration(fields['eta_sec'])}"
