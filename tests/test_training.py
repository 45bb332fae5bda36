"""The training step (EMA, fades, non-finite updates), replica scaling, and whole runs through
main.py: grow 4 -> 8 -> 16, resume, export and serve; SIGKILL mid-fade and resume exactly."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from progan_tf import checkpoint as ckpt_lib
from progan_tf import data as data_lib
from progan_tf.config import OptimizerConfig
from progan_tf.images import to_uint8
from progan_tf.networks import NetworkConfig
from progan_tf.progan import ProGAN, fade_in_reals
from progan_tf.schedule import ScheduleConfig, phases
from tests import helpers_training as helpers

NETWORK = NetworkConfig(resolution=16, latent_size=16, fmap_base=64, fmap_max=16)
BATCH = 8
SCHEDULE = ScheduleConfig(
    final_resolution=16, stabilize_kimg=0.128, transition_kimg=0.128, total_kimg=0.64, default_batch_size=BATCH
)
SEED = 7


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory):
    """128 synthetic images at 4, 8 and 16 px, built once for the module."""
    return helpers.build_tiny_pyramid(tmp_path_factory.mktemp("pyramid") / "synthetic16", resolution=16, num_images=128)


def _numpy_fade(images, alpha):
    n, h, w, c = images.shape
    pooled = images.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    coarse = np.repeat(np.repeat(pooled, 2, axis=1), 2, axis=2)
    return coarse + alpha * (images - coarse)


def _started_model(phase_index, images_into_phase=0, **kwargs):
    keras.utils.set_random_seed(SEED)  # fixed initial weights: reproducible margins below
    model = ProGAN(NETWORK, seed=SEED, **kwargs)
    phase = phases(SCHEDULE)[phase_index]
    model.images_shown.assign(phase.start_images + images_into_phase)
    model.start_phase(phase)
    return model, phase


def _values(variables):
    return [np.array(v.numpy()) for v in variables]


def _constant_iterator(images):
    return iter(tf.data.Dataset.from_tensors(tf.constant(images, tf.float32)).repeat())


# --- fade_in_reals ----------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_fade_in_reals_matches_numpy(alpha):
    images = np.random.default_rng(0).uniform(-1, 1, (3, 8, 8, 3)).astype(np.float32)
    got = np.asarray(fade_in_reals(tf.constant(images), tf.constant(alpha)))
    np.testing.assert_allclose(got, _numpy_fade(images, alpha), atol=1e-6)
    if alpha == 1.0:
        np.testing.assert_allclose(got, images, atol=1e-6)
    if alpha == 0.0:
        # The upsampled 2x2 average: every 2x2 block is constant and holds the block mean.
        blocks = got.reshape(3, 4, 2, 4, 2, 3)
        np.testing.assert_allclose(blocks, np.broadcast_to(blocks[:, :, :1, :, :1], blocks.shape), atol=1e-6)
        np.testing.assert_allclose(blocks[:, :, 0, :, 0], images.reshape(3, 4, 2, 4, 2, 3).mean(axis=(2, 4)), atol=1e-6)


# --- EMA ----------------------------------------------------------------------------------------


def test_both_optimizers_of_every_phase_take_the_optimizer_config():
    adam = OptimizerConfig(beta_1=0.5, beta_2=0.9, epsilon=1e-4)
    model, phase = _started_model(2, optimizer=adam)
    for optimizer in (model.g_optimizer, model.d_optimizer):
        assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.5, 0.9, 1e-4)
        assert float(optimizer.learning_rate.numpy()) == pytest.approx(phase.learning_rate)


def test_ema_follows_g_after_each_critic_step(pyramid):
    beta = 0.9
    model, phase = _started_model(2, optimizer=OptimizerConfig(ema_beta=beta))  # 8x8 stabilise
    strategy = tf.distribute.get_strategy()
    iterator = iter(data_lib.make_dataset(str(pyramid), phase.resolution, BATCH, seed=0))
    step = model.make_distributed_step(strategy)
    step(iterator)  # now G has moved away from Gs (both started equal)

    stage_ids = {id(w) for w in model.gs_model.weights}
    other_gs = [w for w in model.ema_generator.weights if id(w) not in stage_ids]
    g_before, gs_before = _values(model.g_model.trainable_weights), _values(model.gs_model.trainable_weights)
    other_before = _values(other_gs)
    assert any(not np.allclose(g, s) for g, s in zip(g_before, gs_before))

    step(iterator)
    g_after, gs_after = _values(model.g_model.trainable_weights), _values(model.gs_model.trainable_weights)
    assert len(gs_after) == len(g_after) > 0
    for g0, s0, _g1, s1 in zip(g_before, gs_before, g_after, gs_after):
        # The average is taken after the critic step, before the generator step, so it follows
        # the generator as it was at the start of the iteration.
        np.testing.assert_allclose(s1, g0 + beta * (s0 - g0), rtol=1e-6, atol=1e-7)
    assert any(not np.allclose(g0, g1) for g0, g1 in zip(g_before, g_after))  # G did move
    assert any(
        not np.allclose(s1, g1 + beta * (s0 - g1), rtol=1e-6, atol=1e-7)
        for s0, g1, s1 in zip(gs_before, g_after, gs_after)
    )
    # Layers of other stages (4x4 to_rgb, the 16x16 block) keep their average.
    for before, after in zip(other_before, _values(other_gs)):
        np.testing.assert_array_equal(before, after)


# --- Fade-in: alpha in G, D and the reals, one trace -------------------------------------------


def test_fade_alpha_reaches_g_d_and_reals_without_retracing():
    model, phase = _started_model(1, images_into_phase=32)  # 8x8 fade, alpha 0.25
    assert phase.fade_in and phase.resolution == 8
    strategy = tf.distribute.get_strategy()
    reals = np.random.default_rng(1).uniform(-1, 1, (BATCH, 8, 8, 3)).astype(np.float32)
    iterator = _constant_iterator(reals)
    step = model.make_distributed_step(strategy)
    seen_alphas = []
    for _ in range(4):
        images_shown = int(model.images_shown.numpy())
        alpha = phase.alpha(images_shown)
        seen_alphas.append(alpha)
        # Expected scores at this alpha, from the networks before the step: the critic sees the
        # reals blended like the generator's output, and the generator's fade uses alpha too.
        latents = tf.random.stateless_normal((BATCH, NETWORK.latent_size), seed=[SEED * 3, images_shown])
        model.set_alpha(alpha)
        expected_real = float(np.mean(model.d_model(_numpy_fade(reals, alpha), training=True)))
        unblended_real = float(np.mean(model.d_model(reals, training=True)))
        expected_fake = float(np.mean(model.d_model(model.g_model(latents, training=True), training=True)))
        model.generator.set_alpha(1.0 - alpha)  # only G's fade differs
        fake_other_alpha = float(np.mean(model.d_model(model.g_model(latents, training=True), training=True)))
        model.set_alpha(0.0)  # the step must set every alpha itself

        stats = step(iterator)["sums"]

        assert float(stats["alpha"]) == pytest.approx(alpha, abs=1e-7)
        for name, network in model.networks.items():
            assert float(network.fade.alpha.numpy()) == pytest.approx(alpha, abs=1e-7), name
        assert float(stats["real_score"]) == pytest.approx(expected_real, rel=1e-5, abs=1e-6)
        assert abs(expected_real - unblended_real) > 5e-5  # far outside the tolerance above
        assert float(stats["fake_score"]) == pytest.approx(expected_fake, rel=1e-5, abs=1e-6)
        assert abs(expected_fake - fake_other_alpha) > 5e-5
        assert int(model.images_shown.numpy()) == images_shown + BATCH
    assert seen_alphas == pytest.approx([0.25, 0.3125, 0.375, 0.4375])
    assert step.experimental_get_tracing_count() == 1


# --- Non-finite updates -------------------------------------------------------------------------


def test_non_finite_critic_update_is_skipped():
    model, _ = _started_model(0)  # 4x4
    step = model.make_distributed_step(tf.distribute.get_strategy())
    d_before, g_before = model.discriminator.get_weights(), model.generator.get_weights()
    stats = step(_constant_iterator(np.full((BATCH, 4, 4, 3), np.inf, np.float32)))["sums"]
    assert float(stats["d_finite"]) == 0.0
    assert float(stats["g_finite"]) == 1.0  # the generator's loss never sees the reals
    for before, after in zip(d_before, model.discriminator.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert int(model.d_optimizer.iterations.numpy()) == 0
    assert int(model.g_optimizer.iterations.numpy()) == 1
    assert any(not np.array_equal(a, b) for a, b in zip(g_before, model.generator.get_weights()))
    assert all(np.all(np.isfinite(w)) for w in model.discriminator.get_weights())


def test_nan_critic_weight_skips_both_updates():
    model, _ = _started_model(0)
    bias = next(w for w in model.d_model.trainable_weights if "dense1" in w.path and "kernel" in w.path)
    bias.assign(np.full(bias.shape, np.nan, np.float32))
    step = model.make_distributed_step(tf.distribute.get_strategy())
    d_before, g_before = model.discriminator.get_weights(), model.generator.get_weights()
    reals = np.random.default_rng(2).uniform(-1, 1, (BATCH, 4, 4, 3)).astype(np.float32)
    stats = step(_constant_iterator(reals))["sums"]
    assert float(stats["d_finite"]) == 0.0 and float(stats["g_finite"]) == 0.0
    for before, after in zip(d_before + g_before, model.discriminator.get_weights() + model.generator.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert int(model.d_optimizer.iterations.numpy()) == 0 and int(model.g_optimizer.iterations.numpy()) == 0
    assert int(model.images_shown.numpy()) == BATCH  # the images still count


# --- Replica scaling (subprocess: logical devices must be set before TF starts) ----------------


@pytest.mark.slow
def test_two_replicas_match_one_device(pyramid, tmp_path):
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    spec = {
        "logical_cpus": 2,
        "runs": [
            {"config": helpers.short_train_spec(pyramid, tmp_path / "run_one"), "devices": None, "out": str(one)},
            {
                "config": helpers.short_train_spec(pyramid, tmp_path / "run_two"),
                "devices": ["/cpu:0", "/cpu:1"],
                "out": str(two),
            },
        ],
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    result = helpers.run_checked([sys.executable, "-m", "tests.helpers_training", str(tmp_path / "spec.json")])
    assert "2 replica(s)" in result.stdout and "1 replica(s)" in result.stdout
    a, b = dict(np.load(one)), dict(np.load(two))
    assert int(a.pop("images_shown")) == int(b.pop("images_shown")) == 56
    difference = helpers.max_abs_difference(a, b)
    print(f"max |one device - two replicas| = {difference:.3g}")
    assert difference < 2e-5
    # And training did something: the weights moved from a fresh initialisation by far more.
    assert np.max(np.abs(a["generator/g_4x4_dense/kernel"])) > 0


# --- End to end through main.py ------------------------------------------------------------------


_LOAD_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf
    export_dir, end_export_dir, latents_file, out_file = sys.argv[1:]
    latents = np.load(latents_file)
    model = tf.saved_model.load(export_dir)
    served = model.serve(tf.constant(latents)).numpy()
    from_seed = model.generate_from_seed(seed=tf.constant(5, tf.int64), num_images=tf.constant(3)).numpy()
    again = model.generate_from_seed(seed=tf.constant(5, tf.int64), num_images=tf.constant(3)).numpy()
    other_seed = model.generate_from_seed(seed=tf.constant(6, tf.int64), num_images=tf.constant(3)).numpy()
    seed_latents = tf.random.stateless_normal([3, latents.shape[1]], seed=tf.constant([5, 0], tf.int64))
    served_seed_latents = model.serve(seed_latents).numpy()
    end_model = tf.saved_model.load(end_export_dir)  # keep a reference: it owns the variables
    end_served = end_model.serve(tf.constant(latents)).numpy()
    np.savez(out_file, served=served, from_seed=from_seed, again=again, other_seed=other_seed,
             served_seed_latents=served_seed_latents, end_served=end_served,
             progan_imported=np.array(any(m.startswith("progan_tf") for m in sys.modules)))
    """
)


@pytest.mark.slow
def test_grow_resume_export_and_serve(pyramid, tmp_path):
    run_dir = tmp_path / "run"
    # First run: 4x4, the 8x8 fade, and part of the 8x8 stabilisation (ends at 320 images).
    first = helpers.run_checked(
        helpers.main_command(*helpers.main_flags(pyramid, run_dir, total_kimg=0.32, export_at_end=False))
    )
    assert "phase 2: 8x8 stabilize kimg 0.256-0.32" in first.stdout
    assert not (run_dir / "export").exists()
    last_first = helpers.checkpoint_meta(run_dir / "checkpoints" / "ckpt-320")
    assert last_first["phase_index"] == 2

    # Resumed (latest checkpoint) with the full length: finishes 8x8, fades in and trains 16x16.
    second = helpers.run_checked(helpers.main_command(*helpers.main_flags(pyramid, run_dir)))
    lines = second.stdout.splitlines()
    resumed = [i for i, line in enumerate(lines) if line.startswith("resumed from ")]
    assert len(resumed) == 1
    assert lines[resumed[0]].endswith("ckpt-320 at kimg 0.320")
    phase_lines = [line for line in lines if line.startswith("phase ")]
    assert phase_lines[0].startswith("phase 2: 8x8 stabilize kimg 0.256-0.384")
    assert [line.split(":")[0] for line in phase_lines] == ["phase 2", "phase 3", "phase 4"]
    assert "16x16 fade_in" in phase_lines[1] and "16x16 stabilize" in phase_lines[2]
    assert "done: kimg 0.640" in lines[-1]
    ticks = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    kimgs = [t["kimg"] for t in ticks]
    assert kimgs == sorted(kimgs) and kimgs[-1] == 0.64 and len(kimgs) == len(set(kimgs))  # no tick redone
    assert all(t["skipped_updates"] == 0 for t in ticks)
    assert {t["resolution"] for t in ticks} == {4, 8, 16}
    assert helpers.checkpoint_meta(ckpt_lib.list_checkpoints(run_dir / "checkpoints")[-1])["images_shown"] == 640
    assert any((run_dir / "samples").glob("fakes-ema-*.png"))
    assert (run_dir / "export" / "saved_model.pb").is_file()

    # Export the latest checkpoint, then serve it from a process that only has TensorFlow.
    export_dir = tmp_path / "exported"
    helpers.run_checked(helpers.main_command("--mode=export", f"--run_dir={run_dir}", f"--output_dir={export_dir}"))
    latents = np.random.default_rng(3).standard_normal((4, NETWORK.latent_size)).astype(np.float32)
    np.save(tmp_path / "latents.npy", latents)
    script = tmp_path / "load.py"
    script.write_text(_LOAD_SCRIPT)
    env = helpers.subprocess_env()
    env.pop("PYTHONPATH")  # progan_tf is not importable there
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            str(export_dir),
            str(run_dir / "export"),
            str(tmp_path / "latents.npy"),
            str(tmp_path / "out.npz"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    out = dict(np.load(tmp_path / "out.npz"))
    assert not bool(out["progan_imported"])
    assert out["served"].dtype == np.uint8 and out["served"].shape == (4, 16, 16, 3)
    assert out["from_seed"].shape == (3, 16, 16, 3)
    np.testing.assert_array_equal(out["from_seed"], out["again"])
    np.testing.assert_array_equal(out["from_seed"], out["served_seed_latents"])
    assert not np.array_equal(out["from_seed"], out["other_seed"])
    np.testing.assert_array_equal(out["served"], out["end_served"])  # end-of-run export == last checkpoint

    # The served images are the EMA generator of the last checkpoint.
    from progan_tf import runs

    model, _, saved = runs.load_trained_model(run_dir)
    assert saved.images_shown == 640 and model.phase.resolution == 16 and not model.phase.fade_in
    expected = np.asarray(to_uint8(model.gs_model(latents, training=False)))
    assert np.max(np.abs(expected.astype(int) - out["served"].astype(int))) <= 1
    assert np.std(out["served"]) > 0


# --- SIGKILL mid-fade and resume ----------------------------------------------------------------


def _checkpoints(run_dir):
    return {ckpt_lib.checkpoint_images(p): p for p in ckpt_lib.list_checkpoints(run_dir / "checkpoints")}


@pytest.mark.slow
def test_sigkill_mid_fade_then_resume_reproduces_the_uninterrupted_run(pyramid, tmp_path):
    # 4x4 for 32 images, the 8x8 fade over images 32-160, 8x8 until 192; a checkpoint every 2 steps.
    flags = dict(
        resolution=8,
        stabilize_kimg=0.032,
        transition_kimg=0.128,
        total_kimg=0.192,
        checkpoint_kimg=0.016,
        keep_checkpoints=0,
        tick_kimg=0.032,
        sample_kimg=0,
        deterministic=True,
        export_at_end=False,
    )
    fade_start, fade_end = 32, 160
    reference_dir, killed_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    reference = subprocess.Popen(
        helpers.main_command(*helpers.main_flags(pyramid, reference_dir, **flags)),
        cwd=helpers.REPO_ROOT,
        env=helpers.subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    command = helpers.main_command(*helpers.main_flags(pyramid, killed_dir, **flags))
    victim = subprocess.Popen(
        command,
        cwd=helpers.REPO_ROOT,
        env=helpers.subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        helpers.wait_for(
            lambda: any(fade_start < n < fade_end for n in _checkpoints(killed_dir)), victim, timeout=300, poll=0.005
        )
    finally:
        helpers.kill_process(victim)
    assert victim.returncode == -9
    saved = _checkpoints(killed_dir)
    in_fade = [n for n in saved if fade_start < n < fade_end]
    # If the run got further before the signal landed (a loaded machine), drop the later
    # checkpoints: the same as a kill moments earlier (each file is complete and independent).
    for n in [n for n in saved if n > max(in_fade)]:
        helpers.remove_checkpoint(saved.pop(n))
    resume_point = max(saved)
    assert fade_start < resume_point < fade_end
    meta = helpers.checkpoint_meta(saved[resume_point])
    assert meta["phase_index"] == 1 and meta["images_shown"] == resume_point

    resumed = helpers.run_checked(command)
    out, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err[-4000:]

    lines = resumed.stdout.splitlines()
    assert lines[0].startswith("devices: ")
    assert lines[1] == f"resumed from {saved[resume_point]} at kimg {resume_point / 1000:.3f}"
    phase_lines = [line for line in lines if line.startswith("phase ")]
    assert phase_lines[0] == "phase 1: 8x8 fade_in kimg 0.032-0.16, batch 8, lr 0.001"
    ticks = [line for line in lines if line.startswith("tick ")]
    first_tick_kimg = float(ticks[0].split()[3].split("/")[0])  # "kimg 0.064/0.192 (33.3%)"
    assert resume_point / 1000 < first_tick_kimg <= resume_point / 1000 + 0.032
    assert lines[-1].startswith("done: kimg 0.192")
    assert out.splitlines()[-1].startswith("done: kimg 0.192")
    log = (killed_dir / "log.txt").read_text()
    assert log.count("resumed from") == 1

    # Every checkpoint written after the resume equals the uninterrupted run's at the same count,
    # networks and optimizer state alike (the final one included).
    expected = _checkpoints(reference_dir)
    after = sorted(n for n in _checkpoints(killed_dir) if n > resume_point)
    assert after[0] == resume_point + 16 and after[-1] == 192
    assert set(after) <= set(expected)
    worst = 0.0
    for n in after:
        a = helpers.checkpoint_weights(_checkpoints(killed_dir)[n])
        b = helpers.checkpoint_weights(expected[n])
        worst = max(worst, helpers.max_abs_difference(a, b))
        assert helpers.checkpoint_position(_checkpoints(killed_dir)[n]) == helpers.checkpoint_position(expected[n])
    print(f"resumed from {resume_point} images; max |resumed - uninterrupted| = {worst:.3g}")
    assert worst == 0.0


# --- mixed precision ----------------------------------------------------------------------------


def test_mixed_precision_step_keeps_float32_weights_and_scales_the_penalty():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model, phase = _started_model(1, mixed_precision=True)  # 8x8 fade-in
        assert isinstance(model.d_optimizer, keras.optimizers.LossScaleOptimizer)
        assert model.g_model.compute_dtype == "float16"
        assert all(w.dtype == "float32" for w in model.d_model.trainable_weights)
        images = np.random.default_rng(1).uniform(-1, 1, (BATCH, 8, 8, 3)).astype(np.float32)
        step = model.make_distributed_step(tf.distribute.get_strategy())
        iterator = _constant_iterator(images)
        before = _values(model.d_model.trainable_weights)
        finite_steps = []
        for _ in range(4):
            stats = step(iterator)["sums"]
            finite_steps.append(float(stats["d_finite"]))
            # Every reported quantity is a float32 summary of a float16 network, and stays finite.
            assert all(np.isfinite(float(v)) for v in stats.values())
        # The dynamic loss scale starts at 2**15 and halves on overflow; updates then go through.
        assert finite_steps[-1] == 1.0
        after = _values(model.d_model.trainable_weights)
        assert any(np.abs(a - b).max() > 0 for a, b in zip(after, before))
        assert float(model.d_optimizer.dynamic_scale) <= 2.0**15
    finally:
        keras.mixed_precision.set_global_policy("float32")
