"""Small-sample SWD during training (`--eval_kimg`): a cheap progress signal, not the protocol value.

`small_swd` compares `num_images` generated images with the first `num_images` real images of the
pyramid level at the current resolution (SWD needs >= 16 px; smaller phases return {}). Its
numbers are noisier and biased upwards against the 16384-image protocol, but comparable between
evaluations of one run with the same `num_images` and seed.
"""

import time

from progan_tf.data import load_manifest
from progan_tf.generators import generator_from_keras
from progan_tf.metrics import sources, swd
from progan_tf.metrics.evaluate import evaluate


def small_swd(generator_model, data_dir, resolution, num_images, seed, batch_size=64):
    """SWD between a generator and the dataset at one resolution, with few images.

    Args:
        generator_model: Keras model latents (N, latent_size) -> images in [-1, 1] at `resolution`
            (e.g. the EMA generator of the current phase, `model.gs_model`).
        data_dir: dataset pyramid (`python -m datasets.build`).
        resolution: pyramid level; must match the generator's output. Below 16 px returns {}.
        num_images: images per side (capped at the level's size, at least 2).
        seed: seeds the latents and the SWD patches/directions (the same seed gives the same latents
            every time, so successive evaluations differ only by the generator).
        batch_size: images per generator call.

    Returns:
        {"eval_swd_<res>": .., ..., "eval_swd_avg": .., "eval_num_images": n, "eval_sec": seconds};
        the values are SWD x 1e3 as in the protocol. {} below 16 px.

    Example (in the training loop, chief only):
        >>> logger.stats({"kimg": kimg, **small_swd(model.gs_model, config.data_dir, phase.resolution,
        ...                                          config.eval_num_images, config.seed)}, images_shown)
    """
    if resolution < swd.SWD_MIN_RESOLUTION:
        return {}
    start = time.perf_counter()
    count = max(2, min(int(num_images), int(load_manifest(str(data_dir))["num_images"])))
    generator = generator_from_keras(generator_model)

    results = evaluate(
        ["swd"],
        lambda: sources.pyramid_batches(str(data_dir), resolution, batch_size, limit=count),
        lambda: sources.generated_batches(generator, (generator.latent_size,), count, batch_size, seed=seed),
        num_images=count,
        seed=seed,
        verbose=False,
    )
    record = {f"eval_{key}": float(value) for key, value in results.items() if key.startswith("swd_")}
    record["eval_num_images"] = count
    record["eval_sec"] = round(time.perf_counter() - start, 2)
    return record
