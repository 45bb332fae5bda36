"""Cost of the guarded update (`guarded_update.apply_if_finite`) per training step.

Usage: python bench/bench_update_guard.py [--fmap_base=256 --fmap_max=32 --latent_size=64 --batch=16]

For every phase it times, in one process and interleaved (so a loaded machine slows both alike),
(a) Keras Adam's plain, unguarded `apply_gradients` on the critic's and the generator's variables
and (b) the guarded apply the trainer uses (finite check of the gradients and the loss, snapshot,
fused Adam update, finite check of the weights and moments, agreed flag, rollback branch), and
prints their difference next to a whole training step: negative when the fused update saves more
than the guard costs.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from step_setup import network_and_phases, started_model, synthetic_batches  # noqa: E402

from progan_tf.guarded_update import apply_if_finite  # noqa: E402


def _median_ms(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1000


def time_phase(network, phase, repeats):
    model = started_model(network, phase)
    pairs = [(model.d_optimizer, model.d_model.trainable_weights), (model.g_optimizer, model.g_model.trainable_weights)]
    # Small gradients: the weights barely move over the repeats.
    grads = [[tf.random.normal(v.shape, stddev=1e-6) for v in variables] for _, variables in pairs]

    @tf.function
    def plain():
        for (optimizer, variables), g in zip(pairs, grads):
            optimizer.apply_gradients(zip(g, variables))
        return tf.constant(0)

    @tf.function
    def guarded():
        results = []
        for (optimizer, variables), g in zip(pairs, grads):
            results.append(apply_if_finite(optimizer, g, variables)[1])
        return results

    strategy = tf.distribute.get_strategy()
    iterator = synthetic_batches(phase, network.num_channels, strategy)
    step = model.make_distributed_step(strategy)
    for fn in (plain, guarded, lambda: step(iterator)):
        for _ in range(3):
            fn()
    plain_ms, guarded_ms, step_ms = [], [], []
    for _ in range(repeats):  # interleaved
        plain_ms.append(_median_ms(lambda: plain().numpy(), 5))
        guarded_ms.append(_median_ms(lambda: [r.numpy() for r in guarded()], 5))
        step_ms.append(_median_ms(lambda: step(iterator), 3))
    return min(plain_ms), min(guarded_ms), min(step_ms)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--fmap_base", type=int, default=256)
    parser.add_argument("--fmap_max", type=int, default=32)
    parser.add_argument("--latent_size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    network, all_phases = network_and_phases(
        args.resolution, args.fmap_base, args.fmap_max, args.latent_size, args.batch
    )
    print(
        f"{'resolution':>10} {'phase':<9} {'adam ms':>8} {'guarded ms':>10} {'guard ms':>8} "
        f"{'step ms':>8} {'guard/step':>10}"
    )
    for phase in all_phases:
        plain_ms, guarded_ms, step_ms = time_phase(network, phase, args.repeats)
        label = f"{phase.resolution}x{phase.resolution}"
        guard = guarded_ms - plain_ms
        print(
            f"{label:>10} {phase.kind:<9} {plain_ms:8.2f} {guarded_ms:10.2f} {guard:8.2f} {step_ms:8.1f} "
            f"{guard / step_ms:10.1%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
