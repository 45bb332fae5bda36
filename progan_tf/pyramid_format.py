"""Constants of the dataset pyramid format, shared by the builder and the input pipeline.

TensorFlow-free, so the builder's worker processes can import it cheaply.
"""

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "progan-tf-pyramid"
FORMAT_VERSION = 1
# A TFRecord frames each record with a length (8 bytes) and two CRCs (4 bytes each).
TFRECORD_FRAMING_BYTES = 16
