"""The progressive-growing schedule as a pure function of the number of images shown.

Training starts at 4x4. Every later resolution is first faded in over `transition_kimg`, then
stabilised for `stabilize_kimg`; 4x4 is only stabilised. The last resolution stabilises until
`total_kimg`. During a fade the new (higher) resolution's batch size and learning rate apply.

A run that continues an imported network (`progan_tf.convert`) starts where that network was
instead: at `start_kimg` images, at `start_resolution`, `start_alpha` of the way through its fade
(1: stabilising), and grows on from there with the same rules.
"""

import dataclasses
import math

from keras import ops

from progan_tf.errors import UserInputError
from progan_tf.resolutions import resolution_log2

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
    lr_rampup_kimg: Ramp every learning rate up over the run's first this many kimg, as the
        paper's Theano code did (`lr_rampup`); 0 (default): no ramp.
    start_resolution: Resolution the run starts at (4; an imported network's stage).
    start_kimg: Images shown (in kimg) when the run starts (0; an imported network's count).
    start_alpha: Fade progress at the start: 1 stabilises `start_resolution` from `start_kimg`;
        below 1 (only above 4x4) the run starts `start_alpha` of the way through the fade into
        `start_resolution`, which therefore began `start_alpha * transition_kimg` earlier.
    """

    final_resolution: int = 1024
    stabilize_kimg: float = 600.0
    transition_kimg: float = 600.0
    total_kimg: float = 12000.0
    batch_sizes: tuple = ()
    default_batch_size: int = 16
    learning_rates: tuple = ()
    learning_rate: float = 0.001
    lr_rampup_kimg: float = 0.0
    start_resolution: int = 4
    start_kimg: float = 0.0
    start_alpha: float = 1.0

    def __post_init__(self):
        if self.stabilize_kimg <= 0 or self.transition_kimg <= 0 or self.total_kimg <= 0:
            raise UserInputError(
                "stabilize_kimg, transition_kimg and total_kimg must be positive. Received: "
                f"stabilize_kimg={self.stabilize_kimg}, transition_kimg={self.transition_kimg}, "
                f"total_kimg={self.total_kimg}"
            )
        if self.lr_rampup_kimg < 0:
            raise UserInputError(f"lr_rampup_kimg must be >= 0. Received: lr_rampup_kimg={self.lr_rampup_kimg}")
        start = self.start_resolution
        resolution_log2(start, name="start_resolution", maximum=self.final_resolution)
        if not 0.0 < self.start_alpha <= 1.0 or (start == 4 and self.start_alpha != 1.0):
            raise UserInputError(
                "start_alpha must be in (0, 1], and 1 at 4x4 (nothing fades in there). "
                f"Received: start_alpha={self.start_alpha}, start_resolution={start}"
            )
        if not 0.0 <= self.start_kimg < self.total_kimg:
            raise UserInputError(
                f"total_kimg ({self.total_kimg:g}) must exceed the kimg the run starts at. "
                f"Received: start_kimg={self.start_kimg:g}"
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
        """Weight of the newly added layers after `images_shown` images (1 outside fades).

        A Python count gives a Python float. An integer tensor (the compiled step's image count,
        so the step follows the fade without retracing) gives a float32 tensor in a fade, with
        the float32 of the Python value: both quotients are float64, rounded once more.
        """
        if not self.fade_in:
            return 1.0
        progress = (images_shown - self.start_images) / self.fade_images
        if isinstance(progress, float):
            return min(max(progress, 0.0), 1.0)
        return ops.clip(ops.cast(progress, "float32"), 0.0, 1.0)


def phases(config):
    """All phases of the run, in order, truncated at `total_kimg`."""
    result, resolution = [], config.start_resolution
    if config.start_alpha < 1.0:
        kimg, kinds = config.start_kimg - config.start_alpha * config.transition_kimg, [FADE_IN, STABILIZE]
    else:
        kimg, kinds = config.start_kimg, [STABILIZE]
    while kimg < config.total_kimg:
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
        kinds, resolution = [FADE_IN, STABILIZE], resolution * 2
    return result


def lr_rampup(kimg, rampup_kimg):
    """Learning-rate multiplier after `kimg` thousand images: the Theano code's ramp-up.

    `exp(-5 * (1 - kimg / rampup_kimg)**2)` below `rampup_kimg` (from exp(-5) = 0.0067 at the
    start up to 1, an S-shaped ramp), 1 from there on and when `rampup_kimg` is 0.
    """
    if rampup_kimg <= 0 or kimg >= rampup_kimg:
        return 1.0
    remaining = 1.0 - max(kimg, 0.0) / rampup_kimg
    return math.exp(-5.0 * remaining * remaining)


def learning_rate_at(config, phase, images_shown):
    """The Adam learning rate of both networks after `images_shown` images in `phase`."""
    return phase.learning_rate * lr_rampup(images_shown / 1000, config.lr_rampup_kimg)


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
