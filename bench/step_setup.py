"""What the train-step benchmarks share: width presets, a started model, synthetic batches and a
timer. Imported by the `bench_*_step.py` scripts (run them as `python bench/<script>.py`)."""

import time

import tensorflow as tf

from progan_tf.networks import NetworkConfig
from progan_tf.progan import ProGAN
from progan_tf.schedule import ScheduleConfig, phases

# name: (fmap_base, fmap_max, latent_size, batch). "narrow" is the first demo's widths.
WIDTHS = {"narrow": (256, 32, 64, 16), "wide": (1024, 128, 128, 32)}


def network_and_phases(resolution, fmap_base, fmap_max, latent_size, batch):
    """The network config and the schedule's phases up to `resolution` at one batch size."""
    network = NetworkConfig(resolution=resolution, latent_size=latent_size, fmap_base=fmap_base, fmap_max=fmap_max)
    schedule = ScheduleConfig(final_resolution=resolution, total_kimg=1e6, default_batch_size=batch)
    return network, list(phases(schedule))


def started_model(network, phase, **kwargs):
    """A `ProGAN` (seed 1) started on `phase` in the current strategy's scope."""
    model = ProGAN(network, seed=1, **kwargs)
    model.start_phase(phase)
    return model


def synthetic_batches(phase, num_channels, strategy):
    """A distributed iterator repeating one in-memory batch of uniform [-1, 1] images (no pipeline)."""
    shape = (phase.batch_size, phase.resolution, phase.resolution, num_channels)
    dataset = tf.data.Dataset.from_tensors(tf.random.uniform(shape, -1.0, 1.0)).repeat()
    return iter(strategy.experimental_distribute_dataset(dataset))


def timed_calls(function, seconds, min_calls=5):
    """Mean seconds per call of `function()` over at least `seconds` (after 2 warm-up calls)."""
    for _ in range(2):
        function()
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        function()
        calls += 1
    return (time.perf_counter() - start) / calls
