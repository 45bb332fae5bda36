"""`--mode=explain`: needs --run_dir [--checkpoint]; `explain.explain_run` writes the maps."""

from progan_tf import explain
from progan_tf.errors import UserInputError


def run(values):
    if not values.run_dir:
        raise UserInputError(
            "--mode=explain needs the run whose critic to explain: --run_dir=DIR [--checkpoint=FILE]. "
            "Received: run_dir=None"
        )
    return explain.explain_run(
        values.run_dir,
        checkpoint=values.checkpoint,
        output_dir=values.output_dir,
        real_dir=values.real_dir,
        num_images=values.num_images,
        methods=values.explain_methods,
        seed=values.generate_seed,
    )
