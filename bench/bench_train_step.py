"""Training-iteration throughput per phase, and its efficiency against the machine's convolution ceiling.

Usage: python bench/bench_train_step.py [--widths=narrow,wide] [--resolution=32] [--seconds=2] [--jit_compile]
    [--intra_op_threads=0]

For each width preset and phase it prints ms per iteration with one iteration per compiled call
and with the trainer's default iterations per call (`TrainConfig.steps_per_call` = 0: 16 at 4x4
... 1 from 64x64), each call fetching all statistics to the host as the trainer does; img/s and
the achieved GFLOP/s of the analytic cost model (`progan_tf.cost_model`: ~4 generator + 14
critic forward passes per image) at the default, as a share of the 3x3-convolution ceiling
measured in the same process (the best of a few large float32 `tf.nn.conv2d` calls with the same
threads). Batches are synthetic and in memory (no input pipeline); the default one-device
strategy is used.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402
from step_setup import WIDTHS, network_and_phases, started_model, synthetic_batches, timed_calls  # noqa: E402

from progan_tf import call_boundaries, cost_model  # noqa: E402
from progan_tf.config import TrainConfig  # noqa: E402

# Large 3x3 convolutions (batch, size, channels) whose best rate is the ceiling.
CEILING_SHAPES = ((32, 32, 128), (16, 64, 64), (32, 16, 256))


def conv_ceiling_gflops(seconds):
    """The best GFLOP/s of a stride-1 3x3 float32 convolution over `CEILING_SHAPES`."""
    best = 0.0
    for batch, size, channels in CEILING_SHAPES:
        images = tf.random.normal((batch, size, size, channels))
        kernel = tf.random.normal((3, 3, channels, channels))
        conv = tf.function(lambda images=images, kernel=kernel: tf.reduce_sum(tf.nn.conv2d(images, kernel, 1, "SAME")))
        elapsed = timed_calls(lambda conv=conv: conv().numpy(), seconds)
        best = max(best, 2 * batch * size * size * 9 * channels * channels / elapsed / 1e9)
    return best


def time_phase(network, phase, seconds, iterations_per_call, jit_compile=False):
    """Seconds per training iteration of one phase, `iterations_per_call` iterations per call."""
    model = started_model(network, phase, jit_compile=jit_compile)
    strategy = tf.distribute.get_strategy()
    iterator = synthetic_batches(phase, network.num_channels, strategy)
    step = model.make_distributed_step(strategy)  # it returns host values: all statistics fetched
    return timed_calls(lambda: step(iterator, iterations_per_call), seconds) / iterations_per_call


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="narrow,wide", help=f"comma-separated presets from {sorted(WIDTHS)}")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per phase")
    parser.add_argument("--jit_compile", action="store_true", help="XLA-compile the gradient computations")
    parser.add_argument("--intra_op_threads", type=int, default=0, help="TensorFlow intra-op threads (0 = all cores)")
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    ceiling = conv_ceiling_gflops(args.seconds)
    print(
        f"3x3 convolution ceiling (float32, {tf.config.threading.get_intra_op_parallelism_threads() or 'all'} "
        f"intra-op threads): {ceiling:.1f} GFLOP/s"
    )
    print(
        f"{'widths':<8} {'resolution':>10} {'phase':<9} {'batch':>5} {'ms/iter K=1':>11} {'K':>3} "
        f"{'ms/iter':>8} {'img/s':>8} {'GFLOP/iter':>10} {'GFLOP/s':>8} {'ceiling':>7}"
    )
    for name in args.widths.split(","):
        network, all_phases = network_and_phases(args.resolution, *WIDTHS[name])
        for phase in all_phases:
            per_call = call_boundaries.steps_per_call(TrainConfig(data_dir="", run_dir=""), phase.resolution)
            single = time_phase(network, phase, args.seconds, 1, args.jit_compile)
            seconds = time_phase(network, phase, args.seconds, per_call, args.jit_compile) if per_call > 1 else single
            flops = cost_model.iteration_flops(network, phase.resolution, phase.fade_in, phase.batch_size)
            achieved = flops / seconds / 1e9
            print(
                f"{name:<8} {f'{phase.resolution}x{phase.resolution}':>10} {phase.kind:<9} {phase.batch_size:>5} "
                f"{single * 1000:11.2f} {per_call:>3} {seconds * 1000:8.2f} {phase.batch_size / seconds:8.1f} "
                f"{flops / 1e9:10.3f} {achieved:8.1f} "
                f"{achieved / ceiling:7.0%}",
                flush=True,
            )


if __name__ == "__main__":
    main()
