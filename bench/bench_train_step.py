"""Training-step throughput per resolution, default (one-device) strategy vs MirroredStrategy.

Usage: python bench/bench_train_step.py [--fmap_base=1024 --fmap_max=128 --latent_size=128 --batch=32]
Prints a table of ms/step and img/s on synthetic in-memory batches (no input pipeline).
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from progan_tf.networks import NetworkConfig  # noqa: E402
from progan_tf.progan import ProGAN  # noqa: E402
from progan_tf.schedule import ScheduleConfig, phases  # noqa: E402


def time_phase(strategy, network, phase, steps):
    with strategy.scope():
        model = ProGAN(network, seed=1)
        model.start_phase(phase, strategy.num_replicas_in_sync)
    shape = (phase.batch_size, phase.resolution, phase.resolution, network.num_channels)
    dataset = tf.data.Dataset.from_tensors(tf.random.uniform(shape, -1.0, 1.0)).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    step = model.make_distributed_step(strategy)
    for _ in range(3):  # trace and warm up
        step(iterator)
    start = time.perf_counter()
    for _ in range(steps):
        stats = step(iterator)
    float(stats["d_loss"])
    elapsed = (time.perf_counter() - start) / steps
    return elapsed * 1000, phase.batch_size / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--fmap_base", type=int, default=1024)
    parser.add_argument("--fmap_max", type=int, default=128)
    parser.add_argument("--latent_size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--mirrored", action="store_true", help="also time MirroredStrategy on one device")
    args = parser.parse_args()
    network = NetworkConfig(
        resolution=args.resolution, latent_size=args.latent_size, fmap_base=args.fmap_base, fmap_max=args.fmap_max
    )
    schedule = ScheduleConfig(final_resolution=args.resolution, total_kimg=1e6, default_batch_size=args.batch)
    strategies = {"default": tf.distribute.get_strategy()}
    if args.mirrored:
        strategies["mirrored(1)"] = tf.distribute.MirroredStrategy()
    print(f"{'strategy':<12} {'resolution':>10} {'phase':<9} {'ms/step':>8} {'img/s':>8}")
    for name, strategy in strategies.items():
        for phase in phases(schedule):
            ms, img_per_sec = time_phase(strategy, network, phase, args.steps)
            label = f"{phase.resolution}x{phase.resolution}"
            print(f"{name:<12} {label:>10} {phase.kind:<9} {ms:8.1f} {img_per_sec:8.1f}", flush=True)


if __name__ == "__main__":
    main()
