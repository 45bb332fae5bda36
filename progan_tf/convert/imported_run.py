"""An imported network as a run directory, and continuing (fine-tuning) that run with main.py.

`write_imported_run` lays the pickle's networks out as a training run would (`config.json`, a
checkpoint, the SavedModel export), plus `imported.json` (where they came from) and the
authors' golden images, so that `main.py --mode=generate|evaluate|explain|export --run_dir=DIR`
work unchanged. Its schedule starts at the pickle's stage (`ScheduleConfig.start_*`) and its
checkpoint is that first phase's, so `main.py --run_dir=DIR --data_dir=...` continues training at
that stage, with fresh Adam as at any phase change (`continue_imported_run` keeps the networks
and the start when the flags do not name them).
"""

import dataclasses
import datetime
import hashlib
import json
import math
import os
import pathlib
import re
import shutil

import numpy as np

from progan_tf import checkpoint as ckpt_lib
from progan_tf import export, images
from progan_tf.config import TrainConfig, to_dict
from progan_tf.convert.mapping import assign_networks, network_config
from progan_tf.convert.official import official_networks
from progan_tf.convert.unpickler import load_network_pickle
from progan_tf.errors import UserInputError
from progan_tf.networks import WEIGHT_SHAPING_FIELDS
from progan_tf.progan import ProGAN
from progan_tf.runs import load_train_config
from progan_tf.schedule import ScheduleConfig, phases

IMPORT_RECORD = "imported.json"
# The authors' import example: these rows of RandomState(1000).randn(1000, latent_size) through
# Gs give the CelebA-HQ faces of their README as img0 .. img9.
GOLDEN_SEED = 1000
GOLDEN_ROWS = (477, 56, 83, 887, 583, 391, 86, 340, 341, 415)
_SNAPSHOT_NAME = re.compile(r"network-snapshot-(\d+)\.pkl$")
# The architecture fields a fine-tune may choose (the imported weights fix WEIGHT_SHAPING_FIELDS).
CHOOSABLE_FIELDS = ("fused_resample", "mbstd_group_size")


def kimg_from_file_name(path):
    """The kimg in an authors' snapshot name (`network-snapshot-012000.pkl` -> 12000), else None."""
    match = _SNAPSHOT_NAME.search(pathlib.Path(path).name)
    return int(match.group(1)) if match else None


def golden_latents(latent_size):
    """The authors' example latents: rows `GOLDEN_ROWS` of `RandomState(1000).randn(1000, latent_size)`."""
    return np.random.RandomState(GOLDEN_SEED).randn(1000, latent_size)[list(GOLDEN_ROWS)].astype(np.float32)


def imported_schedule(official, config, kimg):
    """A schedule whose first phase is the networks' stage at `kimg` (0 when unknown)."""
    resolution, alpha = official.stage()
    defaults = ScheduleConfig()
    start_kimg = float(kimg or 0.0)
    group = config.mbstd_group_size
    return ScheduleConfig(
        final_resolution=config.resolution,
        start_resolution=resolution,
        start_kimg=start_kimg,
        start_alpha=alpha,
        total_kimg=max(defaults.total_kimg, start_kimg + defaults.stabilize_kimg),
        # Any batch the minibatch-stddev groups divide; a fine-tune's own flags set the real one.
        default_batch_size=group * math.ceil(defaults.default_batch_size / group),
    )


def import_model(official, run_dir, kimg=None):
    """Our `ProGAN` holding the pickle's G, D and Gs, at the pickle's stage and alpha.

    Args:
        official: `OfficialNetworks`.
        run_dir: The run directory the returned config names.
        kimg: Images the networks were trained on (None: unknown, counted as 0).

    Returns:
        (model, train_config): `model.gs_model` is the EMA generator of the pickle's stage.
    """
    config = network_config(official)
    model = ProGAN(config)
    assign_networks(official, config, model.generator, model.discriminator, model.ema_generator)
    schedule = imported_schedule(official, config, kimg)
    train_config = TrainConfig(data_dir="", run_dir=str(run_dir), network=config, schedule=schedule)
    model.images_shown.assign(round(schedule.start_kimg * 1000))
    model.start_phase(phases(schedule)[0])
    return model, train_config


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _import_record(pickle_path, official, notes, kimg, model, train_config):
    """The `imported.json` record: the pickle, its format, build functions, kwargs and stage."""
    resolution, alpha = official.stage()
    return {
        "pickle": str(pathlib.Path(pickle_path).resolve()),
        "pickle_sha256": _sha256(pickle_path),
        "format": official.source_format,
        "build_funcs": {n.role: n.build_func for n in official.networks},
        "kwargs": {n.role: n.kwargs for n in official.networks},
        "lod": official.generator.lod,
        "resolution": resolution,
        "alpha": alpha,
        "kimg": kimg,
        "network": to_dict(train_config.network),
        "parameters": {"G": model.generator.count_params(), "D": model.discriminator.count_params()},
        "converted": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "notes": notes,
    }


def _write_run_files(directory, model, train_config, record, golden_images):
    """Writes the run's files (see `write_imported_run`) into the existing `directory`."""
    (directory / "config.json").write_text(train_config.to_json())
    (directory / IMPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    images_shown, phase = int(model.images_shown.numpy()), model.phase
    position = {
        "images_shown": images_shown,
        "phase_index": phase.index,
        "phase_begin_images": images_shown,
        "resolution": phase.resolution,
        "phase": phase.kind,
        "tick": 0,
        "time_sec": 0.0,
    }
    ckpt_lib.save_checkpoint(directory / "checkpoints", model, position)
    export.export_generator(model.gs_model, directory / "export", train_config.network.latent_size)
    if golden_images:
        (directory / "golden").mkdir()
        # One image at a time: ten 1024x1024 images at once need ~10 GB of activations.
        for index, latent in enumerate(golden_latents(train_config.network.latent_size)):
            picture = images.to_uint8(model.gs_model(latent[None], training=False))[0]
            images.save_png(directory / "golden" / f"img{index}.png", picture)


def write_imported_run(pickle_path, output_dir, kimg=None, golden_images=True):
    """Converts an official network pickle into a new run directory.

    Written into `<output_dir>.partial/` and renamed when complete:
        config.json            the run's `TrainConfig` (its schedule starts at the pickle's stage).
        imported.json          the pickle, its format, build functions, keyword arguments, lod.
        checkpoints/ckpt-N.*   G, D, Gs and fresh optimizers at N = the pickle's image count (a
                               TF checkpoint, `checkpoint.save_checkpoint`).
        export/, export.keras  the EMA generator (Gs) of the pickle's stage (SavedModel, Keras).
        golden/img0..img9.png  Gs on the authors' example latents (`golden_latents`).

    Args:
        pickle_path: The authors' `(G, D, Gs)` pickle (TF1 or Theano format).
        output_dir: Run directory to create (must not exist).
        kimg: Images the networks were trained on; None: from a `network-snapshot-NNNNNN.pkl`
            name, else unknown (0).
        golden_images: Whether to write `golden/`.

    Returns:
        The dict written to `imported.json`, plus "notes" (ignored keyword arguments and the like).
    """
    output_dir = pathlib.Path(output_dir)
    if output_dir.exists():
        raise UserInputError(
            f"the output directory already exists; choose a new one. Received: output_dir={output_dir}"
        )
    pickled = load_network_pickle(pickle_path)
    official, notes = official_networks(pickled)
    if kimg is None:
        kimg = kimg_from_file_name(pickle_path)
    if kimg is not None and kimg < 0:
        raise UserInputError(f"kimg must be >= 0. Received: kimg={kimg}")
    model, train_config = import_model(official, output_dir, kimg)
    record = _import_record(pickle_path, official, notes, kimg, model, train_config)
    partial = output_dir.with_name(output_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # a conversion that died half way
    partial.mkdir(parents=True)
    try:
        _write_run_files(partial, model, train_config, record, golden_images)
        os.rename(partial, output_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return record


def continue_imported_run(run_dir, network, schedule, explicit, resume="latest"):
    """The networks and start of a training run in a directory `write_imported_run` made.

    Outside such a directory `network` and `schedule` come back unchanged. Inside, the run
    continues the imported networks: the fields the weights fix (`WEIGHT_SHAPING_FIELDS`) are the
    run's (a flag naming another value is an error), `fused_resample` and `mbstd_group_size` are
    the run's unless a flag names them, and the schedule starts where the run's does.

    Args:
        run_dir: The --run_dir of a training command.
        network, schedule: `NetworkConfig` and `ScheduleConfig` from the flags.
        explicit: `explicit(flag_name)` is True for flags given on the command line.
        resume: The --resume flag.

    Returns:
        (network, schedule).
    """
    run_dir = pathlib.Path(run_dir)
    if not (run_dir / IMPORT_RECORD).is_file():
        return network, schedule
    if resume == "none":
        raise UserInputError(
            f"{run_dir} holds imported networks; --resume=none would train new ones in their place. Use another "
            f"--run_dir for a run from scratch. Received: resume=none"
        )
    saved = load_train_config(run_dir)
    for name in WEIGHT_SHAPING_FIELDS:
        if explicit(name) and getattr(network, name) != getattr(saved.network, name):
            raise UserInputError(
                f"{run_dir} continues imported networks with {name}={getattr(saved.network, name)}; drop --{name} "
                f"(the weights fix it). Received: {name}={getattr(network, name)}"
            )
    chosen = {name: getattr(network if explicit(name) else saved.network, name) for name in CHOOSABLE_FIELDS}
    network = dataclasses.replace(saved.network, **chosen)
    start = saved.schedule
    if schedule.total_kimg <= start.start_kimg:
        raise UserInputError(
            f"the imported networks start at kimg {start.start_kimg:g}; --total_kimg must be larger (training "
            f"continues from there). Received: total_kimg={schedule.total_kimg:g}"
        )
    schedule = dataclasses.replace(
        schedule,
        final_resolution=network.resolution,
        start_resolution=start.start_resolution,
        start_kimg=start.start_kimg,
        start_alpha=start.start_alpha,
    )
    return network, schedule
