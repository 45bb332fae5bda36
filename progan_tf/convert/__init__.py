"""Importing the authors' ProGAN network pickles (TF1 and Theano formats) as progan-tf runs.

    python -m progan_tf.convert --pickle=karras2018iclr-celebahq-1024x1024.pkl --output_dir=runs/celebahq-official

Modules: `unpickler` (a restricted unpickler: nothing in the file runs), `official` (the
pickle's networks as TF1-named arrays), `mapping` (onto our layers), `imported_run` (the run
directory, and continuing it with main.py).
"""

from progan_tf.convert.imported_run import (
    continue_imported_run,
    golden_latents,
    import_model,
    write_imported_run,
)
from progan_tf.convert.mapping import assign_networks, network_config
from progan_tf.convert.official import OfficialNetworks, official_networks
from progan_tf.convert.unpickler import load_network_pickle

__all__ = [
    "OfficialNetworks",
    "assign_networks",
    "continue_imported_run",
    "golden_latents",
    "import_model",
    "load_network_pickle",
    "network_config",
    "official_networks",
    "write_imported_run",
]
