"""The progressive-growing schedule as a pure function of the number of images shown.

Training starts at 4x4. Every later resolution is first faded in over `transition_kimg`, then
stabilised for `stabilize_kimg`; 4x4 is only stabilised. The last resolution stabilises until
`total_kimg`. During a fade the new (higher) resolution's batch size and learning rate apply.
"""

import dataclasses

from progan_tf.errors import UserInputError

STABILIZE = "stabilize"
FADE_IN = "fade_in"


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """Args:
    final_resolution: Largest resolution (power of two).
    stabilize_kimg: Thousands of images each resolution is trained at full strength.
    transition_kimg: Thousands of images of each fade-in.
    total_kimg: Length of the whole run.
    batch_sizes: {resolution: global minibatch}; resolutions not listed use `default_batch_size`.
    default_batch_size: See `batch_sizes`.
    learning_rates: {resolution: Adam learning rate} for both networks; else `learning_rate`.
    learning_rate: See `learning_rates`.
    """

    final_resolution: int = 1024
    stabilize_kimg: float = 600.0
    transition_kimg: float = 600.0
    total_kimg: float = 12000.0
    batch_sizes: tuple = ()
    default_batch_size: int = 16
    learning_rates: tuple = ()
    learning_rate: float = 0.001

    def __post_init__(self):
        if self.stabilize_kimg <= 0 or self.transition_kimg <= 0 or self.total_kimg <= 0:
            raise UserInputError(
                "stabilize_kimg, transition_kimg and total_kimg must be positive. Received: "
                f"stabilize_kimg={self.stabilize_kimg}, transition_kimg={self.transition_kimg}, "
                f"total_kimg={self.total_kimg}"
            )

    def batch_size(self, resolution):
        return dict(self.batch_sizes).get(resolution, self.default_batch_size)

    def lr(self, resolution):
        return dict(self.learning_rates).get(resolution, self.learning_rate)


@dataclasses.dataclass(frozen=True)
class Phase:
    """One contiguous part of the run with a fixed network, batch size and optimizer."""

    index: int
    resolution: int
    kind: str  # STABILIZE or FADE_IN
    start_kimg: float
    end_kimg: float
    batch_size: int
    learning_rate: float
    # A fade's nominal length: alpha keeps this rate even when total_kimg cuts the fade short.
    fade_kimg: float = 0.0

    @property
    def start_images(self):
        return round(self.start_kimg * 1000)

    @property
    def end_images(self):
        return round(self.end_kimg * 1000)

    @property
    def fade_images(self):
        return round(self.fade_kimg * 1000)

    @property
    def fade_in(self):
        return self.kind == FADE_IN

    def alpha(self, images_shown):
        """Weight of the newly added layers after `images_shown` images (1 outside fades)."""
        if not self.fade_in:
            return 1.0
        progress = (images_shown - self.start_images) / self.fade_images
        return min(max(progress, 0.0), 1.0)


def phases(config):
    """All phases of the run, in order, truncated at `total_kimg`."""
    result, kimg, resolution = [], 0.0, 4
    while kimg < config.total_kimg:
        kinds = [STABILIZE] if resolution == 4 else [FADE_IN, STABILIZE]
        for kind in kinds:
            length = config.transition_kimg if kind == FADE_IN else config.stabilize_kimg
            end = kimg + length
            if resolution == config.final_resolution and kind == STABILIZE or end > config.total_kimg:
                end = config.total_kimg
            result.append(
                Phase(
                    index=len(result),
                    resolution=resolution,
                    kind=kind,
                    start_kimg=kimg,
                    end_kimg=end,
                    batch_size=config.batch_size(resolution),
                    learning_rate=config.lr(resolution),
                    fade_kimg=config.transition_kimg if kind == FADE_IN else 0.0,
                )
            )
            kimg = end
            if kimg >= config.total_kimg:
                break
        resolution *= 2
    return result


def phase_at(config, images_shown):
    """The phase in force after `images_shown` images (the last phase at or after the end)."""
    all_phases = phases(config)
    for phase in all_phases:
        if images_shown < phase.end_images:
            return phase
    return all_phases[-1]


def format_schedule(config):
    """The schedule as a text table."""
    header = f"{'phase':>5}  {'resolution':>10}  {'kind':<9}  {'kimg':>19}  {'batch':>5}  {'lr':>7}"
    rows = [header, "-" * len(header)]
    for p in phases(config):
        rows.append(
            f"{p.index:>5}  {f'{p.resolution}x{p.resolution}':>10}  {p.kind:<9}  "
            f"{f'{p.start_kimg:g} - {p.end_kimg:g}':>19}  {p.batch_size:>5}  {p.learning_rate:>7g}"
        )
    return "\n".join(rows)
