"""Choosing the tf.distribute strategy."""

import json
import os

import tensorflow as tf


def cluster_spec_from_env():
    """The parsed `TF_CONFIG` environment variable, or None when it is unset or empty."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    return json.loads(raw) if raw else None


def make_strategy():
    """MultiWorkerMirroredStrategy when `TF_CONFIG` names several workers, else MirroredStrategy.

    MirroredStrategy takes every local GPU, or the CPU when there is none, so the same code runs
    on a laptop, one GPU or eight.
    """
    tf_config = cluster_spec_from_env()
    if tf_config and sum(len(v) for v in tf_config.get("cluster", {}).values()) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.MirroredStrategy()


def is_chief():
    """True on the worker that writes logs, samples, checkpoints and exports."""
    tf_config = cluster_spec_from_env()
    if not tf_config:
        return True
    task = tf_config.get("task", {})
    if "chief" in tf_config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") in (None, "worker") and int(task.get("index", 0)) == 0
