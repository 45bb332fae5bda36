"""`--mode=explain`: where does the critic look? Saliency and Grad-CAM maps of D for real and fake images.

For real images the score is the critic output D(x) (high = "real"); for generated images it is
-D(x), so the maps show what makes the critic call them fake. Maps come from `tf-keras-vis`:

- `saliency`: vanilla gradient saliency, max over channels of |d score / d pixel| (Simonyan et al.).
- `smoothgrad`: the same averaged over 20 noisy copies (noise 0.2 x the image's value range).
- `gradcam` / `gradcam++`: Grad-CAM(++) on the critic's last convolution (the 4x4 block), upsampled
  bilinearly to the image size; ReLU keeps the evidence *for* the score.

tf-keras-vis 0.8.7 with Keras 3 and our critic:
- `Saliency` works on the critic as is (Keras warns that the input arrives as a list; silenced).
- `Gradcam` / `GradcamPlusPlus` cannot find the layer by themselves: they look for subclasses of
  Keras' `BaseConv`, and our `EqualizedConv2D` is a plain `Layer` ("ValueError: Unable to determine
  penultimate `Conv` layer"). Naming the layer is not enough either: the growing critic's layers are
  shared by every stage model, and Keras 3's `layer.output` is the output of the layer's *first*
  call (in another stage's graph), so the extended model fails with "ValueError: The name "images"
  is used 2 times in the model". We therefore name the layer and pass a no-op `model_modifier`,
  which makes tf-keras-vis clone the critic (fresh, unshared layers, same weights) first. (Only
  when the layer is shared: cloning needs every layer to be serialisable, e.g. no Python `Lambda`.)
- Should a tf-keras-vis method still fail (another version), `explain_images` falls back to a plain
  `tf.GradientTape` saliency for that method and says so in its notes.

Minibatch stddev makes D's output depend on the whole batch; images go through the critic in
batches of a multiple of its group size (the last one padded by repeating images), as in training.
"""

import io
import warnings

import numpy as np
import tensorflow as tf

from progan_tf import atomic_files, generators
from progan_tf import images as images_lib
from progan_tf.data import uint8_to_float
from progan_tf.errors import UserInputError
from progan_tf.latents import seeded_latents
from progan_tf.metrics import sources

METHODS = ("saliency", "smoothgrad", "gradcam", "gradcam++")
DEFAULT_METHODS = ("saliency", "gradcam")
SMOOTH_SAMPLES = 20
SMOOTH_NOISE = 0.2
OVERLAY_STRENGTH = 0.6

# A perceptually ordered dark-to-bright colormap (black, purple, red, orange, yellow, white), our own
# anchor points; `colormap` interpolates linearly between them.
_COLORMAP_ANCHORS = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float32,
)


def colormap(values):
    """Maps values in [0, 1] (any shape) to uint8 RGB (shape + (3,)) with the anchor colormap above."""
    values = np.clip(np.nan_to_num(np.asarray(values, np.float32)), 0.0, 1.0)
    position = values * (len(_COLORMAP_ANCHORS) - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(_COLORMAP_ANCHORS) - 1)
    frac = (position - low)[..., None]
    rgb = _COLORMAP_ANCHORS[low] * (1.0 - frac) + _COLORMAP_ANCHORS[high] * frac
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def normalize_map(saliency):
    """Scales one map (H, W) to [0, 1] by its maximum (an all-zero map stays zero)."""
    saliency = np.maximum(np.asarray(saliency, np.float32), 0.0)
    peak = float(saliency.max(initial=0.0))
    return saliency / peak if peak > 0 else saliency


def overlay(image, saliency, strength=OVERLAY_STRENGTH):
    """The colormapped map (normalised to its maximum) blended over a grey version of a uint8 image.

    Args:
        image: (H, W, 1|3) uint8.
        saliency: (H, W) non-negative map.
        strength: weight of the colormap (the grey image gets 1 - strength).

    Returns:
        (H, W, 3) uint8.
    """
    image = np.asarray(image, np.float32)
    grey = (
        image.mean(axis=-1, keepdims=True)
        if image.shape[-1] == 1
        else (image @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    )
    heat = colormap(normalize_map(saliency)).astype(np.float32)
    blended = (1.0 - strength) * grey + strength * heat
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Maps.


def _score(sign):
    return lambda output: sign * output[:, 0]


def _chunks(images, batch_size):
    """(chunk, valid count) pairs: chunks of exactly `batch_size` images, the last padded by wrapping."""
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        valid = len(chunk)
        if valid < batch_size:
            chunk = np.concatenate([chunk, np.resize(chunk, (batch_size - valid, *chunk.shape[1:]))])
        yield chunk, valid


def _batched(fn, images, batch_size):
    images = np.asarray(images, np.float32)
    outputs = [np.asarray(fn(tf.constant(chunk)))[:valid] for chunk, valid in _chunks(images, batch_size)]
    return np.concatenate(outputs).astype(np.float32)


def critic_scores(critic, images, batch_size=4):
    """D(x) for float images in [-1, 1], (N,)."""
    return _batched(lambda x: critic(x, training=False)[:, 0], images, batch_size)


def gradient_saliency(critic, images, sign=1.0, batch_size=4):
    """Plain `tf.GradientTape` saliency: max over channels of |d (sign * D(x)) / dx|, (N, H, W)."""

    def fn(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = tf.reduce_sum(sign * critic(x, training=False)[:, 0])
        return tf.reduce_max(tf.abs(tape.gradient(score, x)), axis=-1)

    return _batched(fn, images, batch_size)


def last_conv_layer(model):
    """Name of the model's last layer with a 4-D (convolution) kernel; a UserInputError if none."""
    for layer in reversed(model.layers):
        if any(len(weight.shape) == 4 for weight in layer.weights):
            return layer.name
    raise UserInputError(f"the model has no convolution layer for Grad-CAM. Received: model={model.name}")


class CriticExplainer:
    """tf-keras-vis visualisations of one critic; build once, then call `maps` per image set.

    Args:
        critic: Keras model images (N, H, W, C) in [-1, 1] -> (N, 1).
        batch_size: images per critic call (a multiple of the minibatch-stddev group size).
        gradcam_layer: layer for Grad-CAM (default: the last convolution).
    """

    def __init__(self, critic, batch_size=4, gradcam_layer=None):
        self.critic = critic
        self.batch_size = batch_size
        self.gradcam_layer = gradcam_layer
        self._tools = {}
        self.notes = []

    def _tool(self, method):
        if method not in self._tools:
            # Imported on first use: an import failure (another tf-keras-vis, a broken install) is
            # caught by `maps`, which then falls back to a plain GradientTape saliency.
            from tf_keras_vis.gradcam import Gradcam
            from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
            from tf_keras_vis.saliency import Saliency

            if method in ("saliency", "smoothgrad"):
                self._tools[method] = Saliency(self.critic, clone=False)
            else:
                cls = Gradcam if method == "gradcam" else GradcamPlusPlus
                self.gradcam_layer = self.gradcam_layer or last_conv_layer(self.critic)
                layer = self.critic.get_layer(self.gradcam_layer)
                if len(getattr(layer, "_inbound_nodes", ())) > 1:
                    # A shared layer (our growing critic): a no-op modifier makes tf-keras-vis clone
                    # the critic into fresh, unshared layers with the same weights (see module doc).
                    self._tools[method] = cls(self.critic, model_modifier=lambda model: None, clone=True)
                else:
                    self._tools[method] = cls(self.critic, clone=False)
        return self._tools[method]

    def _tf_keras_vis_maps(self, method, images, sign, seed):
        tool = self._tool(method)
        score = _score(sign)

        def fn(x):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Keras: "The structure of `inputs` doesn't match ..."
                if method == "saliency":
                    return tool(score, x, normalize_map=False)
                if method == "smoothgrad":
                    np.random.seed(seed)  # tf-keras-vis draws its noise from NumPy's global generator
                    return tool(score, x, smooth_samples=SMOOTH_SAMPLES, smooth_noise=SMOOTH_NOISE, normalize_map=False)
                return tool(
                    score,
                    x,
                    penultimate_layer=self.gradcam_layer,
                    seek_penultimate_conv_layer=False,
                    normalize_cam=False,
                )

        return _batched(fn, images, self.batch_size)

    def maps(self, method, images, sign=1.0, seed=0):
        """Non-negative (N, H, W) maps of `sign * D` for float images (N, H, W, C) in [-1, 1]."""
        if method not in METHODS:
            raise UserInputError(
                f"unknown explain method; expected one of {', '.join(METHODS)}. Received: method={method}"
            )
        try:
            result = self._tf_keras_vis_maps(method, images, sign, seed)
        except (ValueError, TypeError, AttributeError, ImportError, tf.errors.InvalidArgumentError) as error:
            note = (
                f"{method}: tf-keras-vis failed ({type(error).__name__}: {str(error).splitlines()[0]}); "
                f"used a plain GradientTape saliency instead"
            )
            if note not in self.notes:
                self.notes.append(note)
                print(f"explain: {note}", flush=True)
            result = gradient_saliency(self.critic, images, sign, self.batch_size)
        return np.maximum(np.nan_to_num(result), 0.0).astype(np.float32)


def explain_images(critic, images, sign, methods=DEFAULT_METHODS, batch_size=4, seed=0, explainer=None):
    """{method: (N, H, W) map} and the critic scores D(x) of float images in [-1, 1]."""
    explainer = explainer or CriticExplainer(critic, batch_size)
    maps = {method: explainer.maps(method, images, sign, seed) for method in methods}
    return maps, critic_scores(critic, images, batch_size)


def overlay_grid(uint8_images, maps, min_size=images_lib.DISPLAY_MIN_SIZE):
    """One row per image: the image, then one overlay per method (in `maps` order); tiles enlarged."""
    tiles = []
    for index, image in enumerate(uint8_images):
        row = [image if image.shape[-1] == 3 else np.repeat(image, 3, axis=-1)]
        row += [overlay(image, method_maps[index]) for method_maps in maps.values()]
        tiles += [images_lib.upscale_nearest(tile, min_size) for tile in row]
    return images_lib.make_grid(np.stack(tiles), columns=1 + len(maps))


def critic_batch_size(group_size, num_images, limit=64):
    """Images per critic call: a multiple of the minibatch-stddev group size, at most ~`limit`."""
    group_size = max(1, int(group_size))
    return group_size * max(1, min(limit // group_size, -(-num_images // group_size)))


def explain_run(
    run_dir, checkpoint=None, output_dir=None, real_dir=None, num_images=16, methods=DEFAULT_METHODS, seed=0
):
    """Maps of a run's critic for real and generated images; writes explain-{real,fake}.png and explain.npz.

    Args:
        run_dir: the training run whose critic to explain.
        checkpoint: checkpoint file (default: the run's newest).
        output_dir: where to write (default: `<run_dir>/explain-kimgNNNNNN.NNN`).
        real_dir: real images, a pyramid or a folder (default: the run's dataset).
        num_images: images per side.
        methods: maps to draw, any of `METHODS` (duplicates are dropped).
        seed: seeds the latents of the fake side (`progan_tf.latents.seeded_latents`) and SmoothGrad.
        Each path may be local or on any filesystem `tf.io.gfile` reaches (gs://, s3://, ram://).

    Returns:
        The output folder (a `pathlib.Path`, or an `atomic_files.UrlPath` for a `scheme://` one).
    """
    methods = list(dict.fromkeys(methods))
    generator, model, config, saved = generators.load_run_generator(run_dir, checkpoint)
    critic = model.d_model
    resolution = int(critic.input_shape[1])
    reals_uint8 = _real_images(real_dir or config.data_dir, critic, num_images)
    latents = seeded_latents(seed, num_images, generator.latent_size)
    fakes = np.asarray(model.gs_model(latents, training=False))
    sides = {
        "real": (uint8_to_float(reals_uint8).numpy(), reals_uint8, 1.0),
        "fake": (fakes, images_lib.to_uint8(fakes), -1.0),
    }
    batch_size = critic_batch_size(config.network.mbstd_group_size, num_images)
    explainer = CriticExplainer(critic, batch_size)
    kimg = saved.images_shown / 1000
    output_dir = atomic_files.as_path(output_dir or atomic_files.path_in(run_dir, f"explain-kimg{kimg:010.3f}"))
    tf.io.gfile.makedirs(str(output_dir))
    arrays = {}
    for side, (floats, uint8_images, sign) in sides.items():
        maps, scores = explain_images(critic, floats, sign, methods, batch_size, seed, explainer)
        path = images_lib.save_png(output_dir / f"explain-{side}.png", overlay_grid(uint8_images, maps))
        arrays.update({f"{side}_images": uint8_images, f"{side}_scores": scores})
        arrays.update({f"{side}_{method}": values for method, values in maps.items()})
        print(
            f"explain: {len(floats)} {side} images, mean D(x) {scores.mean():+.4f}; "
            f"columns: image, {', '.join(methods)}; {path}"
        )
    encoded = io.BytesIO()
    np.savez_compressed(encoded, methods=np.array(methods), **arrays)
    atomic_files.write_atomically(output_dir / "explain.npz", encoded.getvalue())
    print(
        f"explain: critic of {saved.path} (kimg {kimg:.3f}, {resolution}x{resolution}); maps of D(real) "
        f"and -D(fake), scores and images in {output_dir / 'explain.npz'}"
    )
    for note in explainer.notes:
        print(f"explain: note: {note}")
    return output_dir


def _real_images(real_dir, critic, num_images):
    """The first `num_images` uint8 images of a pyramid or folder at the critic's resolution."""
    if not real_dir or not sources.is_folder(real_dir):
        raise UserInputError(
            f"real images for explain not found: the run's dataset pyramid (or --real_dir). "
            f"Received: real_dir={real_dir}"
        )
    resolution = int(critic.input_shape[1])
    reals_uint8 = np.concatenate(list(sources.image_dir_batches(real_dir, resolution, limit=num_images)))[:num_images]
    if reals_uint8.shape[-1] != critic.input_shape[-1]:
        raise UserInputError(
            f"the real images have {reals_uint8.shape[-1]} channels, the critic takes "
            f"{critic.input_shape[-1]}. Received: real_dir={real_dir}"
        )
    return reals_uint8
