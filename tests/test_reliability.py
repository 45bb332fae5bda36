"""A run survives divergence, signals, full disks and restarts without losing or mixing work
(issue #8): real main.py processes, real signals, real faults.

- Non-finite updates: an update whose gradients are finite but that overflows Adam is rolled
  back (weights and optimizer state unchanged), on one device and across replicas.
- Divergence stops with one line and exit 3; every checkpoint left is finite and resumes.
- SIGINT / SIGTERM mid-fade and mid-phase checkpoint at the step reached and exit 130 / 143; a
  second signal stops at once; the resumed run is bit-identical to an uninterrupted one; under
  MultiWorkerMirroredStrategy every worker stops at the same step.
- A resume is checked before anything is written; --resume=none does not mix runs; a corrupt
  newest checkpoint falls back; a full disk at a checkpoint gives one line and the rerun resumes.
- stats.jsonl continues across resumes (no duplicate rows; tick and time continue).
"""

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from progan_tf import checkpoint as ckpt_lib
from progan_tf import guarded_update, interrupts, run_directory, run_files, run_log
from progan_tf.guarded_update import apply_if_finite
from progan_tf.networks import NetworkConfig
from progan_tf.progan import ProGAN
from progan_tf.schedule import ScheduleConfig, phases
from tests import helpers_training as helpers

# A short 4x4 -> 8x8 run of main.py: 4 steps at 4x4, 2 steps of the fade, a checkpoint every 2 steps.
SHORT = dict(
    resolution=8,
    stabilize_kimg=0.032,
    transition_kimg=0.032,
    total_kimg=0.048,
    checkpoint_kimg=0.016,
    tick_kimg=0.016,
    sample_kimg=0,
    keep_checkpoints=0,
    export_at_end=False,
)
NETWORK = NetworkConfig(resolution=8, latent_size=16, fmap_base=64, fmap_max=16)  # = main_flags' widths


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory):
    return helpers.build_tiny_pyramid(tmp_path_factory.mktemp("pyramid") / "synthetic8", resolution=8, num_images=64)


@pytest.fixture(scope="module")
def short_run(pyramid, tmp_path_factory):
    """A finished SHORT run (checkpoints at 16, 32 and 48 images); tests work on copies."""
    run_dir = tmp_path_factory.mktemp("short") / "run"
    helpers.run_checked(helpers.main_command(*helpers.main_flags(pyramid, run_dir, **SHORT)))
    return run_dir


def _copy_run(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


def _run_lines(stdout):
    """The run's own stdout lines: without the devices / strategy line that main.py prints first."""
    lines = stdout.splitlines()
    assert lines[0].startswith("devices: "), lines[:1]
    return lines[1:]


def _files(directory):
    """{relative path: bytes} of every file under `directory`."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _error_lines(result):
    """The lines main.py printed for the user on stderr (TensorFlow's own start-up logs aside)."""
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def _checkpoints(run_dir):
    return {ckpt_lib.load_checkpoint(p).images_shown: p for p in ckpt_lib.list_checkpoints(run_dir / "checkpoints")}


def _assert_all_finite_and_loadable(run_dir):
    paths = ckpt_lib.list_checkpoints(run_dir / "checkpoints")
    for path in paths:
        ckpt_lib.check_finite(ckpt_lib.load_checkpoint(path))
        assert all(np.all(np.isfinite(a)) for a in helpers.checkpoint_weights(path).values() if a.dtype.kind == "f"), (
            path
        )
    return paths


def _stats_rows(run_dir):
    return [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]


# --- The finite-update guard -------------------------------------------------------------------


def _numpy_adam(weights, m, v, grads, step, lr, beta_2, epsilon):
    """Keras' Adam with beta_1 = 0, in float64."""
    m = grads.astype(np.float64)
    v = beta_2 * v + (1 - beta_2) * grads.astype(np.float64) ** 2
    rate = lr * np.sqrt(1 - beta_2**step)
    return weights - rate * m / (np.sqrt(v) + epsilon), m, v


@pytest.mark.parametrize("loss_scaled", [False, True], ids=["adam", "loss_scale"])
def test_update_that_overflows_adam_from_finite_gradients_is_rolled_back(loss_scaled):
    lr, beta_2, epsilon = 0.1, 0.99, 1e-8
    weights = keras.Variable(np.array([1.0, -2.0, 0.5], np.float32))
    optimizer = keras.optimizers.Adam(learning_rate=lr, beta_1=0.0, beta_2=beta_2, epsilon=epsilon)
    scale = 1.0
    if loss_scaled:  # its gradients arrive multiplied by the loss scale
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        scale = 2.0**15
    optimizer.build([weights])
    step = tf.function(lambda g, loss: apply_if_finite(optimizer, [g], [weights], checked=[loss]))

    def state():
        return [np.array(v.numpy()) for v in (weights, *optimizer.variables)]

    ordinary = np.array([0.5, -1.0, 2.0], np.float32)
    inputs_finite, applied = step(ordinary * scale, 1.0)
    assert bool(inputs_finite) and bool(applied)
    expected, m, v = _numpy_adam(np.array([1.0, -2.0, 0.5]), 0.0, 0.0, ordinary, 1, lr, beta_2, epsilon)
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-6)

    # 3e19 is a finite float32, its square is not: Adam's second moment becomes inf.
    overflowing = np.array([3e19, 1.0, 1.0], np.float32)
    with np.errstate(over="ignore"):
        assert np.isfinite(overflowing).all() and np.isinf(overflowing[0] ** np.float32(2))
    before = state()
    inputs_finite, applied = step(overflowing * np.float32(scale), 1.0)
    assert bool(inputs_finite) and not bool(applied)
    for saved, now in zip(before, state()):
        np.testing.assert_array_equal(saved, now)  # weights, moments, iterations, loss scale

    # A non-finite loss skips the update even when the gradients are finite.
    inputs_finite, applied = step(ordinary * scale, np.inf)
    assert not bool(inputs_finite) and not bool(applied)
    after = state()
    np.testing.assert_array_equal(after[0], before[0])
    if loss_scaled:  # the loss-scale optimizer skipped by itself, and halved its scale
        assert float(optimizer.dynamic_scale.numpy()) == scale / 2
        scale /= 2
    else:
        for saved, now in zip(before, after):
            np.testing.assert_array_equal(saved, now)

    # The rolled-back and skipped steps did not count: the next step is Adam's second step.
    inputs_finite, applied = step(ordinary * np.float32(scale), 1.0)
    assert bool(applied)
    expected, _, _ = _numpy_adam(expected, m, v, ordinary, 2, lr, beta_2, epsilon)
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-6)

    # Without the guard the same gradients turn the weights NaN one step later.
    plain = keras.Variable(np.array([1.0, -2.0, 0.5], np.float32))
    unguarded = keras.optimizers.Adam(learning_rate=lr, beta_1=0.0, beta_2=beta_2, epsilon=epsilon)
    unguarded.apply_gradients([(tf.constant(overflowing), plain)])
    unguarded.apply_gradients([(tf.constant(ordinary), plain)])
    assert np.isnan(plain.numpy()[0])


def test_fused_adam_update_matches_keras_adam_over_several_steps():
    # beta_1 > 0 so the first moment carries over; float tolerance, not bit equality: the fused
    # kernel and Keras' ops may round differently.
    rng = np.random.default_rng(3)
    initial = [rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(5,)).astype(np.float32)]
    settings = dict(learning_rate=0.01, beta_1=0.5, beta_2=0.99, epsilon=1e-8)
    fused_weights, keras_weights = [[keras.Variable(w) for w in initial] for _ in range(2)]
    fused, reference = keras.optimizers.Adam(**settings), keras.optimizers.Adam(**settings)
    fused.build(fused_weights)
    reference.build(keras_weights)
    assert guarded_update._fusable(fused)  # the fused kernel, not Keras' own apply, is under test
    step = tf.function(lambda grads: apply_if_finite(fused, grads, fused_weights, checked=[tf.constant(0.0)]))
    for _ in range(4):
        grads = [tf.constant(rng.normal(scale=3.0, size=w.shape).astype(np.float32)) for w in initial]
        inputs_finite, applied = step(grads)
        assert bool(inputs_finite) and bool(applied)
        reference.apply_gradients(zip(grads, keras_weights))
    assert int(fused.iterations.numpy()) == int(reference.iterations.numpy()) == 4
    for ours, theirs in zip(fused.variables, reference.variables):  # iterations, rate, moments
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-7)
    for ours, theirs in zip(fused_weights, keras_weights):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-7)
        assert not np.array_equal(ours.numpy(), initial[0] if ours.shape == (3, 4) else initial[1])


_REPLICA_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from progan_tf.guarded_update import apply_if_finite
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        weights = keras.Variable(np.array([1.0, -2.0], np.float32))
        optimizer = keras.optimizers.Adam(learning_rate=0.1, beta_1=0.0, beta_2=0.99)
        optimizer.build([weights])

    @tf.function
    def step(per_replica_grads):
        def replica_fn():
            context = tf.distribute.get_replica_context()
            grads = [tf.gather(per_replica_grads, context.replica_id_in_sync_group)]
            return apply_if_finite(optimizer, grads, [weights])
        inputs_finite, applied = strategy.run(replica_fn)
        return strategy.experimental_local_results(inputs_finite), applied

    def copies():
        return [np.asarray(t).tolist() for v in (weights, *optimizer.variables)
                for t in strategy.experimental_local_results(v.value)]

    out = {}
    out["initial"] = copies()
    out["first"] = [bool(x) for x in step(tf.constant([[1.0, 1.0], [0.5, 0.5]]))[0]]
    out["before"] = copies()
    finite, applied = step(tf.constant([[1.0, 1.0], [3e19, 1.0]]))  # replica 1 alone overflows Adam
    out["overflow"] = [bool(x) for x in finite] + [bool(applied)]
    out["after"] = copies()
    json.dump(out, open(sys.argv[1], "w"))
    """
)


@pytest.mark.slow
def test_two_replicas_roll_back_together(tmp_path):
    script = tmp_path / "replicas.py"
    script.write_text(_REPLICA_SCRIPT)
    helpers.run_checked([sys.executable, str(script), str(tmp_path / "out.json")])
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["first"] == [True, True]
    # The first update reached both copies of the weights and of both moments, alike.
    assert out["before"][0::2] == out["before"][1::2]
    assert out["before"][0] != out["initial"][0]
    # Both replicas saw finite inputs; the update overflowed on one; both rolled back.
    assert out["overflow"] == [True, True, False]
    assert out["after"] == out["before"]
    weights_copies = out["after"][:2]
    assert weights_copies[0] == weights_copies[1]


# --- Small units: stats continuation, samples of a non-finite generator ------------------------


def test_stats_rows_after_the_resumed_checkpoint_are_dropped(tmp_path):
    path = tmp_path / "stats.jsonl"
    rows = [
        {"tick": 1, "kimg": 0.032, "d_loss": 1.0},
        {"tick": 2, "kimg": 0.064, "d_loss": 2.0},
        {"kimg": 0.064, "eval_swd_avg": 50.0},  # periodic SWD at a tick
        {"tick": 3, "kimg": 0.096, "d_loss": 3.0},
        {"kind": "evaluate", "kimg": 0.096, "swd_avg": 40.0},  # --mode=evaluate of a checkpoint: kept
        {"kimg": 0.096, "eval_swd_avg": 45.0},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"tick": 4, "kimg": 0.1')  # cut by a kill
    assert run_files.continue_stats(path, 64) == 3
    assert [json.loads(line) for line in path.read_text().splitlines()] == [rows[0], rows[1], rows[2], rows[4]]
    assert not (tmp_path / "stats.jsonl.tmp").exists()
    mtime = path.stat().st_mtime_ns
    assert run_files.continue_stats(path, 64) == 0
    assert path.stat().st_mtime_ns == mtime  # nothing to drop: not rewritten
    assert run_files.continue_stats(path, 0) == 3  # a start from scratch keeps only the evaluate row
    assert [json.loads(line) for line in path.read_text().splitlines()] == [rows[4]]


def test_samples_of_a_non_finite_generator_are_not_written(tmp_path):
    model = ProGAN(NETWORK, seed=1)
    model.start_phase(phases(ScheduleConfig(final_resolution=8, default_batch_size=8))[0])
    latents = tf.random.stateless_normal((4, NETWORK.latent_size), seed=[1, 2])
    logger = run_log.RunLogger(tmp_path, enabled=False)
    assert run_directory.write_samples(model, logger, tmp_path, latents, 8) == []
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "fakes-ema-kimg000000.008.png",
        "fakes-raw-kimg000000.008.png",
    ]
    weight = model.g_model.trainable_weights[0]
    weight.assign(np.full(weight.shape, np.nan, np.float32))
    assert run_directory.write_samples(model, logger, tmp_path, latents, 16) == ["raw"]
    assert not (tmp_path / "fakes-raw-kimg000000.016.png").exists()
    assert (tmp_path / "fakes-ema-kimg000000.016.png").exists()  # the EMA generator is still finite


def test_stop_requests_record_the_first_signal_and_restore_the_handlers():
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with interrupts.StopRequests() as requests:
        assert requests.as_flags() == [0.0, 0.0]
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to this (main) thread before the next line
        assert requests.received == signal.SIGTERM and requests.as_flags() == [0.0, 1.0]
        # A second signal now gets the default action: it would end the process at once.
        assert signal.getsignal(signal.SIGINT) == signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == previous
    assert interrupts.agreed_signal(0.5, 0.0) == signal.SIGINT and interrupts.agreed_signal(0.5, 0.5) == signal.SIGTERM
    assert interrupts.agreed_signal(0.0, 0.0) is None


# --- Divergence ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_divergence_stops_with_one_line_and_the_newest_good_checkpoint_resumes(pyramid, tmp_path):
    run_dir = tmp_path / "run"
    # 4 sane steps at 4x4, then the 8x8 fade at learning rate 1e6: Adam's moments overflow within
    # two steps. A checkpoint is due after every step, and only two are kept.
    flags = dict(
        SHORT,
        transition_kimg=0.064,
        total_kimg=0.128,
        checkpoint_kimg=0.008,
        keep_checkpoints=2,
        sample_kimg=0.008,
        export_at_end=True,
        max_consecutive_skips=5,
    )
    result = helpers.run_command(
        helpers.main_command(*helpers.main_flags(pyramid, run_dir, learning_rates="8:1e6", **flags))
    )
    assert result.returncode == 3, result.stderr[-4000:]
    (line,) = _error_lines(result)
    match = re.fullmatch(
        r"error: training diverged at kimg (\S+) \(8x8 fade_in\): 5 iterations in a row skipped an update "
        r"\((.+); --max_consecutive_skips=5\); newest good checkpoint: (\S+); to resume from it with a lower "
        r"learning rate, add --resume=(\S+) --learning_rates=8:500000 to the same command",
        line,
    )
    assert match, line
    stop_kimg, reasons, newest, resume_path = match.groups()
    assert "non-finite" in reasons and newest == resume_path
    assert 0.032 < float(stop_kimg) < 0.096
    paths = _assert_all_finite_and_loadable(run_dir)
    assert str(paths[-1]) == newest and len(paths) == 2
    # The states that skipped updates were not saved, so they did not rotate the good ones out.
    resume_point = ckpt_lib.load_checkpoint(newest).images_shown
    assert resume_point <= 40
    assert not (run_dir / "export").exists()
    assert line in (run_dir / "log.txt").read_text()

    resumed = helpers.run_checked(
        helpers.main_command(*helpers.main_flags(pyramid, run_dir, learning_rates="8:0.001", resume=newest, **flags))
    )
    assert f"resumed from {newest}" in resumed.stdout
    assert "changed since the last start: --learning_rates [[8, 1000000.0]] -> [[8, 0.001]]" in resumed.stdout
    assert resumed.stdout.splitlines()[-1].startswith("done: kimg 0.128")
    assert ckpt_lib.load_checkpoint(_assert_all_finite_and_loadable(run_dir)[-1]).images_shown == 128
    assert (run_dir / "export" / "saved_model.pb").is_file()
    after = [row for row in _stats_rows(run_dir) if row["kimg"] > resume_point / 1000]
    assert after and all(row["skipped_updates"] == 0 for row in after)


# --- Signals -------------------------------------------------------------------------------------


def _signal_when(command, trigger, signals, timeout=300):
    """Starts `command`, sends `signals` once a line containing `trigger` appears (each after
    the previous one was acknowledged), and returns (return code, all output lines)."""
    process = subprocess.Popen(
        command,
        cwd=helpers.REPO_ROOT,
        env=helpers.subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    lines = []
    try:
        pending = list(signals)
        waiting_for = trigger
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if pending and waiting_for in line:
                signum = pending.pop(0)
                process.send_signal(signum)
                waiting_for = f"received {signal.Signals(signum).name}"
        process.wait()
    finally:
        watchdog.cancel()
        helpers.kill_process(process)
    assert not pending, f"never saw {waiting_for!r}:\n" + "\n".join(lines[-40:])
    return process.returncode, lines


_STOP = re.compile(r"stopped by (SIGINT|SIGTERM) at kimg (\S+): wrote (\S+); rerun the same command to resume from it$")


def _stop_line(lines):
    """(signal name, kimg, checkpoint) of the one stop line main.py printed."""
    (match,) = [m for m in map(_STOP.fullmatch, lines) if m]
    return match.groups()


@pytest.mark.slow
def test_sigint_mid_fade_and_sigterm_mid_phase_resume_bit_identically(pyramid, tmp_path):
    # 4x4 for 32 images, the 8x8 fade over 32-160, 8x8 until 192. The reference checkpoints every
    # step; the interrupted run every 64 images, so its stops are not on its schedule.
    flags = dict(
        resolution=8,
        stabilize_kimg=0.032,
        transition_kimg=0.128,
        total_kimg=0.192,
        keep_checkpoints=0,
        tick_kimg=0.032,
        sample_kimg=0,
        deterministic=True,
        export_at_end=False,
    )
    reference_dir, run_dir = tmp_path / "uninterrupted", tmp_path / "interrupted"
    reference = subprocess.Popen(
        helpers.main_command(*helpers.main_flags(pyramid, reference_dir, checkpoint_kimg=0.008, **flags)),
        cwd=helpers.REPO_ROOT,
        env=helpers.subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    command = helpers.main_command(*helpers.main_flags(pyramid, run_dir, checkpoint_kimg=0.064, **flags))
    try:
        # SIGINT while the fade's first step runs: it finishes the step and checkpoints there.
        code, lines = _signal_when(command, "phase 1: 8x8 fade_in", [signal.SIGINT])
        assert code == 130, "\n".join(lines[-30:])
        kind, kimg, path = _stop_line(lines)
        fade_stop = round(float(kimg) * 1000)
        assert kind == "SIGINT" and 32 < fade_stop < 160
        assert max(_checkpoints(run_dir)) == fade_stop and path == str(
            ckpt_lib.checkpoint_path(run_dir / "checkpoints", fade_stop)
        )
        assert helpers.checkpoint_meta(path)["phase_index"] == 1

        # SIGTERM (a scheduler's preemption) in the middle of the 8x8 stabilisation.
        code, lines = _signal_when(command, "phase 2: 8x8 stabilize", [signal.SIGTERM])
        assert code == 143, "\n".join(lines[-30:])
        assert f"resumed from {path} at kimg {fade_stop / 1000:.3f}" in lines
        kind, kimg, path = _stop_line(lines)
        phase_stop = round(float(kimg) * 1000)
        assert kind == "SIGTERM" and 160 < phase_stop < 192 and max(_checkpoints(run_dir)) == phase_stop

        # A second Ctrl-C stops at once, without a checkpoint.
        saved = set(_checkpoints(run_dir))
        code, lines = _signal_when(command, "phase 2: 8x8 stabilize", [signal.SIGINT, signal.SIGINT])
        assert code == -signal.SIGINT, "\n".join(lines[-30:])
        assert set(_checkpoints(run_dir)) == saved

        finished = helpers.run_checked(command)
        out, err = reference.communicate(timeout=300)
        assert reference.returncode == 0, err[-4000:]
    finally:
        helpers.kill_process(reference)
    assert _run_lines(finished.stdout)[0] == f"resumed from {path} at kimg {phase_stop / 1000:.3f}"
    assert finished.stdout.splitlines()[-1].startswith("done: kimg 0.192")

    # Every checkpoint of the interrupted run (the stops' included) equals the uninterrupted
    # run's at the same count: networks, optimizers and run position.
    interrupted, expected = _checkpoints(run_dir), _checkpoints(reference_dir)
    assert {fade_stop, phase_stop, 64, 128, 192} <= set(interrupted) <= set(expected)
    for count, path in interrupted.items():
        difference = helpers.max_abs_difference(
            helpers.checkpoint_weights(path), helpers.checkpoint_weights(expected[count])
        )
        assert difference == 0.0, count
        assert helpers.checkpoint_position(path) == helpers.checkpoint_position(expected[count])

    # stats.jsonl continued: the same ticks at the same kimg, no row twice, time never going back.
    rows, reference_rows = _stats_rows(run_dir), _stats_rows(reference_dir)
    assert [(r["tick"], r["kimg"]) for r in rows] == [(r["tick"], r["kimg"]) for r in reference_rows]
    times = [r["elapsed_sec"] for r in rows]
    assert times == sorted(times)
    assert (run_dir / "log.txt").read_text().count("resumed from") == 3


@pytest.mark.slow
def test_sigterm_to_one_worker_stops_every_worker_at_the_same_step(pyramid, tmp_path):
    workers = [f"localhost:{port}" for port in helpers.free_ports(2)]
    processes = []
    try:
        for index in range(2):
            spec = {
                "runs": [
                    {
                        "config": helpers.short_train_spec(pyramid, tmp_path / f"run{index}"),
                        "out": str(tmp_path / f"worker{index}.npz"),
                    }
                ]
            }
            (tmp_path / f"spec{index}.json").write_text(json.dumps(spec))
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tests.helpers_training", str(tmp_path / f"spec{index}.json")],
                    cwd=helpers.REPO_ROOT,
                    env=helpers.subprocess_env(TF_CONFIG=json.dumps(tf_config)),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        chief_lines = []
        for line in processes[0].stdout:  # only the chief logs
            chief_lines.append(line.rstrip("\n"))
            if line.startswith("phase 1:"):
                processes[1].send_signal(signal.SIGTERM)  # the non-chief worker is preempted
                break
        outputs = [
            chief_lines + processes[0].communicate(timeout=300)[0].splitlines(),
            processes[1].communicate(timeout=300)[0].splitlines(),
        ]
    finally:
        for process in processes:
            helpers.kill_process(process)
    assert [p.returncode for p in processes] == [143, 143], "\n".join(outputs[0][-20:] + outputs[1][-20:])
    kind, kimg, path = _stop_line(outputs[0])
    assert kind == "SIGTERM"
    (worker_stop,) = [line for line in outputs[1] if line.startswith("stopped by")]
    assert worker_stop == f"stopped by SIGTERM at kimg {kimg} with the other workers (the chief writes the checkpoint)"
    assert max(_checkpoints(tmp_path / "run0")) == round(float(kimg) * 1000)
    assert path == str(ckpt_lib.checkpoint_path(tmp_path / "run0" / "checkpoints", round(float(kimg) * 1000)))
    assert not (tmp_path / "run1" / "checkpoints").exists()


# --- Restarts: checks before writes, --resume=none, corrupt checkpoints -------------------------


@pytest.mark.slow
def test_resume_with_other_architecture_flags_is_refused_and_writes_nothing(pyramid, short_run, tmp_path):
    run_dir = _copy_run(short_run, tmp_path)
    before = _files(run_dir)
    result = helpers.run_command(
        helpers.main_command(*helpers.main_flags(pyramid, run_dir, **dict(SHORT, fmap_base=32, latent_size=8)))
    )
    assert result.returncode == 1
    (line,) = _error_lines(result)
    assert line.startswith(
        f"error: Cannot resume {run_dir / 'checkpoints' / 'ckpt-48'}: it was trained "
        "with other architecture flags: --fmap_base (run: 64, now: 32), --latent_size (run: 16, now: 8)."
    )
    assert _files(run_dir) == before  # config.json byte-identical, and nothing else written

    # Schedule and logging flags may change; the change is listed and recorded.
    changed = dict(SHORT, total_kimg=0.064, tick_kimg=0.008)
    result = helpers.run_checked(helpers.main_command(*helpers.main_flags(pyramid, run_dir, **changed)))
    assert (
        "changed since the last start: --tick_kimg 0.016 -> 0.008, --total_kimg 0.048 -> 0.064"
        in result.stdout.splitlines()
    )
    assert "changed since the last start: --tick_kimg 0.016 -> 0.008" in (run_dir / "log.txt").read_text()
    from progan_tf.runs import load_train_config

    assert load_train_config(run_dir).schedule.total_kimg == 0.064
    history = [json.loads(line) for line in (run_dir / "config_history.jsonl").read_text().splitlines()]
    assert [h["event"] for h in history] == ["start", "resume"]
    assert history[0]["config"]["network"]["fmap_base"] == 64
    assert history[1]["changes"] == {"tick_kimg": [0.016, 0.008], "total_kimg": [0.048, 0.064]}
    assert history[1]["images_shown"] == 48


@pytest.mark.slow
def test_resume_none_on_a_used_run_is_refused_and_overwrite_moves_it_aside(pyramid, short_run, tmp_path):
    run_dir = _copy_run(short_run, tmp_path)
    before = _files(run_dir)
    result = helpers.run_command(helpers.main_command(*helpers.main_flags(pyramid, run_dir, resume="none", **SHORT)))
    assert result.returncode == 1
    (line,) = _error_lines(result)
    assert f"{run_dir} already holds 3 checkpoint(s) (newest ckpt-48); --resume=none would mix two runs" in line
    assert "--resume=none --overwrite" in line
    assert _files(run_dir) == before

    # --overwrite: the old run is moved aside whole; the new run starts in an empty directory.
    fresh = helpers.run_checked(
        helpers.main_command(*helpers.main_flags(pyramid, run_dir, resume="none", overwrite=True, seed=99, **SHORT))
    )
    (moved,) = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert _files(moved) == before
    assert _run_lines(fresh.stdout)[0] == f"--overwrite: moved the previous run to {moved}"
    assert "resumed from" not in fresh.stdout
    log = (run_dir / "log.txt").read_text()
    assert log.count("dataset ") == 1 and "resumed from" not in log
    assert [r["kimg"] for r in _stats_rows(run_dir)] == [0.016, 0.032, 0.048]
    assert sorted(_checkpoints(run_dir)) == [16, 32, 48]
    old, new = (
        helpers.checkpoint_weights(moved / "checkpoints" / "ckpt-48"),
        helpers.checkpoint_weights(run_dir / "checkpoints" / "ckpt-48"),
    )
    assert helpers.max_abs_difference(old, new) > 0  # another seed: another run, not the old one's files
    assert [json.loads(line)["event"] for line in (run_dir / "config_history.jsonl").read_text().splitlines()] == [
        "start"
    ]


@pytest.mark.slow
def test_corrupt_newest_checkpoint_falls_back_to_the_newest_complete_one(pyramid, short_run, tmp_path):
    run_dir = _copy_run(short_run, tmp_path)
    newest = run_dir / "checkpoints" / "ckpt-48"
    data = run_dir / "checkpoints" / "ckpt-48.data-00000-of-00001"
    truncated = data.read_bytes()[: data.stat().st_size // 2]
    data.write_bytes(truncated)
    # An earlier checkpoint 48 of this run was set aside before: its name stays taken.
    folder = run_dir / "checkpoints"
    earlier = {suffix: (folder / f"ckpt-16{suffix}").read_bytes() for suffix in (".index", ".data-00000-of-00001")}
    for suffix, contents in earlier.items():
        (folder / f"ckpt-48.corrupt{suffix}").write_bytes(contents)
    result = helpers.run_checked(
        helpers.main_command(*helpers.main_flags(pyramid, run_dir, **dict(SHORT, total_kimg=0.064)))
    )
    lines = _run_lines(result.stdout)
    assert lines[0].startswith(f"skipping checkpoint {newest}: Checkpoint {newest} is truncated or corrupt")
    assert lines[0].endswith("moved it aside (ckpt-48.corrupt.1)")  # the name it really got
    assert lines[1] == f"resumed from {run_dir / 'checkpoints' / 'ckpt-32'} at kimg 0.032"
    # Moved aside whole (kept, not deleted), the earlier one untouched; the state file names neither.
    assert (folder / "ckpt-48.corrupt.1.data-00000-of-00001").read_bytes() == truncated
    assert (folder / "ckpt-48.corrupt.1.index").is_file()
    assert {suffix: (folder / f"ckpt-48.corrupt{suffix}").read_bytes() for suffix in earlier} == earlier
    assert "ckpt-48.corrupt" not in (folder / "checkpoint").read_text()
    assert sorted(_checkpoints(run_dir)) == [16, 32, 48, 64]
    _assert_all_finite_and_loadable(run_dir)
    rows = _stats_rows(run_dir)
    assert [r["kimg"] for r in rows] == [0.016, 0.032, 0.048, 0.064]  # the 0.048 row was redone, not repeated
    assert [r["tick"] for r in rows] == [1, 2, 3, 4]


@pytest.mark.slow
def test_resume_from_an_older_checkpoint_moves_the_newer_ones_aside(pyramid, short_run, tmp_path):
    run_dir = _copy_run(short_run, tmp_path)
    folder = run_dir / "checkpoints"
    newer = {
        path.name: (folder / path).read_bytes()
        for name in ("ckpt-32", "ckpt-48")
        for path in ckpt_lib.checkpoint_files(folder / name)
    }
    older = folder / "ckpt-16"
    result = helpers.run_checked(
        helpers.main_command(*helpers.main_flags(pyramid, run_dir, resume=older, **dict(SHORT, total_kimg=0.024)))
    )
    assert (
        "moved the newer checkpoints of the abandoned continuation aside (*.superseded): "
        "ckpt-32, ckpt-48" in result.stdout.splitlines()
    )
    for name, data in newer.items():  # ckpt-32.index -> ckpt-32.superseded.index, ...
        prefix, _, extension = name.partition(".")
        assert (folder / f"{prefix}.superseded.{extension}").read_bytes() == data
    # The abandoned continuation cannot come back: --resume=latest takes the new one.
    assert sorted(_checkpoints(run_dir)) == [16, 24]
    assert [r["kimg"] for r in _stats_rows(run_dir)] == [0.016, 0.024]


# --- A full disk at a checkpoint ---------------------------------------------------------------


def _checkpoint_sizes(tmp_path):
    """(total bytes, largest file) of a checkpoint in the 4x4 phase and in the 8x8 fade of the SHORT networks."""
    schedule = ScheduleConfig(
        final_resolution=8, stabilize_kimg=0.032, transition_kimg=0.032, total_kimg=0.048, default_batch_size=8
    )
    model = ProGAN(NETWORK, seed=1)
    sizes = []
    for phase in phases(schedule)[:2]:
        model.start_phase(phase)
        position = {
            "images_shown": phase.start_images,
            "phase_index": phase.index,
            "phase_begin_images": 0,
            "resolution": phase.resolution,
            "phase": phase.kind,
            "tick": 100,
            "time_sec": 12345.678,
        }
        files = ckpt_lib.checkpoint_files(ckpt_lib.save_checkpoint(tmp_path / "sizes", model, position))
        sizes.append((sum(f.stat().st_size for f in files), max(f.stat().st_size for f in files)))
    return sizes


def _mount_tmpfs(path, size):
    path.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or result.returncode})")


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["tmpfs", "file_size_limit"])
def test_disk_full_at_a_checkpoint_is_one_line_and_the_rerun_resumes(pyramid, tmp_path, fault):
    (small, small_file), (large, large_file) = _checkpoint_sizes(tmp_path)
    assert large > small * 1.2 and large_file > small_file * 1.2
    flags = dict(SHORT, total_kimg=0.064, checkpoint_kimg=0.008)
    mount = tmp_path / "disk"
    limit = None
    if fault == "tmpfs":
        # Room for two checkpoints and the logs, not for a third.
        _mount_tmpfs(mount, 2 * small + small // 2)
        run_dir = mount / "run"
    else:
        # Any file over the limit fails to grow (EFBIG): the 4x4 checkpoints fit, the fade's do not.
        run_dir, limit = tmp_path / "run", (small_file + large_file) // 2
    command = helpers.main_command(*helpers.main_flags(pyramid, run_dir, **flags))

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    try:
        result = helpers.run_command(command, preexec_fn=limit_file_size if limit else None)
        assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
        (line,) = _error_lines(result)
        written = sorted(_checkpoints(run_dir))
        failed = written[-1] + 8
        reason = "No space left on device" if fault == "tmpfs" else "File too large"
        assert line == (
            f"error: could not write checkpoint {run_dir / 'checkpoints' / f'ckpt-{failed}'}: {reason}. "
            f"The checkpoints already in {run_dir / 'checkpoints'} are intact: fix this (free space, permissions), "
            f"then rerun the same command to resume from the newest."
        )
        assert written == (list(range(8, 33, 8)) if limit else [8, 16])
        _assert_all_finite_and_loadable(run_dir)
        assert not list((run_dir / "checkpoints").glob("*tmp*")) and not list((run_dir / "checkpoints").glob("*_temp*"))
        assert (run_dir / "checkpoints" / "checkpoint").read_text().count("all_model_checkpoint_paths") == len(written)

        if fault == "tmpfs":  # free space
            subprocess.run(["mount", "-o", "remount,size=16m", str(mount)], check=True)
        rerun = helpers.run_checked(command)
        assert (
            _run_lines(rerun.stdout)[0] == f"resumed from {run_dir / 'checkpoints' / f'ckpt-{written[-1]}'} "
            f"at kimg {written[-1] / 1000:.3f}"
        )
        assert rerun.stdout.splitlines()[-1].startswith("done: kimg 0.064")
        assert sorted(_checkpoints(run_dir)) == list(range(8, 65, 8))
        kimgs = [r["kimg"] for r in _stats_rows(run_dir)]
        assert kimgs == sorted(set(kimgs))
    finally:
        if fault == "tmpfs" and os.path.ismount(mount):
            subprocess.run(["umount", str(mount)], check=False)
