"""--mode=explain: tf-keras-vis saliency / Grad-CAM maps of the critic, overlays and the CLI."""

import keras
import numpy as np
import pytest
from PIL import Image

from progan_tf import checkpoint as ckpt_lib
from progan_tf import explain
from tests.test_generate import main_in_process, run_main, tiny_run

MASK = np.zeros((16, 16, 1), np.float32)
MASK[4:8, 9:13] = 1.0  # the only region this critic looks at


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory)


def masked_critic():
    """A critic whose score depends only on the pixels under MASK: mask -> conv -> dense."""
    keras.utils.set_random_seed(4)
    images = keras.Input((16, 16, 3), name="images")
    masked = keras.layers.Lambda(lambda x: x * MASK, name="mask")(images)
    features = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, activation="relu", name="conv")(masked)
    score = keras.layers.Dense(1)(keras.layers.Flatten()(features))
    return keras.Model(images, score, name="masked_critic")


def dilate(mask, pixels):
    out = mask.copy()
    for dy in range(-pixels, pixels + 1):
        for dx in range(-pixels, pixels + 1):
            out = np.maximum(out, np.roll(np.roll(mask, dy, 0), dx, 1))
    return out


def test_maps_concentrate_where_a_masked_critic_looks():
    critic = masked_critic()
    images = np.random.default_rng(0).uniform(-1, 1, (6, 16, 16, 3)).astype(np.float32)
    explainer = explain.CriticExplainer(critic, batch_size=4)
    inside, near = MASK[..., 0] > 0, dilate(MASK[..., 0], 1) > 0
    for method in ("saliency", "smoothgrad", "gradcam", "gradcam++"):
        for sign in (1.0, -1.0):
            maps = explainer.maps(method, images, sign)
            assert maps.shape == (6, 16, 16) and maps.dtype == np.float32, method
            assert np.all(maps >= 0) and np.all(np.isfinite(maps)), method
            region = inside if method in ("saliency", "smoothgrad") else near  # CAM: conv output, 3x3 halo
            if method.startswith("gradcam") and not maps.any():
                continue  # ReLU may leave no evidence for one sign; the other sign must have some
            total = maps.sum(axis=(1, 2))
            assert np.all(maps[:, ~region].sum(axis=1) <= 1e-6 * np.maximum(total, 1e-12)), (method, sign)
        assert explainer.maps(method, images, 1.0).any() or explainer.maps(method, images, -1.0).any(), method
    assert explainer.notes == []  # every method ran through tf-keras-vis, no fallback
    # tf-keras-vis vanilla saliency is exactly |gradient| (max over channels); the sign does not matter.
    np.testing.assert_allclose(
        explainer.maps("saliency", images, -1.0), explain.gradient_saliency(critic, images, 1.0), rtol=1e-5, atol=1e-7
    )


def test_maps_of_the_runs_critic_for_real_and_generated_images(run):
    from progan_tf import generators
    from progan_tf.latents import seeded_latents
    from progan_tf.metrics import sources

    run_dir, data_dir = run
    checkpoints = ckpt_lib.list_checkpoints(run_dir / "checkpoints")  # 16x16 fade-in (alpha 0.5), then stable
    for checkpoint, methods in ((checkpoints[0], explain.METHODS), (checkpoints[1], ("saliency", "gradcam"))):
        generator, model, _, _ = generators.load_run_generator(run_dir, checkpoint)
        critic = model.d_model
        reals = np.concatenate(list(sources.pyramid_batches(str(data_dir), 16, limit=6))).astype(np.float32)
        reals = reals / 127.5 - 1.0
        fakes = np.asarray(model.gs_model(seeded_latents(0, 6, 16)))
        explainer = explain.CriticExplainer(critic, batch_size=explain.critic_batch_size(4, 6))
        for images, sign in ((reals, 1.0), (fakes, -1.0)):
            maps, scores = explain.explain_images(critic, images, sign, methods, explainer=explainer)
            assert list(maps) == list(methods)
            assert scores.shape == (6,) and np.all(np.isfinite(scores))
            for method, values in maps.items():
                assert values.shape == (6, 16, 16), method
                assert np.all(values >= 0) and np.all(np.isfinite(values)), method
            assert np.all(maps["saliency"].reshape(6, -1).max(axis=1) > 0)
        assert explainer.notes == []
        # Grad-CAM runs on a clone of the critic (its layers are shared between stages): same outputs,
        # the fade-in's alpha included.
        clone = explainer._tools["gradcam"].model
        assert clone is not critic
        np.testing.assert_allclose(clone(reals[:4]), critic(reals[:4]), rtol=1e-5, atol=1e-6)
        # Batches are padded to a multiple of the minibatch-stddev group: 6 images -> one call of 8,
        # so the scores equal the critic's on the padded batch.
        padded = np.concatenate([reals, reals[:2]])
        np.testing.assert_allclose(explain.critic_scores(critic, reals, 8), critic(padded)[:6, 0], rtol=1e-5)


def test_colormap_and_overlay_grid():
    ramp = explain.colormap(np.linspace(0, 1, 50))
    assert ramp.shape == (50, 3) and ramp.dtype == np.uint8
    assert np.all(np.diff(ramp.astype(int).sum(axis=1)) >= 0)  # dark to bright
    np.testing.assert_array_equal(ramp[0], [0, 0, 4])
    image = np.full((8, 8, 3), 200, np.uint8)
    saliency = np.zeros((8, 8))
    saliency[2, 3] = 5.0
    blended = explain.overlay(image, saliency)
    assert blended.shape == (8, 8, 3)
    assert np.all(blended[0, 0] < blended[2, 3].max())  # hottest pixel drawn brightest
    maps = {"a": np.stack([saliency] * 2), "b": np.stack([saliency] * 2)}
    grid = explain.overlay_grid(np.stack([image, image]), maps, min_size=8)
    assert grid.shape == (16, 24, 3)
    assert explain.overlay(image[..., :1], saliency).shape == (8, 8, 3)


def test_explain_cli_writes_overlays_and_bad_paths_fail_cleanly(run, tmp_path, capsys):
    run_dir, _ = run
    out = tmp_path / "explain"
    result = run_main(
        "--mode=explain",
        f"--run_dir={run_dir}",
        f"--output_dir={out}",
        "--num_images=5",
        "--explain_methods=saliency,gradcam++",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["explain-fake.png", "explain-real.png", "explain.npz"]
    for side in ("real", "fake"):
        grid = np.asarray(Image.open(out / f"explain-{side}.png"))
        assert grid.shape == (5 * 128, 3 * 128, 3)  # rows: images; columns: image + 2 overlays
    with np.load(out / "explain.npz") as arrays:
        assert list(arrays["methods"]) == ["saliency", "gradcam++"]
        assert arrays["real_saliency"].shape == arrays["fake_gradcam++"].shape == (5, 16, 16)
        assert arrays["real_images"].dtype == np.uint8 and arrays["fake_scores"].shape == (5,)
        assert arrays["real_saliency"].min() >= 0 and arrays["real_saliency"].max() > 0
    assert "mean D(x)" in result.stdout

    code, err = main_in_process(capsys, "--mode=explain")
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: ") and "--run_dir" in err
    code, err = main_in_process(capsys, "--mode=explain", f"--run_dir={tmp_path / 'nowhere'}")
    assert code == 1 and err.count("\n") == 1 and "nowhere" in err
    code, err = main_in_process(capsys, "--mode=explain", f"--run_dir={run_dir}", f"--real_dir={tmp_path / 'none'}")
    assert code == 1 and err.count("\n") == 1 and "none" in err
