"""What the training loop keeps of the compiled step's statistics between its calls: the averages
of the next tick line and the streak of iterations that skipped an update."""

from progan_tf.distributed_step import SKIP_REASONS


class TickMeter:
    """Averages step statistics between ticks (throughput: `progress.RunProgress`)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.sums, self.steps, self.skipped = {}, 0, 0

    def add(self, sums, iterations):
        """`sums`: {statistic: its sum over `iterations` iterations} (a call of the step)."""
        self.steps += iterations
        for key, value in sums.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        # The finite flags are 0 or 1 on every replica (agreed), so their sums count updates.
        self.skipped += round(2 * iterations - sums["d_finite"] - sums["g_finite"])

    def summary(self):
        record = {k: v / max(self.steps, 1) for k, v in self.sums.items() if not k.endswith("_finite")}
        record.update(skipped_updates=self.skipped)
        return record


class SkipStreak:
    """Consecutive iterations that skipped an update, and what was not finite in them."""

    def __init__(self):
        self.length, self.reasons = 0, {}

    def add(self, call):
        """`call`: a step's result; its streak counts the skipped iterations since the last one
        that applied both updates, within the call (`ProGAN.make_distributed_step`)."""
        if call["streak_broken"]:
            self.length, self.reasons = 0, {}
        self.length += round(call["streak"])
        for reason in SKIP_REASONS:
            count = round(call[f"streak_{reason}"])
            if count:
                self.reasons[reason] = self.reasons.get(reason, 0) + count

    def describe(self):
        return ", ".join(f"{reason} non-finite {count}x" for reason, count in self.reasons.items())
