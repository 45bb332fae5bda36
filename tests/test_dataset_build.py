"""Tests for the dataset pyramid builder (datasets/build.py) and its verifier."""

import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from datasets import build, problems
from datasets.synthetic import synthetic_image
from progan_tf import data, pyramid_check
from progan_tf.errors import UserInputError
from tests.conftest import REPO_ROOT

RESOLUTION = 32


def reference_pyramid(image):
    """Independent NumPy reference: level r = rint of the float64 mean over (R/r)x(R/r) blocks."""
    size = image.shape[0]
    levels = {}
    r = size
    while r >= 4:
        block = size // r
        means = image.astype(np.float64).reshape(r, block, r, block, -1).mean(axis=(1, 3))
        levels[r] = np.clip(np.rint(means), 0, 255).astype(np.uint8)
        r //= 2
    return levels


def read_level(pyramid_dir, resolution):
    return np.concatenate(list(data.iterate_images(pyramid_dir, resolution, batch_size=64)))


def record_names(pyramid_dir):
    with open(os.path.join(pyramid_dir, data.load_manifest(pyramid_dir)["record_names_file"])) as handle:
        return handle.read().splitlines()


def shard_path(pyramid_dir, resolution, index=0):
    level = pyramid_check.find_level(data.load_manifest(pyramid_dir), pyramid_dir, resolution)
    return os.path.join(pyramid_dir, level["shards"][index]["file"])


def random_rgb(rng, size, height=None):
    return rng.integers(0, 256, (height or size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """A folder with good images, convertible ones and bad ones; returns (path, expected pixels)."""
    root = tmp_path_factory.mktemp("images")
    (root / "a").mkdir()
    (root / "b" / "deeper").mkdir(parents=True)
    rng = np.random.default_rng(0)
    expected = {}
    for index in range(6):
        pixels = random_rgb(rng, RESOLUTION)
        Image.fromarray(pixels).save(root / "a" / f"img_{index}.png")
        expected[f"a/img_{index}.png"] = pixels
    wide = random_rgb(rng, RESOLUTION + 8, RESOLUTION)
    Image.fromarray(wide).save(root / "a" / "wide.png")
    expected["a/wide.png"] = wide[:, 4 : 4 + RESOLUTION]
    small = random_rgb(rng, RESOLUTION)
    # 2x nearest upsampling, so the builder's 2x box reduction must give `small` back exactly.
    Image.fromarray(small.repeat(2, axis=0).repeat(2, axis=1)).save(root / "b" / "deeper" / "big.png")
    expected["b/deeper/big.png"] = small
    gray = rng.integers(0, 256, (RESOLUTION, RESOLUTION), dtype=np.uint8)
    Image.fromarray(gray).save(root / "b" / "gray.png")
    expected["b/gray.png"] = np.repeat(gray[..., None], 3, axis=2)
    rgba = rng.integers(0, 256, (RESOLUTION, RESOLUTION, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(root / "b" / "rgba.png")
    expected["b/rgba.png"] = rgba[..., :3]
    Image.fromarray(random_rgb(rng, RESOLUTION)).convert("CMYK").save(root / "b" / "cmyk.jpg")
    expected["b/cmyk.jpg"] = None  # lossy: only its presence is checked
    (root / "b" / "corrupt.jpg").write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
    Image.fromarray(random_rgb(rng, RESOLUTION)).save(root / "b" / "truncated.png")
    truncated = (root / "b" / "truncated.png").read_bytes()
    (root / "b" / "truncated.png").write_bytes(truncated[: len(truncated) // 2])
    Image.fromarray(random_rgb(rng, 16)).save(root / "b" / "tiny.png")
    Image.fromarray(random_rgb(rng, RESOLUTION)).save(root / "a" / "img_0.webp")  # duplicate name
    (root / "notes.txt").write_text("not an image")
    return str(root), expected


@pytest.fixture(scope="module")
def folder_pyramid(image_folder, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("out") / "faces")
    manifest = build.build_pyramid(image_folder[0], output, RESOLUTION, seed=7, num_workers=2, progress=False)
    return output, manifest


def test_folder_build_reports_every_bad_file_by_reason(folder_pyramid):
    _, manifest = folder_pyramid
    by_file = {problem["file"]: (problem["reason"], problem["fatal"]) for problem in manifest["problems"]}
    assert set(by_file) == {
        "b/corrupt.jpg",
        "b/truncated.png",
        "b/tiny.png",
        "a/img_0.webp",
        "b/gray.png",
        "b/rgba.png",
        "b/cmyk.jpg",
    }
    assert by_file["b/corrupt.jpg"][0].startswith("corrupt or unreadable")
    assert by_file["b/truncated.png"][0].startswith("corrupt or unreadable")
    assert by_file["b/tiny.png"][0] == "smaller than 32x32 (16x16)"
    assert by_file["a/img_0.webp"][0] == "duplicate name (same as a/img_0.png)"
    assert all(by_file[name][1] is False for name in ("b/gray.png", "b/rgba.png", "b/cmyk.jpg"))
    summary = problems.summarize_problems(manifest["problems"])
    assert (
        "skipped 2: corrupt or unreadable: b/corrupt.jpg, b/truncated.png" in summary
        or "skipped 2: corrupt or unreadable: b/truncated.png, b/corrupt.jpg" in summary
    )
    assert manifest["source"]["ignored_files"] == 1
    assert manifest["num_images"] == 11


def test_folder_build_pixels_and_pyramid_match_numpy(folder_pyramid, image_folder):
    output, manifest = folder_pyramid
    _, expected = image_folder
    names = record_names(output)
    assert sorted(names) == sorted(expected)
    assert names != sorted(names)  # shuffled once by seed
    levels = {r: read_level(output, r) for r in manifest["resolutions"]}
    assert manifest["resolutions"] == [4, 8, 16, 32]
    for index, name in enumerate(names):
        full = levels[RESOLUTION][index]
        if expected[name] is not None:
            np.testing.assert_array_equal(full, expected[name], err_msg=name)
        for r, reference in reference_pyramid(full).items():
            np.testing.assert_array_equal(levels[r][index], reference, err_msg=f"{name} at {r}")


def test_rebuild_with_same_seed_is_byte_identical_without_workers(folder_pyramid, image_folder, tmp_path):
    _, manifest = folder_pyramid
    again = build.build_pyramid(
        image_folder[0], str(tmp_path / "again"), RESOLUTION, seed=7, num_workers=0, progress=False
    )
    digests = lambda m: [shard["sha256"] for level in m["levels"] for shard in level["shards"]]
    assert digests(again) == digests(manifest)
    other = build.build_pyramid(
        image_folder[0], str(tmp_path / "other"), RESOLUTION, seed=8, num_workers=0, progress=False
    )
    assert record_names(str(tmp_path / "other")) != record_names(str(tmp_path / "again"))
    assert sorted(record_names(str(tmp_path / "other"))) == sorted(record_names(str(tmp_path / "again")))
    assert other["num_images"] == again["num_images"]


def test_strict_fails_on_first_bad_file_and_leaves_nothing_behind(image_folder, tmp_path):
    output = str(tmp_path / "strict")
    with pytest.raises(UserInputError, match=r"a/img_0\.webp: duplicate name .*--strict"):
        build.build_pyramid(image_folder[0], output, RESOLUTION, strict=True, num_workers=0, progress=False)
    clean = tmp_path / "clean"
    clean.mkdir()
    shutil.copy(os.path.join(image_folder[0], "a", "img_1.png"), clean)
    shutil.copy(os.path.join(image_folder[0], "b", "corrupt.jpg"), clean)
    with pytest.raises(UserInputError, match=r"corrupt\.jpg: corrupt or unreadable"):
        build.build_pyramid(str(clean), output, RESOLUTION, strict=True, num_workers=0, progress=False)
    assert not os.path.exists(output) and not os.path.exists(output + ".partial")


def test_non_square_skip_policy(image_folder, tmp_path):
    manifest = build.build_pyramid(
        image_folder[0], str(tmp_path / "p"), RESOLUTION, non_square="skip", num_workers=0, progress=False
    )
    reasons = {problem["file"]: problem["reason"] for problem in manifest["problems"]}
    assert reasons["a/wide.png"] == "not square (40x32)"
    assert manifest["num_images"] == 10


@pytest.mark.parametrize(
    "source_kind, resolution, message",
    [
        ("missing", 32, r"source folder does not exist.*Received: source="),
        ("empty", 32, r"contains no images.*Received: source="),
        ("good", 100, r"power of two.*Received: resolution=100"),
        ("good", 2, r"Received: resolution=2"),
    ],
)
def test_clear_errors_for_bad_arguments(source_kind, resolution, message, tmp_path, image_folder):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    source = {"missing": str(tmp_path / "nope"), "empty": str(tmp_path / "empty"), "good": image_folder[0]}[source_kind]
    with pytest.raises(UserInputError, match=message):
        build.build_pyramid(source, str(tmp_path / "out"), resolution, num_workers=0, progress=False)


def test_refuses_to_overwrite_without_flag(folder_pyramid, image_folder):
    with pytest.raises(UserInputError, match="already exists.*--overwrite"):
        build.build_pyramid(image_folder[0], folder_pyramid[0], RESOLUTION, progress=False)


def test_cli_prints_one_error_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "datasets.build",
            "--source=synthetic",
            f"--output_dir={tmp_path / 'x'}",
            "--resolution=100",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error_lines == ["error: resolution must be a power of two between 4 and 1024. Received: resolution=100"]
    assert "Traceback" not in result.stderr


def test_synthetic_build_with_several_shards_round_trips_exactly(tmp_path):
    output = str(tmp_path / "synthetic")
    manifest = build.build_pyramid(
        "synthetic", output, 16, seed=5, num_images=24, shards_per_level=3, num_workers=0, progress=False
    )
    assert [len(level["shards"]) for level in manifest["levels"]] == [3, 3, 3]
    assert [shard["num_records"] for shard in manifest["levels"][0]["shards"]] == [8, 8, 8]
    full = read_level(output, 16)
    expected = np.stack([synthetic_image(i, 16, 5) for i in range(24)])
    np.testing.assert_array_equal(full, expected)
    for r in (4, 8):
        np.testing.assert_array_equal(read_level(output, r), np.stack([reference_pyramid(x)[r] for x in expected]))
    assert pyramid_check.verify_pyramid(output) == {"ok": True, "problems": [], "files_checked": 9, "leftovers": []}


def test_verify_reports_truncated_and_corrupted_shards_by_file(tmp_path):
    output = str(tmp_path / "p")
    build.build_pyramid("synthetic", output, 8, num_images=10, num_workers=0, progress=False)
    truncated, flipped = shard_path(output, 8), shard_path(output, 4)
    with open(truncated, "r+b") as handle:
        handle.truncate(os.path.getsize(truncated) - 10)
    with open(flipped, "r+b") as handle:
        handle.seek(12 + 5)  # inside record 0's pixels
        byte = handle.read(1)
        handle.seek(12 + 5)
        handle.write(bytes([byte[0] ^ 0xFF]))
    report = pyramid_check.verify_pyramid(output)
    assert not report["ok"]
    assert len(report["problems"]) == 2
    assert report["problems"][0].startswith(
        f"{os.path.basename(flipped)}: checksum mismatch (record 0 unreadable (DataLossError: corrupted record"
    )
    assert report["problems"][1] == (  # 10 * (8*8*3 + 16) bytes
        f"{os.path.basename(truncated)}: does not match the manifest (truncated or corrupt): 2070 bytes, expected 2080 "
        "for 10 records"
    )


def test_verify_of_incomplete_build_is_a_clear_error(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(UserInputError, match=r"no manifest\.json.*incomplete build"):
        pyramid_check.verify_pyramid(str(tmp_path / "half"))


def test_tfds_celeb_a_hq_from_manual_tar(tmp_path):
    rng = np.random.default_rng(3)
    manual_dir = tmp_path / "manual"
    manual_dir.mkdir()
    images = [random_rgb(rng, 8) for _ in range(5)]
    with tarfile.open(manual_dir / "data8x8.tar", "w") as tar:
        for index, pixels in enumerate(images):
            path = tmp_path / f"imgHQ{index:05d}.png"
            Image.fromarray(pixels).save(path)
            tar.add(path, arcname=path.name)
    output = str(tmp_path / "pyramid")
    manifest = build.build_pyramid(
        "tfds:celeb_a_hq/8",
        output,
        8,
        tfds_manual_dir=str(manual_dir),
        tfds_data_dir=str(tmp_path / "tfds"),
        num_workers=0,
        progress=False,
    )
    assert manifest["num_images"] == 5 and manifest["source"]["kind"] == "tfds"
    full, low = read_level(output, 8), read_level(output, 4)
    assert sorted(x.tobytes() for x in full) == sorted(x.tobytes() for x in images)
    for index in range(5):
        np.testing.assert_array_equal(low[index], reference_pyramid(full[index])[4])


def test_tfds_unprepared_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(UserInputError, match="not prepared.*nothing is downloaded"):
        build.build_pyramid(
            "tfds:celeb_a_hq/8", str(tmp_path / "p"), 8, tfds_data_dir=str(tmp_path / "tfds"), progress=False
        )


@pytest.mark.realdata
def test_real_celebahq_1024_build(shared_data, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    originals = sorted((shared_data / "celebahq1024").iterdir())
    chosen = [p for p in originals if p.suffix == ".png"][:1] + [p for p in originals if p.suffix == ".jpg"][:2]
    for path in chosen:
        shutil.copy(path, source)
    output = str(tmp_path / "celebahq")
    manifest = build.build_pyramid(str(source), output, 1024, num_workers=2, progress=False)
    assert manifest["resolutions"] == [4, 8, 16, 32, 64, 128, 256, 512, 1024]
    assert manifest["num_images"] == 3 and manifest["problems"] == []
    assert pyramid_check.verify_pyramid(output)["ok"]
    names = record_names(output)
    full = read_level(output, 1024)
    low = read_level(output, 16)
    for index, name in enumerate(names):
        with Image.open(source / name) as img:
            np.testing.assert_array_equal(full[index], np.asarray(img.convert("RGB")))
        np.testing.assert_array_equal(low[index], reference_pyramid(full[index])[16])
    with open(os.path.join(output, "manifest.json")) as handle:
        assert json.load(handle)["levels"][-1]["record_bytes"] == 1024 * 1024 * 3


def test_build_onto_another_tensorflow_filesystem_matches_a_local_build(tmp_path):
    """TF's in-memory ram:// filesystem stands in for gs:// (no folder renames: built in place)."""
    import tensorflow as tf

    digests = lambda m: [shard["sha256"] for level in m["levels"] for shard in level["shards"]]  # noqa: E731
    local = build.build_pyramid("synthetic", str(tmp_path / "p"), 8, num_images=10, num_workers=0, progress=False)
    remote = build.build_pyramid("synthetic", "ram://build/p", 8, num_images=10, num_workers=0, progress=False)
    assert digests(remote) == digests(local)
    again = build.build_pyramid(
        "synthetic", "ram://build/p", 8, num_images=10, seed=4, num_workers=0, progress=False, overwrite=True
    )
    assert pyramid_check.verify_pyramid("ram://build/p") == {
        "ok": True,
        "problems": [],
        "files_checked": 2,
        "leftovers": [],
    }
    assert sorted(tf.io.gfile.listdir("ram://build/p")) == sorted(
        [
            "manifest.json",
            again["record_names_file"],
            *(shard["file"] for level in again["levels"] for shard in level["shards"]),
        ]
    )


def float32_reference_pyramid(image):
    """The reference's math (PAPER_NOTES): float32 2x2 means of the unrounded level above, then rint/clip."""
    current, levels = image.astype(np.float32), [image]
    while current.shape[0] > 4:
        current = (current[0::2, 0::2] + current[0::2, 1::2] + current[1::2, 0::2] + current[1::2, 1::2]) * np.float32(
            0.25
        )
        levels.append(np.clip(np.rint(current), 0, 255).astype(np.uint8))
    return levels[::-1], current


def image_with_ties(rng, size, halvings):
    """Blocks of 2**halvings pixels whose mean is exactly q + 0.5 (q even and odd): rint's tie cases."""
    block, count, blocks = 1 << halvings, 1 << (2 * halvings), size >> halvings
    totals = (2 * rng.integers(0, 255, (blocks, blocks, 3)) + 1) * (count // 2)  # mean q + 0.5, q in [0, 254]
    values = totals[..., None] // count + (np.arange(count) < (totals % count)[..., None])
    values = rng.permuted(values, axis=-1).reshape(blocks, blocks, 3, block, block)
    return values.transpose(0, 3, 1, 4, 2).reshape(size, size, 3).astype(np.uint8)


def test_integer_pyramid_is_bit_identical_to_the_float32_reference_including_ties():
    from datasets.imaging import pyramid_levels

    rng = np.random.default_rng(0)
    images = [
        random_rgb(rng, 1024),
        np.full((1024, 1024, 3), 255, np.uint8),
        np.zeros((8, 8, 3), np.uint8),
        random_rgb(rng, 4),
    ]
    images += [image_with_ties(rng, 1024, halvings) for halvings in range(1, 9)]
    for image in images:
        expected, _ = float32_reference_pyramid(image)
        levels = pyramid_levels(image)
        assert [level.shape for level in levels] == [level.shape for level in expected]
        for level, reference in zip(levels, expected):
            np.testing.assert_array_equal(level, reference, err_msg=f"{image.shape} at {reference.shape[0]}")
    # The tie images did exercise rint's half-to-even rule at their level, both ways.
    for halvings in (1, 4, 8):
        image = image_with_ties(np.random.default_rng(halvings), 1024, halvings)
        blocks = 1024 >> halvings
        means = image.astype(np.float64).reshape(blocks, 1 << halvings, blocks, 1 << halvings, 3).mean(axis=(1, 3))
        assert np.all(means % 1 == 0.5)
        rounded = pyramid_levels(image)[-1 - halvings].astype(np.float64)
        assert np.all(rounded % 2 == 0) and np.any(rounded > means) and np.any(rounded < means)


def test_pack_pyramid_writes_the_reference_levels_into_a_worker_row_and_nothing_else():
    from datasets.imaging import level_spans, pack_pyramid

    rng = np.random.default_rng(3)
    for image in [random_rgb(rng, size) for size in (4, 8, 32, 256)] + [image_with_ties(rng, 1024, 2)]:
        expected, _ = float32_reference_pyramid(image)
        spans = level_spans(image.shape[0])
        packed_size = spans[-1][0] + spans[-1][1]
        # A row of the workers' shared block: other rows, and any bytes past the packed size, stay as they were.
        block = rng.integers(0, 256, (3, packed_size + 7), dtype=np.uint8)
        before = block.copy()
        row = block[1]
        assert pack_pyramid(image, row) is row
        np.testing.assert_array_equal(block[[0, 2]], before[[0, 2]])
        np.testing.assert_array_equal(block[1, packed_size:], before[1, packed_size:])
        np.testing.assert_array_equal(block[1, :packed_size], np.concatenate([level.ravel() for level in expected]))


_PAGE_FAULTS_PER_IMAGE = """
import resource, sys
import numpy as np
from datasets import imaging, parallel
if sys.argv[2] == "tuned":
    parallel.keep_freed_memory()
task = ("file", [("a", sys.argv[1])] * 2, 1024, "crop")
out = np.zeros((2, sum(size for _, size in imaging.level_spans(1024))), np.uint8)
imaging.load_chunk(task, out)  # the first image may fault its buffers in
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    imaging.load_chunk(task, out)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 6)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the tuning is glibc malloc's")
def test_builder_workers_reuse_one_images_memory_for_the_next(tmp_path):
    # A fresh process (as each builder worker is) without the tuning faults ~2000 pages back in per
    # 1024 px image; with it, none: the memory of one image serves the next.
    path = str(tmp_path / "image.png")
    Image.fromarray(random_rgb(np.random.default_rng(5), 1024)).save(path)
    faults = {}
    for mode in ("plain", "tuned"):
        completed = subprocess.run(
            [sys.executable, "-c", _PAGE_FAULTS_PER_IMAGE, path, mode],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        faults[mode] = float(completed.stdout)
    assert faults["tuned"] < 50, faults
    assert faults["plain"] > 10 * max(faults["tuned"], 10), faults
