"""`python -m progan_tf.convert --pickle=PATH --output_dir=DIR`: an official pickle -> a progan-tf run.

Reads the authors' `(G, D, Gs)` pickle (TF1 `tfutil.Network` or Theano `network.Network`)
without running anything in it, and writes a run directory that `main.py --mode=generate`,
`evaluate`, `explain` and `export` read as they read a training run, and that
`main.py --run_dir=DIR --data_dir=...` fine-tunes from the pickle's stage. See README.md,
"Use the authors' pretrained networks".
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ logs: CUDA probing noise on CPU machines

from absl import app, flags, logging  # noqa: E402

from progan_tf.errors import UserInputError  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """Defines the CLI flags; only when run as a program, so importing this module adds none."""
    flags.DEFINE_string("pickle", None, "The authors' network pickle: a tuple (G, D, Gs), TF1 or Theano format.")
    flags.DEFINE_string("output_dir", None, "Run directory to create (must not exist).")
    flags.DEFINE_float(
        "kimg", None, "Images the networks were trained on, in thousands (default: the NNNNNN of a "
        "network-snapshot-NNNNNN.pkl name, else 0).", lower_bound=0.0,
    )
    flags.DEFINE_bool("golden_images", True, "Write golden/img0..img9.png: Gs on the authors' example latents.")


def _run(argv):
    if len(argv) > 1:
        raise UserInputError(f"unexpected positional arguments (use --flags). Received: {argv[1:]}")
    if not FLAGS.pickle or not FLAGS.output_dir:
        raise UserInputError(
            f"--pickle and --output_dir are required. Received: pickle={FLAGS.pickle}, output_dir={FLAGS.output_dir}"
        )
    logging.set_verbosity(logging.WARNING)  # the SavedModel writer's INFO lines
    import tensorflow as tf

    from progan_tf.convert.imported_run import write_imported_run

    # The golden images are a faithfulness check: compute them in full float32 (TensorFlow uses
    # TF32 for convolutions and matmuls on Ampere and later GPUs unless told otherwise).
    tf.config.experimental.enable_tensor_float_32_execution(False)

    record = write_imported_run(FLAGS.pickle, FLAGS.output_dir, kimg=FLAGS.kimg, golden_images=FLAGS.golden_images)
    network = record["network"]
    resolution = record["resolution"]
    kimg = "unknown, counted as 0" if record["kimg"] is None else f"{record['kimg']:g}"
    critic = "the TF1 critic (--fused_resample=always)" if network["fused_resample"] == "always" else "the paper's critic"
    print(f"read {record['pickle']}: {record['format']} format, {record['build_funcs']['G']} / {record['build_funcs']['D']}, "
          f"{network['resolution']}x{network['resolution']}, {network['num_channels']} channels, latent {network['latent_size']}")
    for note in record["notes"]:
        print(f"note: {note}")
    print(f"stage: lod {record['lod']:g} = {resolution}x{resolution}, alpha {record['alpha']:g}; kimg {kimg}")
    print(f"networks: G {record['parameters']['G']:,} / D {record['parameters']['D']:,} parameters; {critic}; "
          f"minibatch-stddev group {network['mbstd_group_size']}")
    written = "config.json, imported.json, checkpoints/, export/ (SavedModel), export.keras"
    print(f"wrote {FLAGS.output_dir}: {written}{', golden/img0..img9.png' if FLAGS.golden_images else ''}")
    print(f"next: python main.py --mode=generate --run_dir={FLAGS.output_dir}   "
          f"(fine-tune: python main.py --run_dir={FLAGS.output_dir} --data_dir=PYRAMID --total_kimg=N)")
    return 0


def main(argv):
    try:
        return _run(argv)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    define_flags()
    app.run(main)
