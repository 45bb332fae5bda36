"""ProGAN's growing generator and discriminator.

Each network is a Keras layer owning one block of layers per resolution (4x4 up to the final
resolution, keyed `"4x4"`, `"8x8"`, ...) plus the `to_rgb` / `from_rgb` 1x1 convolutions of every
resolution. `model(resolution, fade_in)` returns a functional `keras.Model` for one training
stage; every model of a network is assembled from the same layer objects, so weights carry over
from stage to stage and a checkpoint of the network covers all of them.

Block structure, widths and gains follow the paper and its reference code; see BUILD.md.
"""

import dataclasses
import math

import keras

from progan_tf.errors import UserInputError
from progan_tf.layers import (
    ChannelBias,
    EqualizedConv2D,
    EqualizedDense,
    MinibatchStdDev,
    PixelNormalization,
    WeightedSum,
)

MIN_RESOLUTION = 4
MAX_RESOLUTION = 1024
FUSED_RESAMPLE_MODES = ("auto", "always", "never")
# NetworkConfig fields that fix the shapes of the weights (a checkpoint or an imported pickle
# only fits networks with the same values); the others (fused_resample, mbstd_group_size) change
# how the same weights are used.
WEIGHT_SHAPING_FIELDS = ("resolution", "num_channels", "latent_size", "fmap_base", "fmap_decay", "fmap_max")
# "auto" fuses the generator's upsample + conv from 128x128 up, where the fused transposed
# convolution is faster and computes the same function. The critic is never fused in "auto": a
# fused conv + pool pools before the leaky ReLU, which is the authors' TF1 critic ("always"),
# not the paper's (conv, LReLU, conv, LReLU, pool).
GENERATOR_FUSED_AUTO_MIN_RESOLUTION = 128
LEAKY_RELU_SLOPE = 0.2


def resolution_log2(resolution, name="resolution"):
    """log2 of a power-of-two resolution in [4, 1024]; a UserInputError otherwise."""
    if (
        not isinstance(resolution, int)
        or resolution < MIN_RESOLUTION
        or resolution > MAX_RESOLUTION
        or (resolution & (resolution - 1))
    ):
        raise UserInputError(
            f"{name} must be a power of two between {MIN_RESOLUTION} and {MAX_RESOLUTION}. "
            f"Received: {name}={resolution}"
        )
    return int(math.log2(resolution))


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Architecture hyper-parameters shared by the generator and the discriminator.

    Args:
        resolution: Final (largest) image resolution, a power of two in [4, 1024].
        num_channels: Image channels, 1 or 3.
        latent_size: Dimension of the generator's input latent vector.
        fmap_base: Feature maps at stage s are `min(fmap_base / 2**(s * fmap_decay), fmap_max)`.
        fmap_decay: See `fmap_base`.
        fmap_max: See `fmap_base`.
        fused_resample: How resampling is fused into the convolutions. `"auto"` (default): the
            paper's networks; the critic's blocks are conv, LReLU, conv, LReLU, 2x2 average pool
            at every resolution, and the generator fuses upsample + conv into one transposed
            convolution from 128x128 up (the same function, computed faster). `"always"`: the
            authors' TF1 networks; both networks fused at every resolution from 8x8, the critic's
            blocks then compute conv, LReLU, (conv + pool), bias, LReLU (the pool moves before
            the activation, so this critic is a different function). `"never"`: nothing fused
            (the generator computes what `"auto"` computes).
        mbstd_group_size: Group size of the discriminator's minibatch standard deviation.
        normalize_latents: Pixel-normalise the latent before the first layer.
    """

    resolution: int = 1024
    num_channels: int = 3
    latent_size: int = 512
    fmap_base: int = 8192
    fmap_decay: float = 1.0
    fmap_max: int = 512
    fused_resample: str = "auto"
    mbstd_group_size: int = 4
    normalize_latents: bool = True

    def __post_init__(self):
        resolution_log2(self.resolution)
        if self.num_channels not in (1, 3):
            raise UserInputError(f"num_channels must be 1 or 3. Received: num_channels={self.num_channels}")
        for name in ("latent_size", "fmap_base", "fmap_max", "mbstd_group_size"):
            if getattr(self, name) < 1:
                raise UserInputError(f"{name} must be a positive integer. Received: {name}={getattr(self, name)}")
        if self.fused_resample not in FUSED_RESAMPLE_MODES:
            raise UserInputError(
                f"fused_resample must be one of {FUSED_RESAMPLE_MODES}. "
                f"Received: fused_resample={self.fused_resample!r}"
            )

    @property
    def resolution_log2(self):
        return resolution_log2(self.resolution)

    @property
    def resolutions(self):
        return [2**r for r in range(2, self.resolution_log2 + 1)]

    def num_features(self, stage):
        return min(int(self.fmap_base / 2.0 ** (stage * self.fmap_decay)), self.fmap_max)

    def fuses_upsample(self, resolution):
        """Whether the generator block at `resolution` is one fused transposed convolution."""
        if self.fused_resample == "auto":
            return resolution >= GENERATOR_FUSED_AUTO_MIN_RESOLUTION
        return self.fused_resample == "always"

    def fuses_downsample(self, resolution):
        """Whether the critic block at `resolution` fuses its second conv with the 2x2 pool."""
        del resolution  # the authors' TF1 critic fuses at every resolution
        return self.fused_resample == "always"


def stage_key(resolution):
    """The key of a resolution in the networks' per-resolution containers (`8` -> `"8x8"`)."""
    return f"{resolution}x{resolution}"


class _GrowingNetwork(keras.layers.Layer):
    """A Keras layer owning the per-resolution layers of one network; caches its per-stage models.

    Keras tracks the layers of the string-keyed containers (`blocks`, `to_rgb`, `from_rgb`), so
    `weights` lists every resolution's variables in creation order (per resolution from 4x4 up,
    then the fade's alpha) and `get_weights` / `set_weights` cover the whole growing network.
    `tf.train.Checkpoint` sees each layer under its name (`g_8x8_conv1`, ...). The per-stage
    models are views of the same layers and stay out of both.

    Args:
        config: A `NetworkConfig`.
        **kwargs: Base `keras.layers.Layer` arguments (`name`).
    """

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self._create_layers()
        self.fade = WeightedSum(name=f"{self.name}_fade")
        # Assigned past Keras' and TensorFlow's attribute tracking: the cache is not state.
        object.__setattr__(self, "_stage_models", {})

    def _create_layers(self):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "config": dataclasses.asdict(self.config)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(NetworkConfig(**config.pop("config")), **config)

    def _check_stage(self, resolution, fade_in):
        log2 = resolution_log2(resolution)
        if resolution > self.config.resolution:
            raise UserInputError(
                f"{self.name} resolution must be at most the network's final resolution "
                f"{self.config.resolution}. Received: resolution={resolution}"
            )
        if fade_in and resolution == MIN_RESOLUTION:
            raise UserInputError(f"There is nothing to fade in at 4x4. Received: resolution={resolution}, fade_in=True")
        return log2

    def model(self, resolution, fade_in=False):
        """The functional `keras.Model` of one stage, built from the shared layers (cached).

        Args:
            resolution: Output (generator) or input (discriminator) resolution.
            fade_in: Include the fade path from `resolution // 2`, blended by `self.fade`'s alpha.

        Returns:
            A `keras.Model`.
        """
        self._check_stage(resolution, fade_in)
        key = (resolution, bool(fade_in))
        if key not in self._stage_models:
            self._stage_models[key] = self._build_model(resolution, bool(fade_in))
        return self._stage_models[key]

    def build_all(self):
        """Builds every stage's layers so that `weights` covers the whole growing network."""
        for resolution in self.config.resolutions:
            self.model(resolution)
        self.fade.set_alpha(0.0)
        return self

    def _all_layers(self):
        raise NotImplementedError

    def layers_by_name(self):
        """{name: layer} over every layer of every resolution (e.g. `"g_8x8_conv1"`)."""
        return {layer.name: layer for layer in self._all_layers()}

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        # Keras' tracked dicts and lists are no TensorFlow trackables: a checkpoint reaches the
        # layers by name instead.
        children = super()._trackable_children(save_type, **kwargs)
        if save_type == "checkpoint":
            children.update(self.layers_by_name())
        return children

    def count_params(self):
        """Trainable parameters (the fade's alpha is not one)."""
        return sum(int(math.prod(w.shape)) for w in self.trainable_weights)

    def set_alpha(self, alpha):
        self.fade.set_alpha(alpha)


def _leaky_relu(name):
    return keras.layers.LeakyReLU(negative_slope=LEAKY_RELU_SLOPE, name=name)


class GrowingGenerator(_GrowingNetwork):
    """ProGAN generator: latent (N, latent_size) -> images (N, R, R, C), linear output.

    Args:
        config: A `NetworkConfig`.
        name: The layer's name (`"generator"`; the fade layer is `<name>_fade`).
        **kwargs: Base `keras.layers.Layer` arguments.

    Example:
    >>> generator = GrowingGenerator(NetworkConfig(resolution=32, fmap_base=64, latent_size=16))
    >>> generator.model(8, fade_in=True)(np.zeros((2, 16), "float32")).shape
    (2, 8, 8, 3)
    """

    def __init__(self, config, name="generator", **kwargs):
        super().__init__(config, name=name, **kwargs)

    def _create_layers(self):
        cfg = self.config
        self.normalize_latents = PixelNormalization(name="latent_normalization")
        self.blocks = {}
        self.to_rgb = {}
        for log2 in range(2, cfg.resolution_log2 + 1):
            res = 2**log2
            filters = cfg.num_features(log2 - 1)
            prefix = f"g_{res}x{res}"
            if log2 == 2:
                layers = [
                    EqualizedDense(16 * filters, gain=math.sqrt(2.0) / 4.0, use_bias=False, name=f"{prefix}_dense"),
                    keras.layers.Reshape((4, 4, filters), name=f"{prefix}_reshape"),
                    ChannelBias(name=f"{prefix}_dense_bias"),
                ]
            elif cfg.fuses_upsample(res):
                layers = [EqualizedConv2D(filters, 3, resample="up", name=f"{prefix}_conv0_up")]
            else:
                layers = [
                    keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{prefix}_upsample"),
                    EqualizedConv2D(filters, 3, name=f"{prefix}_conv0"),
                ]
            layers += [_leaky_relu(f"{prefix}_lrelu0"), PixelNormalization(name=f"{prefix}_pixelnorm0")]
            layers += [
                EqualizedConv2D(filters, 3, name=f"{prefix}_conv1"),
                _leaky_relu(f"{prefix}_lrelu1"),
                PixelNormalization(name=f"{prefix}_pixelnorm1"),
            ]
            # Filled in this order, Keras tracks (and `weights` lists) each block before its to_rgb.
            self.blocks[stage_key(res)] = layers
            self.to_rgb[stage_key(res)] = EqualizedConv2D(cfg.num_channels, 1, gain=1.0, name=f"g_to_rgb_{res}x{res}")

    def _all_layers(self):
        for res in self.config.resolutions:
            yield from self.blocks[stage_key(res)]
            yield self.to_rgb[stage_key(res)]
        yield self.fade

    def _build_model(self, resolution, fade_in):
        latents = keras.Input((self.config.latent_size,), name="latents")
        features = self.normalize_latents(latents) if self.config.normalize_latents else latents
        last_block = resolution // 2 if fade_in else resolution
        res = MIN_RESOLUTION
        while res <= last_block:
            features = _apply(self.blocks[stage_key(res)], features)
            res *= 2
        if fade_in:
            old = keras.layers.UpSampling2D(2, interpolation="nearest", name="fade_upsample")(
                self.to_rgb[stage_key(resolution // 2)](features)
            )
            new = self.to_rgb[stage_key(resolution)](_apply(self.blocks[stage_key(resolution)], features))
            images = self.fade([old, new])
        else:
            images = self.to_rgb[stage_key(resolution)](features)
        suffix = "_fade_in" if fade_in else ""
        return keras.Model(latents, images, name=f"generator_{resolution}x{resolution}{suffix}")


class GrowingDiscriminator(_GrowingNetwork):
    """ProGAN critic: images (N, R, R, C) -> scores (N, 1), linear output, no normalisation.

    Args:
        config: A `NetworkConfig`.
        name: The layer's name (`"discriminator"`; the fade layer is `<name>_fade`).
        **kwargs: Base `keras.layers.Layer` arguments.

    Example:
    >>> discriminator = GrowingDiscriminator(NetworkConfig(resolution=32, fmap_base=64))
    >>> discriminator.model(8)(np.zeros((4, 8, 8, 3), "float32")).shape
    (4, 1)
    """

    def __init__(self, config, name="discriminator", **kwargs):
        super().__init__(config, name=name, **kwargs)

    def _create_layers(self):
        cfg = self.config
        self.blocks = {}
        self.from_rgb = {}
        for log2 in range(2, cfg.resolution_log2 + 1):
            res = 2**log2
            prefix = f"d_{res}x{res}"
            self.from_rgb[stage_key(res)] = [
                EqualizedConv2D(cfg.num_features(log2 - 1), 1, name=f"d_from_rgb_{res}x{res}"),
                _leaky_relu(f"d_from_rgb_{res}x{res}_lrelu"),
            ]
            if log2 == 2:
                layers = [
                    MinibatchStdDev(cfg.mbstd_group_size, name=f"{prefix}_minibatch_stddev"),
                    EqualizedConv2D(cfg.num_features(1), 3, name=f"{prefix}_conv"),
                    _leaky_relu(f"{prefix}_lrelu0"),
                    keras.layers.Flatten(name=f"{prefix}_flatten"),
                    EqualizedDense(cfg.num_features(0), name=f"{prefix}_dense0"),
                    _leaky_relu(f"{prefix}_lrelu1"),
                    EqualizedDense(1, gain=1.0, name=f"{prefix}_dense1"),
                ]
            else:
                layers = [
                    EqualizedConv2D(cfg.num_features(log2 - 1), 3, name=f"{prefix}_conv0"),
                    _leaky_relu(f"{prefix}_lrelu0"),
                ]
                if cfg.fuses_downsample(res):
                    layers.append(
                        EqualizedConv2D(cfg.num_features(log2 - 2), 3, resample="down", name=f"{prefix}_conv1_down")
                    )
                    layers.append(_leaky_relu(f"{prefix}_lrelu1"))
                else:
                    layers.append(EqualizedConv2D(cfg.num_features(log2 - 2), 3, name=f"{prefix}_conv1"))
                    layers.append(_leaky_relu(f"{prefix}_lrelu1"))
                    layers.append(keras.layers.AveragePooling2D(2, name=f"{prefix}_downsample"))
            self.blocks[stage_key(res)] = layers

    def _all_layers(self):
        for res in self.config.resolutions:
            yield from self.from_rgb[stage_key(res)]
            yield from self.blocks[stage_key(res)]
        yield self.fade

    def _build_model(self, resolution, fade_in):
        images = keras.Input((resolution, resolution, self.config.num_channels), name="images")
        key = stage_key(resolution)
        features = _apply(self.blocks[key], _apply(self.from_rgb[key], images))
        if fade_in:
            downsampled = keras.layers.AveragePooling2D(2, name="fade_downsample")(images)
            old = _apply(self.from_rgb[stage_key(resolution // 2)], downsampled)
            features = self.fade([old, features])
        res = resolution // 2
        while res >= MIN_RESOLUTION:
            features = _apply(self.blocks[stage_key(res)], features)
            res //= 2
        suffix = "_fade_in" if fade_in else ""
        return keras.Model(images, features, name=f"discriminator_{resolution}x{resolution}{suffix}")


def _apply(layers, tensor):
    for layer in layers:
        tensor = layer(tensor)
    return tensor
