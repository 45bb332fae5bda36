"""Demo quality: train `experiments/demo.flags` with a few seeds and print SWD against the dataset.

For each seed this runs what `make demo` runs (the synthetic pyramid is built first if absent,
with the Makefile's own command), in a fresh run directory `runs/demo-bench-seed<N>`:
training, then `--mode=evaluate --metrics=swd` with 800 images per side against the dataset's
first 800 images. It prints one row per seed (train and evaluate wall time, SWD x1e3 per level
and the average) and the noise floor: the dataset's images 0-799 against images 800-1599, the
value a perfect generator would get with this many images.

Usage:
    .venv/bin/python bench/demo_quality.py [--seeds=1000,2000] [--extra="--learning_rate=0.002 ..."]

`--extra` appends flags to the training command (after the flagfile, so they win): the way to
try a change before writing it into demo.flags.
"""

import argparse
import json
import os
import pathlib
import shlex
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FLAGFILE = REPO / "experiments" / "demo.flags"
NUM_IMAGES = 800


def flag_value(name):
    for line in FLAGFILE.read_text().splitlines():
        if line.startswith(f"--{name}="):
            return line.split("=", 1)[1]
    raise SystemExit(f"{FLAGFILE} has no --{name}")


def run(command, log_path):
    """Runs a command with its output to `log_path`; returns its wall time in seconds."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        result = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode:
        raise SystemExit(f"failed ({result.returncode}): {shlex.join(command)}; see {log_path}")
    return time.perf_counter() - start


def noise_floor(data_dir):
    from progan_tf.startup import import_tensorflow_quietly

    import_tensorflow_quietly()
    from progan_tf.metrics import sources
    from progan_tf.metrics.evaluate import evaluate

    def reals(start):
        def batches():
            for index, batch in enumerate(sources.pyramid_batches(str(data_dir), resolution, 100)):
                if start <= index * 100 < start + NUM_IMAGES:
                    yield batch

        return batches

    resolution = int(flag_value("resolution"))
    return evaluate(["swd"], reals(0), reals(NUM_IMAGES), num_images=NUM_IMAGES, verbose=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1000,2000", help="comma-separated training seeds")
    parser.add_argument("--extra", default="", help="extra training flags, e.g. '--learning_rate=0.002'")
    parser.add_argument("--tag", default="demo-bench", help="run directories are runs/<tag>-seed<N>")
    parser.add_argument("--no-floor", action="store_true", help="skip the real-vs-real noise floor")
    args = parser.parse_args()
    data_dir = REPO / flag_value("data_dir")
    subprocess.run(["make", "-s", "demo-data", f"PY={sys.executable}"], cwd=REPO, check=True)
    extra = shlex.split(args.extra)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        run_dir = REPO / "runs" / f"{args.tag}-seed{seed}"
        run_dir.parent.mkdir(exist_ok=True)
        train = [
            sys.executable,
            "main.py",
            f"--flagfile={FLAGFILE}",
            f"--seed={seed}",
            f"--run_dir={run_dir}",
            "--resume=none",
            *extra,
        ]
        evaluate = [
            sys.executable,
            "main.py",
            "--mode=evaluate",
            f"--run_dir={run_dir}",
            "--metrics=swd",
            f"--num_images={NUM_IMAGES}",
        ]
        log_dir = REPO / "runs"
        train_sec = run(train, log_dir / f"{args.tag}-seed{seed}.train.log")
        eval_sec = run(evaluate, log_dir / f"{args.tag}-seed{seed}.eval.log")
        report = json.loads(max(run_dir.glob("metrics-kimg*.json")).read_text())
        rows.append((f"seed {seed}", train_sec, eval_sec, report["metrics"]))
        print(f"seed {seed}: swd_avg {report['metrics']['swd_avg']:.2f} (train {train_sec:.0f} s)", flush=True)
    if not args.no_floor:
        rows.append(("reals 0-799 vs 800-1599", None, None, noise_floor(data_dir)))

    levels = [key for key in rows[0][3] if key.startswith("swd_") and key != "swd_avg"]
    load = os.getloadavg()[0]
    print(f"\ndemo SWD x1e3, {NUM_IMAGES} images per side vs {data_dir.name} (load average now {load:.1f})")
    if extra:
        print(f"extra flags: {shlex.join(extra)}")
    header = f"{'':<24}  {'train s':>7}  {'eval s':>6}  " + "  ".join(f"{k:>8}" for k in levels + ["swd_avg"])
    print(header)
    print("-" * len(header))
    for label, train_sec, eval_sec, metrics in rows:
        times = f"{train_sec:7.0f}  {eval_sec:6.0f}" if train_sec is not None else f"{'':>7}  {'':>6}"
        print(f"{label:<24}  {times}  " + "  ".join(f"{metrics[k]:8.2f}" for k in levels + ["swd_avg"]))


if __name__ == "__main__":
    main()
