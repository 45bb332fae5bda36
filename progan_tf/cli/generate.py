"""`--mode=generate`: from --savedmodel or --run_dir [--checkpoint], with `generate.generate_outputs`."""

from progan_tf import atomic_files, generate, generators
from progan_tf.errors import UserInputError


def run(values):
    if values.savedmodel:
        generator = generators.load_savedmodel(values.savedmodel)
        # Beside the SavedModel (e.g. runs/demo/export -> runs/demo/export-generated).
        savedmodel = atomic_files.as_path(values.savedmodel)
        default_dir = savedmodel.with_name(savedmodel.name + "-generated")
    elif values.run_dir:
        generator = generators.load_run_generator(values.run_dir, values.checkpoint)[0]
        default_dir = atomic_files.path_in(values.run_dir, f"generated-kimg{generator.kimg:010.3f}")
    else:
        raise UserInputError(
            "--mode=generate needs a generator: --savedmodel=DIR (an export) or --run_dir=DIR "
            "[--checkpoint=FILE]. Received: savedmodel=None, run_dir=None"
        )
    output_dir = atomic_files.as_path(values.output_dir) if values.output_dir else default_dir
    written = generate.generate_outputs(
        generator,
        output_dir,
        num_images=values.num_images,
        seed=values.generate_seed,
        interpolation_steps=values.interpolation_steps,
        walk_keyframes=values.walk_keyframes,
        frame_ms=values.gif_frame_ms,
        video_fps=values.video_fps,
        video_size=values.video_size,
    )
    print(
        f"generated {len(written['images'])} images ({generator.resolution}x{generator.resolution}) "
        f"with the {generator.description}, seed {values.generate_seed}, into {output_dir}"
    )
    for key in ("grid", "interpolation", "walk", "video"):
        if key in written:
            print(f"  {key}: {written[key]}")
    return written
