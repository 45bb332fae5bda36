"""Importing the authors' ProGAN network pickles (TF1 and Theano formats) as progan-tf runs.

    python -m progan_tf.convert --pickle=karras2018iclr-celebahq-1024x1024.pkl --output_dir=runs/celebahq-official

Modules (import them directly; this package imports nothing, so `python -m progan_tf.convert`
starts without TensorFlow): `unpickler` (a restricted unpickler: nothing in the file runs),
`official` (the pickle's networks as TF1-named arrays), `mapping` (onto our layers),
`imported_run` (the run directory, and continuing it with main.py).
"""
