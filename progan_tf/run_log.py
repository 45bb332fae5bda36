"""The training run's logs: log.txt, stats.jsonl and TensorBoard (written by the chief only)."""

import json

import tensorflow as tf

from progan_tf import atomic_files, run_files
from progan_tf.errors import FilesystemError


class RunLogger:
    """Writes log.txt, stats.jsonl and TensorBoard scalars/images (chief only).

    A failed write raises a FilesystemError naming the file; the TensorBoard writer is created
    lazily, so a run directory whose disk is full fails on a named file, not inside TensorBoard.
    """

    def __init__(self, run_dir, enabled):
        self.enabled = enabled
        self.run_dir = atomic_files.as_path(run_dir)
        self._writer = None
        if enabled:
            with run_files.writing(self.run_dir / "log.txt", "the log"):
                self.log_file = atomic_files.open_append(self.run_dir / "log.txt")
            with run_files.writing(self.run_dir / run_files.STATS_FILE, "the statistics"):
                self.stats_file = atomic_files.open_append(self.run_dir / run_files.STATS_FILE)

    @property
    def writer(self):
        if self._writer is None:
            with run_files.writing(self.run_dir / "tensorboard", "TensorBoard logs to"):
                self._writer = tf.summary.create_file_writer(str(self.run_dir / "tensorboard"))
        return self._writer

    def line(self, text, echo=True):
        if self.enabled:
            if echo:
                print(text, flush=True)
            with run_files.writing(self.run_dir / "log.txt", "the log"):
                self.log_file.write(text + "\n")
                self.log_file.flush()  # line-buffered locally; a GFile (remote run_dir) needs it

    def stats(self, record, step):
        if not self.enabled:
            return
        with run_files.writing(self.run_dir / run_files.STATS_FILE, "the statistics"):
            self.stats_file.write(json.dumps(record) + "\n")
            self.stats_file.flush()
        with run_files.writing(self.run_dir / "tensorboard", "TensorBoard logs to"):
            with self.writer.as_default(step=step):
                for key, value in record.items():
                    if isinstance(value, (int, float)) and key != "kimg":
                        tf.summary.scalar(key, value)

    def image(self, name, grid, step):
        if self.enabled:
            with run_files.writing(self.run_dir / "tensorboard", "TensorBoard logs to"):
                with self.writer.as_default(step=step):
                    tf.summary.image(name, grid[None], max_outputs=1)

    def close(self, quiet=False):
        """Flushes and closes everything; `quiet`: on the way out of a failure, ignore errors."""
        if not self.enabled:
            return
        for close in (lambda: self._writer and self._writer.close(), self.log_file.close, self.stats_file.close):
            try:
                close()
            except (OSError, tf.errors.OpError) as error:
                if not quiet:
                    raise FilesystemError(f"could not finish writing the logs in {self.run_dir}: {error}") from None
