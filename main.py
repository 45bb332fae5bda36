"""progan-tf command line: `python main.py --flagfile=experiments/celebahq.flags [--mode=...]`."""

import sys

from progan_tf import startup

startup.import_tensorflow_quietly()  # before anything imports TensorFlow: no C++ start-up log lines

from absl import app  # noqa: E402

from progan_tf import cli  # noqa: E402
from progan_tf.errors import EXIT_SIGINT, RunStopped, UserInputError  # noqa: E402
from progan_tf.flags import FLAGS, define_flags  # noqa: E402


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    startup.quiet_absl_logging(verbosity_given=FLAGS["verbosity"].present)
    try:
        cli.run(FLAGS)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except RunStopped as stop:  # diverged (3), SIGINT (130), SIGTERM (143): see progan_tf.errors
        print(stop, file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:  # Ctrl-C outside training's own handler (start-up, other modes)
        print("interrupted", file=sys.stderr)
        return EXIT_SIGINT
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
