"""Real-data check: train on ../shared/data/celeba128 at 32x32 on this CPU and measure.

Builds the pyramid (if absent), measures SWD (x1e3, levels 32 and 16, all 800 images per side)
of the freshly initialised EMA generator against the real images, trains with
experiments/celeba128_32.flags, measures SWD again on the trained EMA generator, and prints a
table of img/s per phase (median over the phase's ticks, first tick excluded: it includes
tracing) and the SWD before/after.

Usage: python bench/real_data_check.py [--images=../shared/data/celeba128]
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datasets.build import build_pyramid  # noqa: E402
from progan_tf.cli.train import train_config_from_flags  # noqa: E402
from progan_tf.flags import FLAGS, define_flags  # noqa: E402
from progan_tf.metrics.periodic import small_swd  # noqa: E402
from progan_tf.progan import ProGAN  # noqa: E402
from progan_tf.runs import load_trained_model  # noqa: E402

FLAGFILE = REPO / "experiments" / "celeba128_32.flags"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", default=str(REPO.parent / "shared" / "data" / "celeba128"))
    args = parser.parse_args()
    define_flags()
    FLAGS([sys.argv[0], f"--flagfile={FLAGFILE}"])
    config = train_config_from_flags(FLAGS)
    data_dir = REPO / config.data_dir
    if not (data_dir / "manifest.json").is_file():
        build_pyramid(args.images, str(data_dir), config.network.resolution, progress=False)
    num_images = 800
    before = small_swd(
        ProGAN(config.network, seed=config.seed).ema_generator.model(config.network.resolution),
        data_dir,
        config.network.resolution,
        num_images,
        seed=0,
    )
    run_dir = REPO / config.run_dir
    subprocess.run(
        [sys.executable, str(REPO / "main.py"), f"--flagfile={FLAGFILE}", "--resume=none"], cwd=REPO, check=True
    )
    model, _, _ = load_trained_model(run_dir)
    after = small_swd(model.gs_model, data_dir, config.network.resolution, num_images, seed=0)

    ticks = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    print("\nthroughput per phase (median img/s over ticks after the first)")
    print(f"{'resolution':>10}  {'phase':<9}  {'img/s':>7}  {'sec/kimg':>8}")
    phases = {}
    for tick in ticks:
        if "img_per_sec" in tick:
            phases.setdefault((tick["resolution"], tick["phase"]), []).append(tick)
    for (resolution, kind), rows in phases.items():
        rows = rows[1:] or rows
        img_s = statistics.median(r["img_per_sec"] for r in rows)
        print(f"{f'{resolution}x{resolution}':>10}  {kind:<9}  {img_s:7.1f}  {1000 / img_s:8.2f}")
    print(f"\nSWD x1e3, {num_images} images per side, EMA generator vs real")
    keys = [k for k in before if k.startswith("eval_swd_")]
    print(f"{'':>8}  " + "  ".join(f"{k:>12}" for k in keys))
    for label, result in (("start", before), ("end", after)):
        print(f"{label:>8}  " + "  ".join(f"{result[k]:12.2f}" for k in keys))
    grids = sorted((run_dir / "samples").glob("fakes-ema-*.png"))
    print(f"\nsample grid: {grids[-1] if grids else 'none'}")


if __name__ == "__main__":
    main()
