"""Analytic floating-point cost of the networks and of one training iteration.

Counts the multiply-adds of the convolutions and dense layers (2 FLOPs each) as our layers
compute them: a fused up-convolution is a 4x4 stride-2 transposed convolution over the input
pixels, a fused down-convolution a 4x4 stride-2 convolution over the output pixels. Biases,
activations, pixel norm, pooling and the fade blend are elementwise and left out: about 7% of
TF's own count at 16 channels, under 1% from 128 channels up.

One training iteration per image costs about 4 generator and 14 critic forward passes:
  * critic step: G forward for the fakes (1 G); D forward on reals, fakes and the GP mix (3 D);
    the GP's gradient of D(mix) w.r.t. its input (1 D); the backward of the real and fake passes
    (weight and input gradients, 2 x 2 D); the backward through the GP's forward and input
    gradient (the double backward, 2 x 2 D): 1 G + 12 D;
  * generator step: G and D forward (1 G + 1 D), D's input gradient (1 D), G's backward (2 G):
    3 G + 2 D.
"""

from progan_tf.networks import MIN_RESOLUTION

GENERATOR_PASSES_PER_ITERATION = 4
CRITIC_PASSES_PER_ITERATION = 14


def _conv(pixels, kernel_area, in_channels, out_channels):
    return 2 * pixels * kernel_area * in_channels * out_channels


def _resampling_conv(fused, resolution, in_channels, out_channels):
    """The block conv that changes resolution (G: up into `resolution`; D: down from it)."""
    if fused:  # over the low-resolution side's pixels, with the summed 4x4 kernel
        return _conv((resolution // 2) ** 2, 16, in_channels, out_channels)
    return _conv(resolution * resolution, 9, in_channels, out_channels)


def generator_flops(config, resolution, fade_in=False):
    """FLOPs of one generator forward pass for one image at a stage."""
    nf, channels = config.num_features, config.num_channels
    total = 2 * config.latent_size * 16 * nf(1) + _conv(16, 9, nf(1), nf(1))
    res = MIN_RESOLUTION * 2
    while res <= resolution:
        log2 = res.bit_length() - 1
        in_channels, out_channels = nf(log2 - 2), nf(log2 - 1)
        total += _resampling_conv(config.fuses_upsample(res), res, in_channels, out_channels)
        total += _conv(res * res, 9, out_channels, out_channels)
        res *= 2
    log2 = resolution.bit_length() - 1
    total += _conv(resolution**2, 1, nf(log2 - 1), channels)
    if fade_in:
        total += _conv((resolution // 2) ** 2, 1, nf(log2 - 2), channels)
    return total


def discriminator_flops(config, resolution, fade_in=False):
    """FLOPs of one critic forward pass for one image at a stage."""
    nf, channels = config.num_features, config.num_channels
    log2 = resolution.bit_length() - 1
    total = _conv(resolution**2, 1, channels, nf(log2 - 1))
    if fade_in:
        total += _conv((resolution // 2) ** 2, 1, channels, nf(log2 - 2))
    res = resolution
    while res > MIN_RESOLUTION:
        log2 = res.bit_length() - 1
        in_channels, out_channels = nf(log2 - 1), nf(log2 - 2)
        total += _conv(res * res, 9, in_channels, in_channels)
        total += _resampling_conv(config.fuses_downsample(res), res, in_channels, out_channels)
        res //= 2
    total += _conv(16, 9, nf(1) + 1, nf(1)) + 2 * 16 * nf(1) * nf(0) + 2 * nf(0)
    return total


def iteration_flops(config, resolution, fade_in, batch_size):
    """FLOPs of one training iteration (critic step + generator step) over a global batch."""
    per_image = GENERATOR_PASSES_PER_ITERATION * generator_flops(config, resolution, fade_in)
    per_image += CRITIC_PASSES_PER_ITERATION * discriminator_flops(config, resolution, fade_in)
    return batch_size * per_image
