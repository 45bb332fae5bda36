"""Pickles in the authors' formats, and the authors' forward pass in NumPy, for the importer's tests.

Everything here is written from ../shared/OFFICIAL_PICKLE.md (no real pickle exists here): the
TF1 variable table, the Theano `param_values` order and layouts, and the networks' math in NCHW
with the authors' layouts and their fused / unfused operations. It shares no code with
`progan_tf.convert`; the pickles come from objects of classes registered as `tfutil.Network` and
`network.Network`, so they name exactly the globals the real files name.

One correction to the table: `4x4/Dense0` has `nf(0)` outputs in the authors' code (`nf(res - 2)`
at res = 2), not `nf(1)`; the two are equal at the paper's widths.
"""

import contextlib
import dataclasses
import math
import pickle
import sys
import types

import numpy as np

SQRT2 = math.sqrt(2.0)


@dataclasses.dataclass(frozen=True)
class Widths:
    resolution: int = 16
    num_channels: int = 3
    latent_size: int = 24
    fmap_base: int = 64
    fmap_decay: float = 1.0
    fmap_max: int = 48

    @property
    def log2(self):
        return int(round(math.log2(self.resolution)))

    def nf(self, stage):
        return min(int(self.fmap_base / 2.0 ** (stage * self.fmap_decay)), self.fmap_max)


def _block(r):
    return f"{2**r}x{2**r}"


def generator_shapes(w, fused):
    """[(name, shape)] of G_paper's variables (without lod), as in the table."""
    shapes = [
        ("4x4/Dense/weight", (w.latent_size, 16 * w.nf(1))),
        ("4x4/Dense/bias", (w.nf(1),)),
        ("4x4/Conv/weight", (3, 3, w.nf(1), w.nf(1))),
        ("4x4/Conv/bias", (w.nf(1),)),
    ]
    for r in range(3, w.log2 + 1):
        if fused:
            shapes.append((f"{_block(r)}/Conv0_up/weight", (3, 3, w.nf(r - 1), w.nf(r - 2))))
            shapes.append((f"{_block(r)}/Conv0_up/bias", (w.nf(r - 1),)))
        else:
            shapes.append((f"{_block(r)}/Conv0/weight", (3, 3, w.nf(r - 2), w.nf(r - 1))))
            shapes.append((f"{_block(r)}/Conv0/bias", (w.nf(r - 1),)))
        shapes.append((f"{_block(r)}/Conv1/weight", (3, 3, w.nf(r - 1), w.nf(r - 1))))
        shapes.append((f"{_block(r)}/Conv1/bias", (w.nf(r - 1),)))
    for r in range(2, w.log2 + 1):
        shapes.append((f"ToRGB_lod{w.log2 - r}/weight", (1, 1, w.nf(r - 1), w.num_channels)))
        shapes.append((f"ToRGB_lod{w.log2 - r}/bias", (w.num_channels,)))
    return shapes


def discriminator_shapes(w, fused, stddev_input=True):
    """[(name, shape)] of D_paper's variables (without lod)."""
    shapes = []
    for r in range(w.log2, 1, -1):
        shapes.append((f"FromRGB_lod{w.log2 - r}/weight", (1, 1, w.num_channels, w.nf(r - 1))))
        shapes.append((f"FromRGB_lod{w.log2 - r}/bias", (w.nf(r - 1),)))
    for r in range(w.log2, 2, -1):
        shapes.append((f"{_block(r)}/Conv0/weight", (3, 3, w.nf(r - 1), w.nf(r - 1))))
        shapes.append((f"{_block(r)}/Conv0/bias", (w.nf(r - 1),)))
        conv1 = "Conv1_down" if fused else "Conv1"
        shapes.append((f"{_block(r)}/{conv1}/weight", (3, 3, w.nf(r - 1), w.nf(r - 2))))
        shapes.append((f"{_block(r)}/{conv1}/bias", (w.nf(r - 2),)))
    shapes += [
        ("4x4/Conv/weight", (3, 3, w.nf(1) + int(stddev_input), w.nf(1))),
        ("4x4/Conv/bias", (w.nf(1),)),
        ("4x4/Dense0/weight", (16 * w.nf(1), w.nf(0))),
        ("4x4/Dense0/bias", (w.nf(0),)),
        ("4x4/Dense1/weight", (w.nf(0), 1)),
        ("4x4/Dense1/bias", (1,)),
    ]
    return shapes


def random_variables(shapes, rng):
    """{name: float32 N(0, 1) array}: every weight and bias distinct."""
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes}


# ---------------------------------------------------------------------------------------------
# The authors' math (NCHW), from the stored (TF1-convention) variables.


def gain_of(name):
    if name.startswith("ToRGB") or name.startswith("4x4/Dense1"):
        return 1.0
    if name == "4x4/Dense/weight":
        return SQRT2 / 4
    return SQRT2


def runtime(variables, name):
    """The run-time weight `w * gain / sqrt(fan_in)` (fan_in: all dims but the last; fused up: 9 * in)."""
    w = variables[name].astype(np.float64)
    fan_in = 9 * w.shape[3] if "Conv0_up" in name else int(np.prod(w.shape[:-1]))
    return w * gain_of(name) / math.sqrt(fan_in)


def lrelu(x):
    return np.where(x >= 0, x, 0.2 * x)


def pixel_norm(x):
    return x / np.sqrt(np.mean(x * x, axis=1, keepdims=True) + 1e-8)


def conv2d(x, w):
    """Stride-1 SAME cross-correlation, x NCHW, w [kh, kw, in, out]."""
    k = w.shape[0]
    pad = k // 2
    height, width = x.shape[2:]
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((x.shape[0], w.shape[3], height, width))
    for a in range(k):
        for b in range(k):
            out += np.einsum("nihw,io->nohw", padded[:, :, a : a + height, b : b + width], w[a, b])
    return out


def upscale2d(x):
    return x.repeat(2, axis=2).repeat(2, axis=3)


def downscale2d(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))


def summed_shifts(w):
    """A 3x3 kernel zero-padded to 5x5, its four 1-pixel shifts summed: 4x4."""
    p = np.pad(w, ((1, 1), (1, 1), (0, 0), (0, 0)))
    return p[1:, 1:] + p[:-1, 1:] + p[1:, :-1] + p[:-1, :-1]


def conv2d_transpose_stride2_same(x, k):
    """TF's conv2d_transpose, stride 2, SAME, 4x4 kernel `[4, 4, out, in]`: the adjoint of the
    stride-2 SAME conv (padding 1 before), i.e. input pixel i, tap a lands on output 2i + a - 1."""
    n, _, h, w = x.shape
    canvas = np.zeros((n, k.shape[2], 2 * h + 2, 2 * w + 2))
    for a in range(4):
        for b in range(4):
            canvas[:, :, a : a + 2 * h : 2, b : b + 2 * w : 2] += np.einsum("nihw,oi->nohw", x, k[a, b])
    return canvas[:, :, 1 : 2 * h + 1, 1 : 2 * w + 1]


def conv2d_stride2_same(x, k):
    """TF's stride-2 SAME conv with a 4x4 kernel `[4, 4, in, out]` (padding 1 on each side)."""
    _, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((x.shape[0], k.shape[3], h // 2, w // 2))
    for a in range(4):
        for b in range(4):
            out += np.einsum("nihw,io->nohw", padded[:, :, a : a + h : 2, b : b + w : 2], k[a, b])
    return out


def minibatch_stddev(x, group_size):
    """One extra map: stddev over groups of strided samples (i in group i mod N/G), float32."""
    n = x.shape[0]
    group = min(group_size, n)
    y = x.astype(np.float32).reshape(group, n // group, *x.shape[1:])
    std = np.sqrt(np.mean((y - y.mean(axis=0)) ** 2, axis=0) + 1e-8)
    per_group = std.mean(axis=(1, 2, 3))
    feature = np.tile(per_group, group)[:, None, None, None] * np.ones((1, 1) + x.shape[2:])
    return np.concatenate([x, feature], axis=1)


def _bias(variables, scope):
    return variables[f"{scope}/bias"].astype(np.float64)[None, :, None, None]


def generator_forward(variables, latents, resolution, alpha, final, normalize_latents=True):
    """G_paper's output (N, C, R, R) at `resolution`, faded in with `alpha` over resolution / 2."""
    log2_final = int(round(math.log2(final)))
    x = latents.astype(np.float64)
    if normalize_latents:
        x = pixel_norm(x)
    nf1 = variables["4x4/Dense/bias"].shape[0]
    x = (x @ runtime(variables, "4x4/Dense/weight")).reshape(len(x), nf1, 4, 4) + _bias(variables, "4x4/Dense")
    x = pixel_norm(lrelu(x))
    x = pixel_norm(lrelu(conv2d(x, runtime(variables, "4x4/Conv/weight")) + _bias(variables, "4x4/Conv")))

    def to_rgb(h, r):
        scope = f"ToRGB_lod{log2_final - r}"
        return conv2d(h, runtime(variables, f"{scope}/weight")) + _bias(variables, scope)

    features = {2: x}
    for r in range(3, int(round(math.log2(resolution))) + 1):
        block = _block(r)
        if f"{block}/Conv0_up/weight" in variables:
            kernel = summed_shifts(runtime(variables, f"{block}/Conv0_up/weight"))
            x = conv2d_transpose_stride2_same(x, kernel) + _bias(variables, f"{block}/Conv0_up")
        else:
            x = conv2d(upscale2d(x), runtime(variables, f"{block}/Conv0/weight")) + _bias(variables, f"{block}/Conv0")
        x = pixel_norm(lrelu(x))
        x = pixel_norm(
            lrelu(conv2d(x, runtime(variables, f"{block}/Conv1/weight")) + _bias(variables, f"{block}/Conv1"))
        )
        features[r] = x
    r = int(round(math.log2(resolution)))
    images = to_rgb(features[r], r)
    if alpha < 1.0:
        old = upscale2d(to_rgb(features[r - 1], r - 1))
        images = old + (images - old) * alpha
    return images


def discriminator_forward(variables, images, resolution, alpha, final, group_size):
    """D_paper's scores (N, 1) of NCHW images at `resolution`, faded in with `alpha`."""
    log2_final = int(round(math.log2(final)))

    def from_rgb(x, r):
        scope = f"FromRGB_lod{log2_final - r}"
        return lrelu(conv2d(x, runtime(variables, f"{scope}/weight")) + _bias(variables, scope))

    def block(x, r):
        name = _block(r)
        x = lrelu(conv2d(x, runtime(variables, f"{name}/Conv0/weight")) + _bias(variables, f"{name}/Conv0"))
        if f"{name}/Conv1_down/weight" in variables:
            kernel = summed_shifts(runtime(variables, f"{name}/Conv1_down/weight")) * 0.25
            return lrelu(conv2d_stride2_same(x, kernel) + _bias(variables, f"{name}/Conv1_down"))
        return downscale2d(
            lrelu(conv2d(x, runtime(variables, f"{name}/Conv1/weight")) + _bias(variables, f"{name}/Conv1"))
        )

    images = images.astype(np.float64)
    r = int(round(math.log2(resolution)))
    x = from_rgb(images, r)
    if r > 2:
        x = block(x, r)
        if alpha < 1.0:
            old = from_rgb(downscale2d(images), r - 1)
            x = old + (x - old) * alpha
        for lower in range(r - 1, 2, -1):
            x = block(x, lower)
    nf1 = variables["4x4/Conv/weight"].shape[3]
    if variables["4x4/Conv/weight"].shape[2] == nf1 + 1:
        x = minibatch_stddev(x, group_size)
    x = lrelu(conv2d(x, runtime(variables, "4x4/Conv/weight")) + _bias(variables, "4x4/Conv"))
    x = lrelu(x.reshape(len(x), -1) @ runtime(variables, "4x4/Dense0/weight") + variables["4x4/Dense0/bias"])
    return x @ runtime(variables, "4x4/Dense1/weight") + variables["4x4/Dense1/bias"]


# ---------------------------------------------------------------------------------------------
# Pickles.


@contextlib.contextmanager
def authors_modules():
    """Registers modules `tfutil` and `network` with a class `Network` each, as the authors' code
    has, whose instances pickle the dict in `.pickled_state`; yields {module name: class}."""
    classes = {}
    for module_name in ("tfutil", "network"):
        module = types.ModuleType(module_name)
        cls = type("Network", (), {"__module__": module_name, "__getstate__": lambda self: self.pickled_state})
        module.Network = cls
        classes[module_name] = cls
        sys.modules[module_name] = module
    try:
        yield classes
    finally:
        for module_name in classes:
            sys.modules.pop(module_name, None)


def _instance(cls, state):
    network = cls()
    network.pickled_state = state
    return network


def tf1_state(build_func, variables, lod, static_kwargs):
    listed = [("lod", np.array(lod, np.float32))] + list(variables.items())
    return {
        "version": 2,
        "name": build_func[0],
        "static_kwargs": static_kwargs,
        "build_module_src": "raise RuntimeError('the importer must never run this')\n",
        "build_func_name": build_func,
        "variables": listed,
    }


def write_tf1_pickle(path, g_vars, d_vars, gs_vars, lod, g_kwargs, d_kwargs, protocol=4):
    with authors_modules() as classes:
        networks = tuple(
            _instance(classes["tfutil"], tf1_state(func, variables, lod, kwargs))
            for func, variables, kwargs in (
                ("G_paper", g_vars, g_kwargs),
                ("D_paper", d_vars, d_kwargs),
                ("G_paper", gs_vars, g_kwargs),
            )
        )
        with open(path, "wb") as handle:
            pickle.dump(networks, handle, protocol=protocol)
    return path


# The Theano layouts: the inverses of the documented conversions to TF1.
def theano_conv(tf1):
    return np.ascontiguousarray(tf1[::-1, ::-1].transpose(3, 2, 0, 1))


def theano_rgb(tf1):
    return np.ascontiguousarray(tf1[0, 0])


def theano_generator_dense(tf1, nf1):
    return np.ascontiguousarray(tf1.reshape(tf1.shape[0], nf1, 4, 4).transpose(1, 0, 2, 3))


def theano_critic_dense0(tf1, nf1):
    return np.ascontiguousarray(tf1.T.reshape(tf1.shape[1], nf1, 4, 4)[:, :, ::-1, ::-1])


def theano_param_values(role, variables, w, rng):
    """`param_values` of a Theano network whose run-time weights are those of `variables`:
    per layer the Theano-layout weight, a random `wscale` and the bias, in the fixed order."""
    if role == "G":
        order = [("4x4/Dense", lambda a: theano_generator_dense(a, w.nf(1))), ("4x4/Conv", theano_conv)]
        for r in range(3, w.log2 + 1):
            order += [(f"{_block(r)}/Conv0", theano_conv), (f"{_block(r)}/Conv1", theano_conv)]
        order += [(f"ToRGB_lod{k}", theano_rgb) for k in range(w.log2 - 1)]
    else:
        order = [("FromRGB_lod0", theano_rgb)]
        for r in range(w.log2, 2, -1):
            order += [
                (f"{_block(r)}/Conv0", theano_conv),
                (f"{_block(r)}/Conv1", theano_conv),
                (f"FromRGB_lod{w.log2 - (r - 1)}", theano_rgb),
            ]
        order += [
            ("4x4/Conv", theano_conv),
            ("4x4/Dense0", lambda a: theano_critic_dense0(a, w.nf(1))),
            ("4x4/Dense1", lambda a: a),
        ]
    assert len(order) * 2 == len(variables)
    params = []
    for scope, to_theano in order:
        wscale = np.float32(rng.uniform(0.02, 0.2))
        params += [
            to_theano(runtime(variables, f"{scope}/weight") / wscale).astype(np.float32),
            wscale,
            variables[f"{scope}/bias"],
        ]
    return params


def write_theano_pickle(path, g_vars, d_vars, gs_vars, lod, w, rng, protocol=2):
    kwargs = dict(
        resolution=w.resolution,
        num_channels=w.num_channels,
        latent_size=w.latent_size,
        fmap_base=w.fmap_base,
        fmap_decay=w.fmap_decay,
        fmap_max=w.fmap_max,
        use_wscale=True,
    )
    with authors_modules() as classes:
        networks = tuple(
            _instance(
                classes["network"],
                {
                    "build_func_spec": dict(func=func, **kwargs),
                    "param_values": theano_param_values(role, variables, w, rng),
                    "toplevel_params": {"cur_lod": np.float32(lod)},
                },
            )
            for role, func, variables in (("G", "G_paper", g_vars), ("D", "D_paper", d_vars), ("G", "G_paper", gs_vars))
        )
        with open(path, "wb") as handle:
            pickle.dump(networks, handle, protocol=protocol)
    return path
