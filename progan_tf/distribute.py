"""Choosing the tf.distribute strategy."""

import json
import os

import tensorflow as tf


def cluster_spec_from_env():
    """The parsed `TF_CONFIG` environment variable, or None when it is unset or empty."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    return json.loads(raw) if raw else None


def make_strategy():
    """MultiWorkerMirroredStrategy when `TF_CONFIG` names several workers, MirroredStrategy over
    all local GPUs when there are several, else the default (single-device) strategy.

    With one device MirroredStrategy only adds its cross-replica machinery: a training step of a
    small model took 2.3x as long under it on CPU (bench/bench_train_step.py).
    """
    tf_config = cluster_spec_from_env()
    if tf_config and sum(len(v) for v in tf_config.get("cluster", {}).values()) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def describe(strategy):
    """One line naming the visible devices and how `strategy` uses them, for the start of a run."""
    gpus = tf.config.list_logical_devices("GPU")
    devices = f"{len(gpus)} GPU(s)" if gpus else "CPU only (no GPU visible)"
    replicas = strategy.num_replicas_in_sync
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        cluster = cluster_spec_from_env()["cluster"]
        workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
        how = f"MultiWorkerMirroredStrategy, {workers} worker(s), {replicas} replica(s) in sync"
    elif isinstance(strategy, tf.distribute.MirroredStrategy):
        how = f"MirroredStrategy over {', '.join(strategy.extended.worker_devices)}"
    else:
        device = gpus[0].name if gpus else tf.config.list_logical_devices("CPU")[0].name
        how = f"default (one device: {device})"
    return f"devices: {devices}; strategy: {how}"


def is_chief():
    """True on the worker that writes logs, samples, checkpoints and exports."""
    tf_config = cluster_spec_from_env()
    if not tf_config:
        return True
    task = tf_config.get("task", {})
    if "chief" in tf_config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") in (None, "worker") and int(task.get("index", 0)) == 0
