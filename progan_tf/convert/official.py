"""The authors' networks as plain data: TF1 variable names, TF1 layouts, keyword arguments, lod.

Both pickle formats end up as one `OfficialNetworks`: per network the build function, its keyword
arguments (with the documented defaults filled in) and `{TF1 variable name: array}` in the TF1
layout (conv kernels `[kh, kw, in, out]`, dense `[in, out]`, activations NCHW). TF1 weights are
stored in the equalized-learning-rate convention (N(0, 1) parameters, scaled at run time); the
Theano format stores run-time weights (`weight * wscale`), which `weights_are_runtime` marks.
Facts: ../shared/OFFICIAL_PICKLE.md, summarised in BUILD.md.
"""

import dataclasses
import math

import numpy as np

from progan_tf.errors import UserInputError
from progan_tf.resolutions import resolution_log2

TF1_BUILD_FUNCS = {"G": ("G_paper",), "D": ("D_paper",), "Gs": ("G_paper",)}
THEANO_BUILD_FUNCS = {
    "G": ("G_paper", "G_progressive_8"),
    "D": ("D_paper", "D_progressive_8"),
    "Gs": ("G_paper", "G_progressive_8"),
}

# Defaults of the authors' network functions for keywords a pickle omits (OFFICIAL_PICKLE.md).
# Resolution, channels and latent size are read from the weights instead (a keyword present must
# agree with them).
_COMMON_DEFAULTS = dict(label_size=0, fmap_base=8192, fmap_decay=1.0, fmap_max=512, use_wscale=True)
GENERATOR_DEFAULTS = dict(
    _COMMON_DEFAULTS,
    normalize_latents=True,
    use_pixelnorm=True,
    pixelnorm_epsilon=1e-8,
    use_leakyrelu=True,
    fused_scale=True,
)
DISCRIMINATOR_DEFAULTS = dict(_COMMON_DEFAULTS, mbstd_group_size=4, fused_scale=True)
THEANO_MBSTD_GROUP_SIZE = 16

# Keywords whose other values change the networks' function in ways our networks do not have.
_REQUIRED_VALUES = {
    "label_size": 0,
    "use_wscale": True,
    "use_pixelnorm": True,
    "use_leakyrelu": True,
    "pixelnorm_epsilon": 1e-8,
    "tanh_at_end": None,
    "use_batchnorm": False,
    "use_layernorm": False,
    "mbdisc_kernels": None,
    "mbstat_avg": "all",
    "mbstd_num_features": 1,
}
_REQUIRED_REASONS = {
    "label_size": "conditional (labelled) networks are not supported yet",
    "use_wscale": "our layers always use the equalized learning rate",
    "use_pixelnorm": "our generator always uses pixel norm",
    "use_leakyrelu": "our networks use leaky ReLU",
    "pixelnorm_epsilon": "our pixel norm uses 1e-8",
    "tanh_at_end": "our generator's output is linear",
    "use_batchnorm": "our networks have no batch norm",
    "use_layernorm": "our networks have no layer norm",
    "mbdisc_kernels": "our critic has no minibatch discrimination",
    "mbstat_avg": "our minibatch stddev averages over all features",
    "mbstd_num_features": "our minibatch stddev appends one feature map",
}
# Keywords that do not change what a network computes in inference.
_IGNORED_KEYWORDS = {
    "num_channels",
    "resolution",
    "latent_size",
    "fmap_base",
    "fmap_decay",
    "fmap_max",
    "normalize_latents",
    "fused_scale",
    "mbstd_group_size",
    "dtype",
    "structure",
    "is_template_graph",
    "use_gdrop",
    "gdrop_param",
}


@dataclasses.dataclass
class OfficialNetwork:
    """One of G, D, Gs.

    Attributes:
        role: "G", "D" or "Gs".
        build_func: The authors' network function (e.g. "G_paper").
        kwargs: Its keyword arguments as stored (no defaults filled in).
        variables: {TF1 variable name: float32 array in the TF1 layout}, without `lod`.
        lod: The network's level of detail (0: full resolution).
    """

    role: str
    build_func: str
    kwargs: dict
    variables: dict
    lod: float

    def kwarg(self, name):
        defaults = DISCRIMINATOR_DEFAULTS if self.role == "D" else GENERATOR_DEFAULTS
        return self.kwargs.get(name, defaults.get(name))


@dataclasses.dataclass
class OfficialNetworks:
    """The (G, D, Gs) of one pickle.

    Attributes:
        source_format: "tf1" or "theano".
        generator, discriminator, ema_generator: `OfficialNetwork`s.
        weights_are_runtime: True when `variables` hold run-time weights (Theano) rather than the
            N(0, 1) parameters of the equalized learning rate (TF1).
    """

    source_format: str
    generator: OfficialNetwork
    discriminator: OfficialNetwork
    ema_generator: OfficialNetwork
    weights_are_runtime: bool

    @property
    def networks(self):
        return (self.generator, self.discriminator, self.ema_generator)

    def stage(self):
        """(resolution, alpha) of the networks' lod: `final / 2**floor(lod)`, `1 - frac(lod)`."""
        return stage_of_lod(self.generator.lod, final_resolution(self.generator))


def final_resolution(generator):
    """The generator's output resolution, from its ToRGB layers (ToRGB_lod0 .. ToRGB_lod{L-2})."""
    lods = [int(name[len("ToRGB_lod") :].split("/")[0]) for name in generator.variables if name.startswith("ToRGB_lod")]
    if not lods:
        raise UserInputError(
            f"{generator.role} has no ToRGB_lod* variables. Received: variables={sorted(generator.variables)[:8]}"
        )
    resolution = 2 ** (max(lods) + 2)
    resolution_log2(resolution, name=f"{generator.role} resolution")
    return resolution


def stage_of_lod(lod, final):
    """The (resolution, alpha) a network at level of detail `lod` computes.

    lod 0 is `final`; lod 2.25 at 1024 is 256x256 faded in with alpha 0.75 over 128x128.
    """
    levels = resolution_log2(final) - 2
    if not (math.isfinite(lod) and -1e-6 <= lod <= levels + 1e-6):
        raise UserInputError(f"lod must be in [0, {levels}] for a {final}x{final} network. Received: lod={lod}")
    if abs(lod - round(lod)) < 1e-6:
        lod = float(round(lod))
    whole = math.floor(lod)
    return final // 2**whole, 1.0 - (lod - whole)


def _scalar(value, what):
    try:
        array = np.asarray(value, dtype=np.float64)
        if array.size != 1:
            raise ValueError(f"shape {array.shape}")
        return float(array.reshape(()))
    except (TypeError, ValueError) as error:
        raise UserInputError(f"{what} must be a number. Received: {what}={value!r} ({error})") from None


def _float_array(value, what):
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
        raise UserInputError(f"{what} must be a numeric array. Received: {type(value).__name__}")
    if not np.all(np.isfinite(value)):
        raise UserInputError(f"{what} holds non-finite values (a corrupt pickle?). Received: {what}")
    return value.astype(np.float32, copy=False)


def _check_kwargs(network):
    for name, required in _REQUIRED_VALUES.items():
        if name not in network.kwargs:
            continue
        value = network.kwargs[name]
        agrees = (not value) if required in (None, False) else (value == required)
        if not agrees:
            raise UserInputError(
                f"{network.role} was built with {name}={value!r}, which cannot be converted: "
                f"{_REQUIRED_REASONS[name]}. Received: {name}={value!r}"
            )
    return sorted(set(network.kwargs) - set(_REQUIRED_VALUES) - _IGNORED_KEYWORDS)


def _json_ready(value):
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _tf1_network(role, state):
    missing = [key for key in ("build_func_name", "static_kwargs", "variables") if key not in state]
    if missing:
        raise UserInputError(
            f"{role} lacks {', '.join(missing)} (not a tfutil.Network state). Received: keys={sorted(state)}"
        )
    func = state["build_func_name"]
    if func not in TF1_BUILD_FUNCS[role]:
        raise UserInputError(
            f"{role} was built by {func!r}; only the ProGAN networks {TF1_BUILD_FUNCS[role]} can be converted. "
            f"Received: build_func_name={func!r}"
        )
    kwargs = state["static_kwargs"]
    if not isinstance(kwargs, dict):
        raise UserInputError(f"{role}'s static_kwargs must be a dict. Received: {type(kwargs).__name__}")
    variables = {}
    for entry in state["variables"]:
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str)):
            raise UserInputError(f"{role}'s variables must be (name, array) pairs. Received: {type(entry).__name__}")
        name, value = entry
        if name in variables:
            raise UserInputError(f"{role} holds the variable {name} twice. Received: variable={name}")
        variables[name] = value
    if "lod" not in variables:
        raise UserInputError(
            f"{role} has no lod variable (not a ProGAN network?). Received: variables={sorted(variables)[:8]}"
        )
    lod = _scalar(variables.pop("lod"), f"{role} lod")
    arrays = {name: _float_array(value, f"{role} variable {name}") for name, value in variables.items()}
    return OfficialNetwork(role, func, _json_ready(dict(kwargs)), arrays, lod)


# Theano layers in `param_values` order, and their conversion to the TF1 layout.
def _theano_conv(a):
    return a.transpose(2, 3, 1, 0)[::-1, ::-1]


def _theano_rgb(a):
    return a[None, None]


def _theano_generator_dense(a):
    b = a.transpose(1, 0, 2, 3)
    return b.reshape(b.shape[0], -1)


def _theano_critic_dense0(a):
    b = a[:, :, ::-1, ::-1]
    return b.reshape(b.shape[0], -1).T


def _theano_as_is(a):
    return a


_THEANO_NDIM = {_theano_conv: 4, _theano_rgb: 2, _theano_generator_dense: 4, _theano_critic_dense0: 4, _theano_as_is: 2}


def theano_layer_order(role, log2):
    """[(TF1 scope, conversion)] of a Theano network's layers in `param_values` order."""
    if role in ("G", "Gs"):
        layers = [("4x4/Dense", _theano_generator_dense), ("4x4/Conv", _theano_conv)]
        for r in range(3, log2 + 1):
            layers += [(f"{2**r}x{2**r}/Conv0", _theano_conv), (f"{2**r}x{2**r}/Conv1", _theano_conv)]
        layers += [(f"ToRGB_lod{k}", _theano_rgb) for k in range(log2 - 1)]
        return layers
    layers = [("FromRGB_lod0", _theano_rgb)]
    for r in range(log2, 2, -1):
        layers += [
            (f"{2**r}x{2**r}/Conv0", _theano_conv),
            (f"{2**r}x{2**r}/Conv1", _theano_conv),
            (f"FromRGB_lod{log2 - (r - 1)}", _theano_rgb),
        ]
    layers += [("4x4/Conv", _theano_conv), ("4x4/Dense0", _theano_critic_dense0), ("4x4/Dense1", _theano_as_is)]
    return layers


def _theano_network(role, state):
    missing = [key for key in ("build_func_spec", "param_values") if key not in state]
    if missing:
        raise UserInputError(
            f"{role} lacks {', '.join(missing)} (not a network.Network state). Received: keys={sorted(state)}"
        )
    spec = state["build_func_spec"]
    if not isinstance(spec, dict) or "func" not in spec:
        raise UserInputError(f"{role}'s build_func_spec must be a dict with 'func'. Received: {spec!r:.200}")
    func = spec["func"]
    if func not in THEANO_BUILD_FUNCS[role]:
        raise UserInputError(
            f"{role} was built by {func!r}; only the ProGAN networks {THEANO_BUILD_FUNCS[role]} can be converted. "
            f"Received: func={func!r}"
        )
    kwargs = _json_ready({k: v for k, v in spec.items() if k != "func"})
    if not kwargs.get("use_wscale", True):
        raise UserInputError(
            f"{role} was built with use_wscale=False, which cannot be converted: our layers always use the "
            f"equalized learning rate. Received: use_wscale=False"
        )
    params = list(state["param_values"])
    per_layer = 3  # weight, wscale, bias
    # G: 2 + 2(L-2) + (L-1) = 3L - 3 layers; D: 1 + 3(L-2) + 3 = 3L - 2 layers.
    log2, remainder = divmod(len(params) // per_layer + (2 if role == "D" else 3), 3)
    if len(params) % per_layer or remainder or not 2 <= log2 <= 10:
        raise UserInputError(
            f"{role} holds {len(params)} parameter arrays, which is no {func} layout (weight, wscale, bias per "
            f"layer). Received: num_param_values={len(params)}"
        )
    if "resolution" in kwargs and kwargs["resolution"] != 2**log2:
        raise UserInputError(
            f"{role} says resolution={kwargs['resolution']} but holds the layers of a {2**log2}x{2**log2} network. "
            f"Received: resolution={kwargs['resolution']}"
        )
    variables = {}
    for index, (scope, conversion) in enumerate(theano_layer_order(role, log2)):
        weight, wscale, bias = params[per_layer * index : per_layer * (index + 1)]
        weight = _float_array(weight, f"{role} {scope} weight").astype(np.float64)
        if weight.ndim != _THEANO_NDIM[conversion]:
            raise UserInputError(
                f"{role} parameter #{per_layer * index} ({scope} weight) has shape {weight.shape}; expected a "
                f"{_THEANO_NDIM[conversion]}-D array. Received: shape={weight.shape}"
            )
        runtime = conversion(weight) * _scalar(wscale, f"{role} {scope} wscale")
        variables[f"{scope}/weight"] = np.ascontiguousarray(runtime, dtype=np.float32)
        variables[f"{scope}/bias"] = _float_array(bias, f"{role} {scope} bias")
    toplevel = state.get("toplevel_params") or {}
    lod = _scalar(toplevel.get("cur_lod", 0.0), f"{role} cur_lod")
    return OfficialNetwork(role, func, kwargs, variables, lod)


def official_networks(pickled):
    """Parses the three `PickledNetwork`s of `unpickler.load_network_pickle` into `OfficialNetworks`.

    Returns:
        (OfficialNetworks, notes): notes are lines about keywords that were ignored.
    """
    source_format = pickled[0].source_format
    parse = _tf1_network if source_format == "tf1" else _theano_network
    networks = [parse(role, item.state) for role, item in zip(("G", "D", "Gs"), pickled)]
    notes = []
    for network in networks:
        unknown = _check_kwargs(network)
        if unknown:
            notes.append(
                f"{network.role}: ignored keyword arguments {', '.join(unknown)} (not known to change the network)"
            )
    g, d, gs = networks
    if not (abs(g.lod - d.lod) < 1e-6 and abs(g.lod - gs.lod) < 1e-6):
        notes.append(f"G, D and Gs were saved at lods {g.lod:g}, {d.lod:g}, {gs.lod:g}; all are set to G's")
    result = OfficialNetworks(source_format, g, d, gs, weights_are_runtime=source_format == "theano")
    return result, notes
