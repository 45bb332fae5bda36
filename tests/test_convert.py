"""The importer of the authors' pickles: converted networks compute the authors' math exactly.

The pickles are built here (tests/official_format.py) in each format, with small widths and
every weight distinct; the expectations are an independent NumPy forward pass of the authors'
networks (NCHW, their layouts, their fused / unfused operations, their minibatch grouping).
"""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from progan_tf import checkpoint as ckpt_lib
from progan_tf.cli.train import train_config_from_flags
from progan_tf.config import NetworkConfig, ScheduleConfig, TrainConfig
from progan_tf.convert.imported_run import continue_imported_run, golden_latents, import_model
from progan_tf.convert.mapping import assign_networks, network_config
from progan_tf.convert.official import official_networks
from progan_tf.convert.unpickler import TF1PickledNetwork, load_network_pickle
from progan_tf.errors import UserInputError
from progan_tf.export import seeded_latents
from progan_tf.flags import FLAGS, define_flags
from progan_tf.networks import GrowingDiscriminator, GrowingGenerator
from tests import official_format as of
from tests.helpers_training import (
    REPO_ROOT,
    build_tiny_pyramid,
    main_command,
    run_checked,
    subprocess_env,
)

WIDTHS = of.Widths()  # 16x16, 3 channels, latent 24, nf(0..3) = 48, 32, 16, 8
LOD = 1.25  # saved mid-growth: 8x8, faded in with alpha 0.75
BATCH = 8


def _networks(fused, seed, stddev_input=True):
    rng = np.random.default_rng(seed)
    g = of.random_variables(of.generator_shapes(WIDTHS, fused), rng)
    d = of.random_variables(of.discriminator_shapes(WIDTHS, fused, stddev_input), rng)
    gs = {name: value + 0.1 * rng.standard_normal(value.shape).astype(np.float32) for name, value in g.items()}
    return g, d, gs


def _tf1_kwargs(fused):
    common = dict(
        num_channels=WIDTHS.num_channels,
        resolution=WIDTHS.resolution,
        label_size=0,
        fmap_base=WIDTHS.fmap_base,
        fmap_max=WIDTHS.fmap_max,
    )
    return dict(common, latent_size=WIDTHS.latent_size, fused_scale=fused), dict(common, fused_scale=fused)


FORMATS = {
    # name: (fused layout, minibatch-stddev group the pickle implies, critic mode we must pick)
    "tf1_fused": (True, 4, "always"),
    "tf1_unfused": (False, 4, "auto"),
    "theano": (False, 16, "auto"),
}


def write_pickle(path, name, lod=LOD, seed=0, networks=None):
    fused, _, _ = FORMATS[name]
    g, d, gs = networks or _networks(fused, seed)
    if name == "theano":
        of.write_theano_pickle(path, g, d, gs, lod, WIDTHS, np.random.default_rng(seed + 1))
    else:
        g_kwargs, d_kwargs = _tf1_kwargs(fused)
        of.write_tf1_pickle(path, g, d, gs, lod, g_kwargs, d_kwargs)
    return g, d, gs


def _nchw(x):
    return np.transpose(np.asarray(x), (0, 3, 1, 2))


def _nhwc(x):
    return np.transpose(x, (0, 2, 3, 1)).astype(np.float32)


@pytest.fixture(scope="module", params=sorted(FORMATS))
def converted(request, tmp_path_factory):
    name = request.param
    path = tmp_path_factory.mktemp(name) / "network-snapshot-000420.pkl"
    g, d, gs = write_pickle(path, name)
    official, notes = official_networks(load_network_pickle(path))
    model, train_config = import_model(official, run_dir=path.parent / "run", kimg=420)
    return name, model, train_config, (g, d, gs), notes


def _max_error(ours, reference):
    return float(np.max(np.abs(np.asarray(ours, np.float64) - reference)))


def test_converted_networks_equal_the_authors_math_at_every_stage(converted):
    name, model, config, (g, d, gs), notes = converted
    _, group, mode = FORMATS[name]
    assert notes == []
    assert (config.network.fused_resample, config.network.mbstd_group_size) == (mode, group)
    rng = np.random.default_rng(7)
    latents = rng.standard_normal((BATCH, WIDTHS.latent_size)).astype(np.float32)
    batch = 2 * group  # two minibatch-stddev groups: the grouping is checked too
    for resolution in (4, 8, 16):
        for network, variables in ((model.generator, g), (model.ema_generator, gs)):
            expected = of.generator_forward(variables, latents, resolution, 1.0, WIDTHS.resolution)
            ours = _nchw(network.model(resolution)(latents))
            assert _max_error(ours, expected) < 2e-5 * max(1.0, np.abs(expected).max()), (name, resolution)
        images = rng.uniform(-1, 1, (batch, WIDTHS.num_channels, resolution, resolution))
        expected = of.discriminator_forward(d, images, resolution, 1.0, WIDTHS.resolution, group)
        ours = model.discriminator.model(resolution)(_nhwc(images))
        assert _max_error(ours, expected) < 2e-5 * max(1.0, np.abs(expected).max()), (name, resolution)


def test_fractional_lod_is_the_stage_and_alpha_of_the_run(converted):
    name, model, config, (g, d, gs), _ = converted
    _, group, _ = FORMATS[name]
    # lod 1.25 at 16x16: 16 / 2**1 = 8x8, alpha 1 - 0.25, at the snapshot's 420 kimg.
    assert (model.phase.resolution, model.phase.kind, model.phase.alpha(420_000)) == (8, "fade_in", 0.75)
    assert (config.schedule.start_resolution, config.schedule.start_alpha, config.schedule.start_kimg) == (8, 0.75, 420)
    assert int(model.images_shown.numpy()) == 420_000
    rng = np.random.default_rng(8)
    latents = rng.standard_normal((BATCH, WIDTHS.latent_size)).astype(np.float32)
    expected = of.generator_forward(gs, latents, 8, 0.75, WIDTHS.resolution)
    assert _max_error(_nchw(model.gs_model(latents)), expected) < 2e-5 * max(1.0, np.abs(expected).max())
    expected = of.generator_forward(g, latents, 8, 0.75, WIDTHS.resolution)
    assert _max_error(_nchw(model.g_model(latents)), expected) < 2e-5 * max(1.0, np.abs(expected).max())
    images = rng.uniform(-1, 1, (2 * group, WIDTHS.num_channels, 8, 8))
    expected = of.discriminator_forward(d, images, 8, 0.75, WIDTHS.resolution, group)
    assert _max_error(model.d_model(_nhwc(images)), expected) < 2e-5 * max(1.0, np.abs(expected).max())


def test_same_critic_weights_in_our_always_and_auto_modes_are_the_tf1_and_paper_critics():
    # One set of D weights, stored once as TF1 fused (Conv1_down) and once as unfused (Conv1):
    # our "always" critic computes the TF1 conv -> pool -> bias -> LReLU, our default "auto"
    # critic the paper's conv -> bias -> LReLU -> pool, and the two differ.
    g, d, _ = _networks(fused=True, seed=3)
    unfused = {name.replace("Conv1_down", "Conv1"): value for name, value in d.items()}
    images = np.random.default_rng(4).uniform(-1, 1, (8, 3, 16, 16))
    scores = {}
    for variables, mode in ((d, "always"), (unfused, "auto")):
        official = _tf1_official(g, variables, g_kwargs={"latent_size": WIDTHS.latent_size})
        config = network_config(official)
        assert config.fused_resample == mode
        discriminator = GrowingDiscriminator(config).build_all()
        assign_networks(official, config, GrowingGenerator(config).build_all(), discriminator)
        expected = of.discriminator_forward(variables, images, 16, 1.0, 16, 4)
        scores[mode] = np.asarray(discriminator.model(16)(_nhwc(images)))
        assert _max_error(scores[mode], expected) < 2e-5 * max(1.0, np.abs(expected).max()), mode
    assert np.max(np.abs(scores["always"] - scores["auto"])) > 1e-2


def _tf1_official(g, d, lod=0.0, g_kwargs=(), d_kwargs=(), func=("G_paper", "D_paper"), widths=WIDTHS):
    def holder(build_func, variables, kwargs):
        network = TF1PickledNetwork()
        kwargs = {"fmap_base": widths.fmap_base, "fmap_max": widths.fmap_max, **dict(kwargs)}
        network.__setstate__(of.tf1_state(build_func, variables, lod, kwargs))
        return network

    return official_networks(
        (holder(func[0], g, g_kwargs), holder(func[1], d, d_kwargs), holder(func[0], g, g_kwargs))
    )[0]


def test_paper_width_1024_networks_convert_with_the_paper_parameter_counts():
    paper = of.Widths(resolution=1024, latent_size=512, fmap_base=8192, fmap_max=512)
    g_shapes, d_shapes = of.generator_shapes(paper, fused=False), of.discriminator_shapes(paper, fused=False)
    # Each variable holds its own constant, to see where it lands.
    g = {name: np.full(shape, index, np.float32) for index, (name, shape) in enumerate(g_shapes)}
    d = {name: np.full(shape, -index, np.float32) for index, (name, shape) in enumerate(d_shapes)}
    assert sum(v.size for v in g.values()) == 23_079_115 and sum(v.size for v in d.values()) == 23_087_249
    official = _tf1_official(
        g,
        d,
        g_kwargs={"num_channels": 3, "resolution": 1024},
        d_kwargs={"num_channels": 3, "resolution": 1024, "mbstd_group_size": 16},
        widths=paper,
    )
    config = network_config(official)
    assert (
        config.resolution,
        config.latent_size,
        config.fmap_base,
        config.fused_resample,
        config.mbstd_group_size,
    ) == (1024, 512, 8192, "auto", 16)
    generator, discriminator = GrowingGenerator(config).build_all(), GrowingDiscriminator(config).build_all()
    assign_networks(official, config, generator, discriminator)
    assert generator.count_params() == 23_079_115 and discriminator.count_params() == 23_087_249
    g_layers, d_layers = generator.layers_by_name(), discriminator.layers_by_name()
    index = {name: i for i, (name, _) in enumerate(g_shapes)}
    for tf1_name, ours, attribute in (
        ("ToRGB_lod0/weight", "g_to_rgb_1024x1024", "kernel"),
        ("ToRGB_lod8/bias", "g_to_rgb_4x4", "bias"),
        ("4x4/Dense/bias", "g_4x4_dense_bias", "bias"),
        ("1024x1024/Conv0/weight", "g_1024x1024_conv0_up", "kernel"),
    ):
        assert np.all(np.asarray(getattr(g_layers[ours], attribute)) == index[tf1_name]), tf1_name
    index = {name: -i for i, (name, _) in enumerate(d_shapes)}
    for tf1_name, ours, attribute in (
        ("FromRGB_lod0/weight", "d_from_rgb_1024x1024", "kernel"),
        ("1024x1024/Conv1/weight", "d_1024x1024_conv1", "kernel"),
        ("4x4/Dense1/bias", "d_4x4_dense1", "bias"),
    ):
        assert np.all(np.asarray(getattr(d_layers[ours], attribute)) == index[tf1_name]), tf1_name


def test_critic_without_minibatch_stddev_input_converts_exactly():
    # mbstd_group_size <= 1: the authors' critic has no stddev map (4x4/Conv takes nf(1) inputs).
    small = of.Widths(resolution=8)
    rng = np.random.default_rng(5)
    g = of.random_variables(of.generator_shapes(small, fused=False), rng)
    d = of.random_variables(of.discriminator_shapes(small, fused=False, stddev_input=False), rng)
    official = _tf1_official(g, d, d_kwargs={"mbstd_group_size": 0}, widths=small)
    config = network_config(official)
    assert config.mbstd_group_size == 1
    discriminator = GrowingDiscriminator(config).build_all()
    assign_networks(official, config, GrowingGenerator(config).build_all(), discriminator)
    images = rng.uniform(-1, 1, (4, 3, 8, 8))
    expected = of.discriminator_forward(d, images, 8, 1.0, 8, 1)
    assert _max_error(discriminator.model(8)(_nhwc(images)), expected) < 1e-4


def _small_tf1(fused=False, stddev=True):
    small = of.Widths(resolution=8)
    rng = np.random.default_rng(6)
    return (
        of.random_variables(of.generator_shapes(small, fused), rng),
        of.random_variables(of.discriminator_shapes(small, fused, stddev), rng),
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda g, d, k: k[0].update(label_size=10), "label_size=10, which cannot be converted: conditional"),
        (lambda g, d, k: k[1].update(use_wscale=False), "use_wscale=False, which cannot be converted"),
        (lambda g, d, k: k[0].update(use_pixelnorm=False), "use_pixelnorm=False"),
        (lambda g, d, k: g.update({"8x8/Extra/weight": np.zeros(3, np.float32)}), "does not have: 8x8/Extra/weight"),
        (lambda g, d, k: g.pop("8x8/Conv1/bias"), "has no variable 8x8/Conv1/bias"),
        (
            lambda g, d, k: d.update({"4x4/Dense0/weight": np.zeros((5, 48), np.float32)}),
            r"4x4/Dense0/weight has shape \(5, 48\), expected \(512, 48\)",
        ),
        (lambda g, d, k: k[0].update(fmap_base=128), "G and D have different fmap_base"),
        (lambda g, d, k: k[0].update(latent_size=99), "latent_size=99 but its weights are those of latent_size=24"),
        (lambda g, d, k: g.update({"8x8/Conv1/bias": np.full(16, np.nan, np.float32)}), "non-finite"),
    ],
)
def test_unconvertible_networks_are_one_clear_line(change, message):
    g, d = _small_tf1()
    kwargs = ({}, {})
    change(g, d, kwargs)
    with pytest.raises(UserInputError, match=message) as caught:
        official = _tf1_official(g, d, g_kwargs=kwargs[0], d_kwargs=kwargs[1], widths=of.Widths(resolution=8))
        config = network_config(official)
        assign_networks(
            official, config, GrowingGenerator(config).build_all(), GrowingDiscriminator(config).build_all()
        )
    assert "\n" not in str(caught.value) and "Received:" in str(caught.value)


def test_unknown_build_function_and_bad_lod_are_refused():
    g, d = _small_tf1()
    with pytest.raises(UserInputError, match="built by 'G_mystery'; only the ProGAN networks"):
        _tf1_official(g, d, func=("G_mystery", "D_paper"), widths=of.Widths(resolution=8))
    with pytest.raises(UserInputError, match="lod must be in \\[0, 1\\] for a 8x8 network. Received: lod=1.5"):
        _tf1_official(g, d, lod=1.5, widths=of.Widths(resolution=8)).stage()


def test_theano_parameter_count_must_be_a_layout(tmp_path):
    g, d, gs = _networks(False, seed=9)
    path = of.write_theano_pickle(tmp_path / "t.pkl", g, d, gs, 0.0, WIDTHS, np.random.default_rng(0))
    pickled = load_network_pickle(path)
    pickled[1].state["param_values"] = pickled[1].state["param_values"][:-3]
    with pytest.raises(UserInputError, match="D holds 27 parameter arrays, which is no D_paper layout"):
        official_networks(pickled)


class _RunsACommand:
    def __init__(self, function, marker):
        self.function, self.marker = function, marker

    def __reduce__(self):
        if self.function == "system":
            return os.system, (f"touch {self.marker}",)
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("function, global_name", [("system", "posix.system"), ("exec", "builtins.exec")])
def test_a_pickle_naming_another_global_is_refused_and_nothing_runs(tmp_path, function, global_name):
    marker = tmp_path / "it-ran"
    g, d, gs = _networks(False, seed=10)
    g["4x4/Conv/bias"] = _RunsACommand(function, marker)  # hidden among the variables
    with of.authors_modules() as classes:
        networks = []
        for func, variables in (("G_paper", g), ("D_paper", d), ("G_paper", gs)):
            network = classes["tfutil"]()
            network.pickled_state = of.tf1_state(func, variables, 0.0, {})
            networks.append(network)
        (tmp_path / "evil.pkl").write_bytes(pickle.dumps(tuple(networks), protocol=4))
    with pytest.raises(UserInputError, match=f"refers to the global {global_name}, which an official") as caught:
        load_network_pickle(tmp_path / "evil.pkl")
    assert "nothing in the file was run" in str(caught.value) and "\n" not in str(caught.value)
    assert not marker.exists()
    # The same bytes through pickle.load would have run the command: the test's pickle is real.
    with of.authors_modules():
        pickle.loads((tmp_path / "evil.pkl").read_bytes())
    assert marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a readable network pickle"),
        (pickle.dumps({"G": 1}), "does not hold the tuple \\(G, D, Gs\\)"),
        (b"\x80\x04garbage", "not a readable network pickle"),
    ],
)
def test_corrupt_pickles_are_one_clear_line(tmp_path, content, message):
    path = tmp_path / "bad.pkl"
    path.write_bytes(content)
    with pytest.raises(UserInputError, match=message):
        load_network_pickle(path)


def test_golden_latents_are_the_authors_rows():
    rows = np.random.RandomState(1000).randn(1000, 512)
    np.testing.assert_array_equal(golden_latents(512)[0], rows[477].astype(np.float32))
    np.testing.assert_array_equal(golden_latents(512)[9], rows[415].astype(np.float32))
    assert golden_latents(16).shape == (10, 16)


def _parse(*args):
    FLAGS.unparse_flags()
    FLAGS(["main.py", *args])
    return FLAGS


def test_fine_tuning_flags_keep_the_imported_networks_and_start(tmp_path):
    define_flags()
    run_dir = tmp_path / "imported"
    run_dir.mkdir()
    network = NetworkConfig(
        resolution=16, latent_size=24, fmap_base=64, fmap_max=48, fused_resample="always", mbstd_group_size=16
    )
    schedule = ScheduleConfig(final_resolution=16, start_resolution=8, start_kimg=420, start_alpha=0.75)
    (run_dir / "config.json").write_text(TrainConfig("", str(run_dir), network, schedule).to_json())
    (run_dir / "imported.json").write_text("{}")
    try:
        _parse("--data_dir=d", f"--run_dir={run_dir}", "--transition_kimg=100", "--batch_size=16")
        config = train_config_from_flags(FLAGS)
        assert config.network == network
        assert (config.schedule.start_resolution, config.schedule.start_alpha, config.schedule.start_kimg) == (
            8,
            0.75,
            420,
        )
        assert config.schedule.final_resolution == 16 and config.schedule.transition_kimg == 100
        _parse("--data_dir=d", f"--run_dir={run_dir}", "--fused_resample=auto", "--mbstd_group_size=4")
        chosen = train_config_from_flags(FLAGS).network
        assert (chosen.fused_resample, chosen.mbstd_group_size) == ("auto", 4)
        for args, message in (
            (["--resolution=32"], "continues imported networks with resolution=16; drop --resolution"),
            (["--total_kimg=400"], "start at kimg 420; --total_kimg must be larger"),
            (["--resume=none"], "holds imported networks; --resume=none"),
            (["--batch_size=24"], "group size 16"),
        ):
            _parse("--data_dir=d", f"--run_dir={run_dir}", *args)
            with pytest.raises(UserInputError, match=message):
                train_config_from_flags(FLAGS)
        # Outside an imported run nothing changes.
        _parse("--data_dir=d", f"--run_dir={tmp_path / 'fresh'}")
        assert train_config_from_flags(FLAGS).network == NetworkConfig()
    finally:
        FLAGS.unparse_flags()
    assert continue_imported_run(tmp_path / "fresh", network, schedule, lambda name: False) == (network, schedule)


def _read_png(path):
    from PIL import Image

    with Image.open(path) as image:
        array = np.asarray(image)
    return array[..., None] if array.ndim == 2 else array


def _uint8(nchw):
    return np.clip(np.rint(np.transpose(nchw, (0, 2, 3, 1)) * 127.5 + 127.5), 0, 255).astype(np.uint8)


def _assert_images_match(ours, expected):
    # Float rounding may flip a value sitting on a .5 boundary; nothing more.
    difference = np.abs(ours.astype(int) - expected.astype(int))
    assert difference.max() <= 1 and np.mean(difference == 0) > 0.99


@pytest.mark.slow
def test_import_generate_evaluate_fine_tune_export_end_to_end(tmp_path):
    env = subprocess_env()
    pyramid = build_tiny_pyramid(tmp_path / "pyramid", resolution=16, num_images=64)
    pickle_path = tmp_path / "network-final.pkl"
    # TF1 fused, saved half way into the 16x16 fade (lod 0.5); image count unknown. Small output
    # biases keep the images off the clipping limits (a constant channel has no SWD).
    g, d, gs = _networks(True, seed=11)
    for variables in (g, gs):
        for name in [n for n in variables if n.startswith("ToRGB") and n.endswith("/bias")]:
            variables[name] = 0.1 * variables[name]
    write_pickle(pickle_path, "tf1_fused", lod=0.5, networks=(g, d, gs))
    run_dir = tmp_path / "run"
    result = run_checked(
        [sys.executable, "-m", "progan_tf.convert", f"--pickle={pickle_path}", f"--output_dir={run_dir}"], env=env
    )
    assert "stage: lod 0.5 = 16x16, alpha 0.5; kimg unknown" in result.stdout
    record = json.loads((run_dir / "imported.json").read_text())
    assert (record["format"], record["network"]["fused_resample"], record["kimg"]) == ("tf1", "always", None)
    golden = np.stack([_read_png(run_dir / "golden" / f"img{i}.png") for i in range(10)])
    _assert_images_match(golden, _uint8(of.generator_forward(gs, golden_latents(24), 16, 0.5, 16)))
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "checkpoint",
        "ckpt-0.data-00000-of-00001",
        "ckpt-0.index",
    ]

    generated = tmp_path / "generated"
    run_checked(
        main_command(
            "--mode=generate",
            f"--run_dir={run_dir}",
            f"--output_dir={generated}",
            "--num_images=4",
            "--generate_seed=3",
        ),
        env=env,
    )
    latents = seeded_latents(3, 4, 24).numpy()
    expected = _uint8(of.generator_forward(gs, latents, 16, 0.5, 16))
    _assert_images_match(np.stack([_read_png(generated / f"image-{i:04d}.png") for i in range(4)]), expected)

    run_checked(
        main_command(
            "--mode=evaluate", f"--run_dir={run_dir}", f"--real_dir={pyramid}", "--metrics=swd", "--num_images=32"
        ),
        env=env,
    )
    metrics = json.loads((run_dir / "metrics-kimg000000.000.json").read_text())
    assert metrics["resolution"] == 16 and metrics["metrics"]["swd_avg"] > 0

    # Fine-tune: the rest of the 16x16 fade (alpha 0.5 -> 1 over 32 images of a 64-image fade),
    # with the learning rate ramped up over the first 64 images.
    run_checked(
        main_command(
            f"--run_dir={run_dir}",
            f"--data_dir={pyramid}",
            "--transition_kimg=0.064",
            "--lr_rampup_kimg=0.064",
            "--total_kimg=0.032",
            "--batch_size=8",
            "--tick_kimg=0.032",
            "--sample_kimg=0",
            "--checkpoint_kimg=0",
            "--grid_size=4",
        ),
        env=env,
    )
    log = (run_dir / "log.txt").read_text()
    assert "phase 0: 16x16 fade_in kimg -0.032-0.032, batch 8" in log
    ticks = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines() if '"tick"' in line]
    assert [(t["kimg"], t["resolution"], t["phase"]) for t in ticks] == [(0.032, 16, "fade_in")]
    assert ticks[0]["alpha"] == pytest.approx(np.mean([0.5, 0.625, 0.75, 0.875]))
    prefix = run_dir / "checkpoints" / "ckpt-32"
    meta = ckpt_lib.load_checkpoint(prefix).meta
    reader = tf.train.load_checkpoint(str(prefix))
    optimizers = [f"optimizers/{name}" for name in ("g_optimizer", "d_optimizer")]
    iterations = [int(reader.get_tensor(f"{o}/_iterations/.ATTRIBUTES/VARIABLE_VALUE")) for o in optimizers]
    learning_rates = [float(reader.get_tensor(f"{o}/_learning_rate/.ATTRIBUTES/VARIABLE_VALUE")) for o in optimizers]
    assert (meta["phase_index"], meta["phase_begin_images"]) == (0, 0)
    assert iterations == [4, 4]  # 4 steps from fresh optimizers
    # The last step (after 24 images) ran at 0.001 * exp(-5 (1 - 24 / 64)^2).
    last_rate = 0.001 * np.exp(-5 * (1 - 24 / 64) ** 2)
    assert ticks[0]["learning_rate"] == pytest.approx(last_rate)
    assert learning_rates == pytest.approx([last_rate] * 2, rel=1e-6)

    exported = tmp_path / "exported"
    run_checked(main_command("--mode=export", f"--run_dir={run_dir}", f"--output_dir={exported}"), env=env)
    loaded = tf.saved_model.load(str(exported))
    served = loaded.serve(tf.constant(latents))
    assert served.shape == (4, 16, 16, 3) and served.dtype == tf.uint8
    # Fine-tuning moved the weights away from the imported ones.
    assert np.abs(served.numpy().astype(int) - expected.astype(int)).max() > 1


def test_convert_command_prints_one_error_line_for_a_bad_pickle(tmp_path):
    marker = tmp_path / "it-ran"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(_RunsACommand("system", marker), protocol=4))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "progan_tf.convert",
            f"--pickle={tmp_path / 'evil.pkl'}",
            f"--output_dir={tmp_path / 'out'}",
        ],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "posix.system" in errors[0], result.stderr[-2000:]
    assert not marker.exists() and not (tmp_path / "out").exists()
