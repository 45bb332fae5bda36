"""One real training iteration at 1024x1024 with the paper's widths and the 1-GPU batch, on this machine.

Usage: python bench/bench_1024_step.py [--batch=4] [--phase=stabilize|fade_in] [--iterations=2]

Prints the seconds of the first iteration (tracing included) and of the following ones, the
analytic GFLOP of one iteration, and the process's peak resident memory after building the
networks and after the iterations: the difference is mostly the activations kept for the
gradient penalty's double backward, which is what a GPU user must fit beside the weights.
"""

import argparse
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402
from step_setup import started_model, synthetic_batches  # noqa: E402

from progan_tf import cost_model  # noqa: E402
from progan_tf.networks import NetworkConfig  # noqa: E402
from progan_tf.schedule import ScheduleConfig, phases  # noqa: E402


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--phase", choices=("stabilize", "fade_in"), default="stabilize")
    parser.add_argument("--iterations", type=int, default=2)
    args = parser.parse_args()
    network = NetworkConfig()  # the paper's: 1024x1024, latent 512, fmap_base 8192, fmap_max 512
    schedule = ScheduleConfig(default_batch_size=args.batch)
    phase = next(p for p in phases(schedule) if p.resolution == 1024 and p.kind == args.phase)
    start = time.perf_counter()
    model = started_model(network, phase)
    build_seconds, build_rss = time.perf_counter() - start, peak_rss_gib()
    strategy = tf.distribute.get_strategy()
    iterator = synthetic_batches(phase, network.num_channels, strategy)
    step = model.make_distributed_step(strategy)
    seconds = []
    for _ in range(args.iterations):
        start = time.perf_counter()
        step(iterator)  # returns host values: the iteration has finished
        seconds.append(time.perf_counter() - start)
    flops = cost_model.iteration_flops(network, 1024, phase.fade_in, args.batch)
    print(
        f"1024x1024 {phase.kind}, batch {args.batch}, G {model.generator.count_params():,} / "
        f"D {model.discriminator.count_params():,} parameters"
    )
    print(f"{'what':<42} {'value':>10}")
    print(f"{'networks + optimizers built (s)':<42} {build_seconds:10.1f}")
    print(f"{'peak RSS after building (GiB)':<42} {build_rss:10.2f}")
    print(f"{'first iteration, tracing included (s)':<42} {seconds[0]:10.1f}")
    for index, value in enumerate(seconds[1:], start=2):
        print(f"{f'iteration {index} (s)':<42} {value:10.1f}")
    print(f"{'analytic GFLOP per iteration':<42} {flops / 1e9:10.1f}")
    if len(seconds) > 1:
        print(f"{'achieved GFLOP/s (last iteration)':<42} {flops / seconds[-1] / 1e9:10.1f}")
    print(f"{'peak RSS after the iterations (GiB)':<42} {peak_rss_gib():10.2f}")


if __name__ == "__main__":
    main()
