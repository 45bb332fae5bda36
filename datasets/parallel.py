"""Runs the builder's image loading in worker processes, in order, pixels through shared memory.

Workers write each image's packed pyramid (datasets/imaging.py) straight into a slot of one shared
memory block, and send back only names and notes: a 1024 px image's pyramid is 4 MB, and
pickling it through a pipe cost about as much CPU as building it. The block has one slot per
task in flight; a slot is handed to a new task only after its records have been consumed.

TensorFlow-free, like imaging.py: the forkserver preloads both modules.
"""

import collections
import contextlib
import ctypes
import multiprocessing
import os
import shutil
import sys
import types
from collections.abc import Iterator
from multiprocessing import shared_memory

import numpy as np

from datasets import imaging
from progan_tf.errors import UserInputError

# Each worker task carries about this many bytes of output (bounds memory and keeps workers busy).
TASK_BYTES = 8 << 20
# Tasks in flight per worker: one being loaded while the parent consumes another.
_TASKS_PER_WORKER = 2
# Worker-side cache of the attached shared memory block, by name.
_attached = {}
# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def images_per_task(resolution: int) -> int:
    return int(np.clip(TASK_BYTES // sum(size for _, size in imaging.level_spans(resolution)), 1, 256))


def load_pyramids(tasks, resolution: int, num_workers: int) -> Iterator[tuple]:
    """Loads every task's items and yields them in order.

    Args:
      tasks: worker tasks (see imaging.load_chunk), each of at most images_per_task(resolution) items.
      resolution: the pyramid's full resolution.
      num_workers: worker processes (0: load in this process).

    Yields:
      (imaging.LoadResult, list of each level's record bytes, lowest first, or None if skipped).
    """
    spans = imaging.level_spans(resolution)
    shape = (images_per_task(resolution), spans[-1][0] + spans[-1][1])
    if num_workers == 0:
        buffer = np.empty(shape, np.uint8)
        for task in tasks:
            yield from _records(imaging.load_chunk(task, buffer), buffer, spans)
        return
    slots = _TASKS_PER_WORKER * num_workers
    memory = _create_shared_memory(slots * shape[0] * shape[1], num_workers)
    try:
        yield from _load_in_pool(tasks, memory, (slots, *shape), spans, num_workers)
    finally:
        memory.unlink()
        with contextlib.suppress(BufferError):  # a traceback in flight may still hold a view into it
            memory.close()


def _load_in_pool(tasks, memory, shape, spans, num_workers):
    buffers = np.ndarray(shape, np.uint8, buffer=memory.buf)
    try:
        # forkserver: workers never inherit TensorFlow's threads from this process, and preload
        # only the TF-free loading modules, so they start fast.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["datasets.imaging", "datasets.parallel"])
        with _main_module_hidden(), context.Pool(num_workers, initializer=keep_freed_memory) as pool:
            pending, free = collections.deque(), list(range(shape[0]))
            for task in tasks:
                if not free:
                    yield from _consume(pending, buffers, spans, free)
                slot = free.pop()
                pending.append((slot, pool.apply_async(_load_into_slot, (memory.name, shape, slot, task))))
            while pending:
                yield from _consume(pending, buffers, spans, free)
    finally:
        del buffers  # the shared memory block can only be closed once no array points into it


def _consume(pending, buffers, spans, free):
    slot, result = pending.popleft()
    yield from _records(result.get(), buffers[slot], spans)
    free.append(slot)


def _records(results, buffer, spans):
    for result, row in zip(results, buffer):
        levels = None if result.skip_reason else [row[offset : offset + size].tobytes() for offset, size in spans]
        yield result, levels


def keep_freed_memory():
    """Worker initializer: lets a worker reuse one image's memory for the next (glibc only).

    A fresh process's malloc hands the large blocks of each image (PIL's decoded image, the array
    copy, the pyramid sums) back to the kernel when freed and page-faults them in again for the
    next image: ~2000 faults and a third of the worker's CPU per 1024 px image. Serving blocks of
    up to 32 MiB from the heap and trimming it only above 256 MiB keeps them (a worker's heap
    stays at its peak, tens of MB).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):  # no mallopt (macOS): nothing to tune
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    mallopt(_M_TRIM_THRESHOLD, 256 << 20)


def _load_into_slot(name, shape, slot, task):
    """Worker side: loads one task into its slot of the shared block."""
    memory = _attached.get(name)
    if memory is None:
        _attached.clear()
        memory = _attached[name] = shared_memory.SharedMemory(name=name)
    return imaging.load_chunk(task, np.ndarray(shape, np.uint8, buffer=memory.buf)[slot])


def _create_shared_memory(size, num_workers):
    # Docker gives containers a 64 MB /dev/shm by default; running out there is a SIGBUS in a
    # worker, so check first.
    free = shutil.disk_usage("/dev/shm").free if os.path.isdir("/dev/shm") else size
    if free < size:
        raise UserInputError(
            f"not enough shared memory: the builder needs {size / 2**20:.0f} MiB in /dev/shm for "
            f"{num_workers} workers, "
            f"{free / 2**20:.1f} MiB are free; pass a smaller --num_workers (or give the container more, e.g. "
            f"docker --shm-size). Received: num_workers={num_workers}"
        )
    return shared_memory.SharedMemory(create=True, size=size)


@contextlib.contextmanager
def _main_module_hidden():
    """Keeps new worker processes from re-importing the parent's __main__ module.

    multiprocessing re-imports the main script (or `-m` module) in every spawned/forkserver
    child; for a trainer or the builder's CLI that means importing TensorFlow in each worker
    (seconds and hundreds of MB each). Workers need only the loading modules, so the main module
    is swapped for an empty one while the pool starts its processes.
    """
    main_module = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main_module
