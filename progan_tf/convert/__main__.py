"""`python -m progan_tf.convert --pickle=PATH --output_dir=DIR`: an official pickle -> a progan-tf run.

Reads the authors' `(G, D, Gs)` pickle (TF1 `tfutil.Network` or Theano `network.Network`)
without running anything in it, and writes a run directory that `main.py --mode=generate`,
`evaluate`, `explain` and `export` read as they read a training run, and that
`main.py --run_dir=DIR --data_dir=...` fine-tunes from the pickle's stage. See README.md,
"Use the authors' pretrained networks".

The command line is argparse's (the library knows no absl flags; `--flag=value` and
`--flag value` both work).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ logs: CUDA probing noise on CPU machines

from progan_tf.errors import UserInputError  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m progan_tf.convert", description=__doc__.splitlines()[0])
    parser.add_argument("--pickle", required=True, help="The authors' network pickle (G, D, Gs): TF1 or Theano format.")
    parser.add_argument("--output_dir", required=True, help="Run directory to create (must not exist).")
    parser.add_argument(
        "--kimg",
        type=float,
        default=None,
        help="Images the networks were trained on, in thousands (default: the NNNNNN of a "
        "network-snapshot-NNNNNN.pkl name, else 0).",
    )
    parser.add_argument(
        "--golden_images",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Write golden/img0..img9.png: Gs on the authors' example latents (default: on).",
    )
    return parser.parse_args(argv)


def _run(args):
    # TensorFlow loads only once the arguments are valid (seconds; --help stays instant).
    import tensorflow as tf
    from absl import logging

    # (the importer imports TensorFlow and Keras too)
    from progan_tf.convert.imported_run import write_imported_run

    logging.set_verbosity(logging.WARNING)  # the SavedModel writer's INFO lines
    # The golden images are a faithfulness check: compute them in full float32 (TensorFlow uses
    # TF32 for convolutions and matmuls on Ampere and later GPUs unless told otherwise).
    tf.config.experimental.enable_tensor_float_32_execution(False)
    record = write_imported_run(args.pickle, args.output_dir, kimg=args.kimg, golden_images=args.golden_images)
    network = record["network"]
    resolution = record["resolution"]
    kimg = "unknown, counted as 0" if record["kimg"] is None else f"{record['kimg']:g}"
    critic = (
        "the TF1 critic (--fused_resample=always)" if network["fused_resample"] == "always" else "the paper's critic"
    )
    funcs = record["build_funcs"]
    print(
        f"read {record['pickle']}: {record['format']} format, {funcs['G']} / {funcs['D']}, "
        f"{network['resolution']}x{network['resolution']}, {network['num_channels']} channels, "
        f"latent {network['latent_size']}"
    )
    for note in record["notes"]:
        print(f"note: {note}")
    print(f"stage: lod {record['lod']:g} = {resolution}x{resolution}, alpha {record['alpha']:g}; kimg {kimg}")
    print(
        f"networks: G {record['parameters']['G']:,} / D {record['parameters']['D']:,} parameters; {critic}; "
        f"minibatch-stddev group {network['mbstd_group_size']}"
    )
    golden = ", golden/img0..img9.png" if args.golden_images else ""
    print(
        f"wrote {args.output_dir}: config.json, imported.json, checkpoints/, export/ (SavedModel), export.keras{golden}"
    )
    print(
        f"next: python main.py --mode=generate --run_dir={args.output_dir}   "
        f"(fine-tune: python main.py --run_dir={args.output_dir} --data_dir=PYRAMID --total_kimg=N)"
    )


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        _run(args)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
