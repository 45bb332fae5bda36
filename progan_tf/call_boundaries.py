"""How far one call of the compiled step goes: a call never crosses a phase's end or a tick,
sample, checkpoint or evaluation point, so results do not depend on the iterations per call."""

from progan_tf.config import AUTO_STEPS_PER_CALL


def crossed(before, after, interval_kimg):
    """Whether an image count moving from `before` to `after` passed a multiple of `interval_kimg`.

    In whole images: in kimg floats 0.168 // 0.008 is 21 but 0.176 // 0.008 is 21 too.
    """
    interval = round(interval_kimg * 1000)
    return interval > 0 and before // interval != after // interval


def steps_per_call(config, resolution):
    """Training iterations per compiled call at `resolution` (`TrainConfig.steps_per_call`)."""
    return config.steps_per_call or AUTO_STEPS_PER_CALL.get(resolution, 1)


def iterations_until_boundary(config, phase, images_shown, total_images, limit):
    """Iterations (1..limit) for the next call: it ends at the first iteration that reaches the
    phase's end or passes a tick, sample, checkpoint or evaluation point, so a call never crosses
    one and everything logged or saved is where one iteration per call would have put it."""
    end = min(phase.end_images, total_images)
    intervals = (config.tick_kimg, config.sample_kimg, config.checkpoint_kimg, config.eval_kimg)
    for count in range(1, limit + 1):
        before, after = images_shown + (count - 1) * phase.batch_size, images_shown + count * phase.batch_size
        if after >= end or any(crossed(before, after, interval) for interval in intervals):
            return count
    return limit
