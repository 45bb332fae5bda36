"""Where a build's images come from: a folder, the synthetic faces, or a TFDS dataset.

Each source yields worker tasks (see imaging.load_chunk) lazily, so nothing is held in memory.
"""

import os
from collections.abc import Iterator

import numpy as np

from datasets.imaging import IMAGE_EXTENSIONS
from progan_tf.errors import UserInputError


class Source:
    """A stream of worker tasks plus what the manifest records about where images came from."""

    def __init__(self, description: dict, num_candidates: int, tasks: Iterator, problems=()):
        self.description = description
        self.num_candidates = num_candidates
        self.tasks = tasks
        self.problems = list(problems)


def _chunks(items, size):
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _folder_source(folder, resolution, seed, chunk_size, non_square) -> Source:
    if not os.path.isdir(folder):
        kind = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise UserInputError(f"source folder {kind}; expected a folder of images. Received: source={folder!r}")
    images, ignored = [], 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file_name in sorted(files):
            if file_name.startswith("."):
                continue
            if file_name.lower().endswith(IMAGE_EXTENSIONS):
                images.append(os.path.relpath(os.path.join(root, file_name), folder))
            else:
                ignored += 1
    images.sort()
    if not images:
        raise UserInputError(
            f"source folder contains no images (looked for {', '.join(IMAGE_EXTENSIONS)}, recursively; "
            f"{ignored} other files). Received: source={folder!r}"
        )
    unique, problems, first_by_stem = [], [], {}
    for relative in images:
        stem = os.path.splitext(relative)[0].lower()
        if stem in first_by_stem:
            problems.append(
                {"file": relative, "reason": f"duplicate name (same as {first_by_stem[stem]})", "fatal": True}
            )
        else:
            first_by_stem[stem] = relative
            unique.append(relative)
    order = np.random.default_rng(seed).permutation(len(unique))
    items = ((unique[i], os.path.join(folder, unique[i])) for i in order)
    tasks = (("file", chunk, resolution, non_square) for chunk in _chunks(items, chunk_size))
    description = {
        "kind": "folder",
        "path": os.path.abspath(folder),
        "image_files": len(images),
        "ignored_files": ignored,
    }
    return Source(description, len(unique), tasks, problems)


def _synthetic_source(resolution, seed, num_images, chunk_size) -> Source:
    count = 5000 if num_images is None else num_images
    tasks = (("synthetic", list(chunk), resolution, seed) for chunk in _chunks(range(count), chunk_size))
    return Source({"kind": "synthetic", "generator": "datasets.synthetic.synthetic_image"}, count, tasks)


def _tfds_source(spec, resolution, seed, chunk_size, non_square, manual_dir, data_dir, image_key) -> Source:
    # Imported here: TFDS is heavy and only this source needs it.
    import tensorflow_datasets as tfds

    name, _, split = spec.partition(":")
    split = split or "train"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as exc:  # tfds raises several types (DatasetNotFoundError, ValueError, ...)
        raise UserInputError(f"unknown TFDS dataset or config: {exc}. Received: source='tfds:{spec}'") from None
    if manual_dir is not None:
        if not os.path.isdir(manual_dir):
            raise UserInputError(f"TFDS manual dir does not exist. Received: tfds_manual_dir={manual_dir!r}")
        config = tfds.download.DownloadConfig(manual_dir=manual_dir)
        try:
            builder.download_and_prepare(download_config=config)
        except Exception as exc:  # surfaces the builder's own explanation (e.g. missing tar)
            message = " ".join(str(exc).split())
            raise UserInputError(
                f"TFDS could not prepare {name} from the manual dir: {message}. "
                f"Received: tfds_manual_dir={manual_dir!r}"
            ) from None
    elif not builder.is_prepared():
        raise UserInputError(
            f"TFDS dataset {name} is not prepared in {builder.data_dir} and nothing is downloaded: pass "
            f"--tfds_manual_dir or --tfds_data_dir. Received: source='tfds:{spec}'"
        )
    if split not in builder.info.splits:
        raise UserInputError(
            f"TFDS dataset {name} has no split {split!r}; it has {sorted(builder.info.splits)}. "
            f"Received: source='tfds:{spec}'"
        )
    if image_key not in builder.info.features:
        raise UserInputError(
            f"TFDS dataset {name} has no feature {image_key!r}; it has {sorted(builder.info.features)}. "
            f"Received: tfds_image_key={image_key!r}"
        )
    dataset = builder.as_dataset(
        split=split,
        shuffle_files=True,
        read_config=tfds.ReadConfig(shuffle_seed=seed),
        decoders={image_key: tfds.decode.SkipDecoding()},
    )

    def items():
        for index, example in enumerate(dataset.as_numpy_iterator()):
            yield f"{name}:{split}[{index}]", example[image_key]

    tasks = (("bytes", chunk, resolution, non_square) for chunk in _chunks(items(), chunk_size))
    description = {"kind": "tfds", "name": name, "split": split, "data_dir": builder.data_dir, "manual_dir": manual_dir}
    return Source(description, builder.info.splits[split].num_examples, tasks)


def make_source(
    source, resolution, seed, num_images, chunk_size, non_square, tfds_manual_dir, tfds_data_dir, tfds_image_key
) -> Source:
    if source == "synthetic":
        return _synthetic_source(resolution, seed, num_images, chunk_size)
    if source.startswith("tfds:"):
        return _tfds_source(
            source[len("tfds:") :],
            resolution,
            seed,
            chunk_size,
            non_square,
            tfds_manual_dir,
            tfds_data_dir,
            tfds_image_key,
        )
    return _folder_source(source, resolution, seed, chunk_size, non_square)
