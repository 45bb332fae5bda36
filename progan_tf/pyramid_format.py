"""Names and constants of the dataset pyramid format, shared by the builder and the input pipeline.

TensorFlow-free, so the builder's worker processes can import it cheaply. The layout is described
in datasets/build.py.
"""

import re

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "progan-tf-pyramid"
FORMAT_VERSION = 1
# A TFRecord frames each record with a length (8 bytes) and two CRCs (4 bytes each).
TFRECORD_FRAMING_BYTES = 16
# Every file a build writes into a pyramid directory (shards, record names, the manifest's
# temporary), with or without a build tag; anything else in the directory is never touched.
_BUILD_FILE = re.compile(r"^(r\d{2}-\d{5}(-\w+)?\.tfrecord|records(-\w+)?\.txt|manifest\.json\.tmp-\w+)$")


def shard_file_name(resolution: int, shard_index: int, build_tag: str) -> str:
    """Shard `shard_index` of a level: r10-00003-<tag>.tfrecord is shard 3 of 1024x1024."""
    return f"r{resolution.bit_length() - 1:02d}-{shard_index:05d}-{build_tag}.tfrecord"


def record_names_file_name(build_tag: str) -> str:
    return f"records-{build_tag}.txt"


def is_build_file(file_name: str) -> bool:
    """Whether a file name is one the builder writes (so a later build may remove it)."""
    return bool(_BUILD_FILE.match(file_name))
