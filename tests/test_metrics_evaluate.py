"""evaluate(): one streaming pass over image sources gives the same numbers as the metrics alone."""

import json

import keras
import numpy as np
import pytest
import scipy.ndimage
from PIL import Image

from progan_tf.errors import UserInputError
from progan_tf.metrics import fid, ms_ssim, sources, swd
from progan_tf.metrics.evaluate import evaluate, format_results_table


def fake_generator(latents):
    """Deterministic 'generator': latents -> smooth uint8 images (32 px)."""
    colours = 128 + 60 * np.tanh(latents[:, :3])
    ramp = np.linspace(0.5, 1.0, 32)[None, :, None, None]
    stripes = 8 * np.sin(latents[:, 3:4, None, None] * np.arange(32)[None, None, :, None])
    return np.clip(colours[:, None, None, :] * ramp + stripes, 0, 255).astype(np.uint8)


def feature_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(8),
        ]
    )


def test_evaluate_matches_the_accumulators_run_directly():
    model = feature_model()
    real = lambda: sources.generated_batches(fake_generator, (8,), 48, batch_size=20, seed=1)  # noqa: E731
    fake = lambda: sources.generated_batches(fake_generator, (8,), 48, batch_size=16, seed=2)  # noqa: E731
    results = evaluate(
        ["swd", "ms_ssim", "ms_ssim_real", "fid"], real, fake, num_images=40, feature_model=model, seed=3, verbose=False
    )

    real_images = np.concatenate(list(real()))[:40]
    fake_images = np.concatenate(list(fake()))[:40]
    real_swd, fake_swd = swd.SWDDescriptors(seed=3), swd.SWDDescriptors(seed=4)
    for batch in np.split(real_images, [20]):  # same batch boundaries => same patch positions
        real_swd.update(batch)
    for batch in np.split(fake_images, [16, 32]):
        fake_swd.update(batch)
    expected = swd.swd_result(real_swd, fake_swd, seed=3)
    expected["ms_ssim"] = np.mean(ms_ssim.ms_ssim_pairs(fake_images[0::2], fake_images[1::2]))
    expected["ms_ssim_real"] = np.mean(ms_ssim.ms_ssim_pairs(real_images[0::2], real_images[1::2]))
    real_fid, fake_fid = fid.FIDFeatures(model), fid.FIDFeatures(model)
    real_fid.update(real_images)
    fake_fid.update(fake_images)
    expected["fid"] = fid.fid_result(real_fid, fake_fid)["fid"]

    for key, value in expected.items():
        assert results[key] == pytest.approx(value, rel=1e-5), key
    assert results["ms_ssim_pairs"] == 20
    assert results["num_images"] == {"real": 40, "fake": 40}
    json.dumps(results)  # JSON-ready
    table = format_results_table(results)
    assert "swd_avg" in table and f"{results['fid']:.4f}" in table


def test_folder_source_crops_resizes_and_slices(tmp_path):
    for i in range(5):
        wide = np.zeros((40, 60, 3), np.uint8)
        wide[:, 10:50] = 40 * i  # the centred 40x40 square is uniform; the side bars are cropped away
        Image.fromarray(wide).save(tmp_path / f"{i:02d}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    batches = list(sources.folder_batches(tmp_path, 16, batch_size=2, start=1, limit=3))
    assert [b.shape for b in batches] == [(2, 16, 16, 3), (1, 16, 16, 3)]
    np.testing.assert_array_equal(np.concatenate(batches)[:, :, :, 0].reshape(3, -1).max(axis=1), [40, 80, 120])
    np.testing.assert_array_equal(np.concatenate(batches)[:, :, :, 0].reshape(3, -1).min(axis=1), [40, 80, 120])
    with pytest.raises(UserInputError, match="Received: folder="):
        next(sources.folder_batches(tmp_path / "missing", 16))


def test_generated_source_is_seeded_and_checks_output():
    first = np.concatenate(list(sources.generated_batches(fake_generator, (8,), 10, batch_size=4, seed=7)))
    again = np.concatenate(list(sources.generated_batches(fake_generator, (8,), 10, batch_size=4, seed=7)))
    assert first.shape == (10, 32, 32, 3)
    np.testing.assert_array_equal(first, again)
    with pytest.raises(UserInputError, match="dtype=float32"):
        next(sources.generated_batches(lambda z: np.zeros((len(z), 8, 8, 3), np.float32), (8,), 4))


def test_bad_requests_are_user_errors():
    real = lambda: sources.generated_batches(fake_generator, (8,), 10, seed=1)  # noqa: E731
    with pytest.raises(UserInputError, match="Received: metric_names=\\['swd', 'is'\\]"):
        evaluate(["swd", "is"], real, real)
    with pytest.raises(UserInputError, match="Received: num_images=1"):
        evaluate(["swd"], real, real, num_images=1)
    with pytest.raises(UserInputError, match="swd needs 16.*Received: num_images=10"):
        evaluate(["swd"], real, real, num_images=16, verbose=False)
    with pytest.raises(UserInputError, match="Received: inception_weights=None"):
        evaluate(["fid"], real, real, num_images=4)


@pytest.mark.realdata
def test_real_halves_of_celeba_are_closer_than_blurred(shared_data):
    folder = shared_data / "celeba128"
    first = lambda: sources.folder_batches(folder, 64, limit=48)  # noqa: E731
    second = lambda: sources.folder_batches(folder, 64, start=400, limit=48)  # noqa: E731
    blurred = lambda: (scipy.ndimage.gaussian_filter(b, (0, 1, 1, 0)) for b in second())  # noqa: E731
    same = evaluate(["swd", "ms_ssim"], first, second, num_images=48, verbose=False)
    worse = evaluate(["swd"], first, blurred, num_images=48, verbose=False)
    assert same["swd_64"] < worse["swd_64"]
    assert 0.0 < same["ms_ssim"] < 0.5  # different people: low similarity
