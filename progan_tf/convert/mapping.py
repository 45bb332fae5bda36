"""The authors' TF1 variables onto our layers: which name goes where, and each layout conversion.

Our networks are NHWC; the authors' are NCHW. Conv kernels are `[kh, kw, in, out]` in both and
copy as they are; the reshapes between dense layers and 4x4 feature maps flatten (C, H, W) there
and (H, W, C) here; the fused up-conv's kernel is stored for a transposed convolution. The table
in BUILD.md lists every row of `generator_layers` / `discriminator_layers`.
"""

import dataclasses

import numpy as np

from progan_tf.convert.official import THEANO_MBSTD_GROUP_SIZE, final_resolution
from progan_tf.errors import UserInputError
from progan_tf.networks import NetworkConfig
from progan_tf.resolutions import resolution_log2


def copy(array):
    return array


def dense_columns_chw_to_hwc(array):
    """G `4x4/Dense` `[latent, C*4*4]`: columns from (C, H, W) to our reshape's (H, W, C) order."""
    latent, width = array.shape
    return array.reshape(latent, width // 16, 4, 4).transpose(0, 2, 3, 1).reshape(latent, width)


def dense_rows_chw_to_hwc(array):
    """D `4x4/Dense0` `[C*4*4, out]`: rows from (C, H, W) to our flatten's (H, W, C) order."""
    rows, out = array.shape
    return array.reshape(rows // 16, 4, 4, out).transpose(1, 2, 0, 3).reshape(rows, out)


def fused_up_kernel(array):
    """`Conv0_up` `[3, 3, out, in]` (a transposed conv's kernel) -> our upsample + conv `[3, 3, in, out]`.

    A stride-2 transposed convolution with the summed 4x4 kernel equals nearest upsampling followed
    by the convolution with this kernel with its channel axes swapped and flipped in both spatial
    axes (our layer flips it back when it fuses).
    """
    return array.transpose(0, 1, 3, 2)[::-1, ::-1]


def append_zero_stddev_input(array):
    """D `4x4/Conv` without a minibatch-stddev input (group size <= 1): a zero row for our constant map."""
    zeros = np.zeros(array.shape[:2] + (1,) + array.shape[3:], array.dtype)
    return np.concatenate([array, zeros], axis=2)


# Their array's shape, given our variable's shape, for each conversion.
_THEIR_SHAPE = {
    copy: lambda shape: shape,
    dense_columns_chw_to_hwc: lambda shape: shape,
    dense_rows_chw_to_hwc: lambda shape: shape,
    fused_up_kernel: lambda shape: shape[:2] + (shape[3], shape[2]),
    append_zero_stddev_input: lambda shape: shape[:2] + (shape[2] - 1, shape[3]),
}


@dataclasses.dataclass(frozen=True)
class LayerMap:
    """The TF1 scope `scope` (its `/weight` and `/bias`) and the layers of ours that take them."""

    scope: str
    layer: str
    convert: object = copy
    bias_layer: str = None


def _block(res):
    return f"{res}x{res}"


def generator_layers(config, variables):
    """`LayerMap`s of a generator; `variables` (TF1 names) tell fused `Conv0_up` from `Conv0`."""
    layers = [
        LayerMap("4x4/Dense", "g_4x4_dense", dense_columns_chw_to_hwc, bias_layer="g_4x4_dense_bias"),
        LayerMap("4x4/Conv", "g_4x4_conv1"),
    ]
    for res in config.resolutions[1:]:
        ours = f"g_{_block(res)}_conv0" + ("_up" if config.fuses_upsample(res) else "")
        if f"{_block(res)}/Conv0_up/weight" in variables:
            layers.append(LayerMap(f"{_block(res)}/Conv0_up", ours, fused_up_kernel))
        else:
            layers.append(LayerMap(f"{_block(res)}/Conv0", ours))
        layers.append(LayerMap(f"{_block(res)}/Conv1", f"g_{_block(res)}_conv1"))
    final_log2 = config.resolution_log2
    for res in config.resolutions:
        layers.append(LayerMap(f"ToRGB_lod{final_log2 - resolution_log2(res)}", f"g_to_rgb_{_block(res)}"))
    return layers


def discriminator_layers(config, variables):
    """`LayerMap`s of a critic (its fused `Conv1_down` or unfused `Conv1` blocks must match `config`)."""
    final_log2 = config.resolution_log2
    layers = [
        LayerMap(f"FromRGB_lod{final_log2 - resolution_log2(res)}", f"d_from_rgb_{_block(res)}")
        for res in config.resolutions
    ]
    for res in config.resolutions[1:]:
        layers.append(LayerMap(f"{_block(res)}/Conv0", f"d_{_block(res)}_conv0"))
        if config.fuses_downsample(res):
            layers.append(LayerMap(f"{_block(res)}/Conv1_down", f"d_{_block(res)}_conv1_down"))
        else:
            layers.append(LayerMap(f"{_block(res)}/Conv1", f"d_{_block(res)}_conv1"))
    conv = variables.get("4x4/Conv/weight")
    has_stddev_input = conv is None or conv.shape[2] == config.num_features(1) + 1
    layers += [
        LayerMap("4x4/Conv", "d_4x4_conv", copy if has_stddev_input else append_zero_stddev_input),
        LayerMap("4x4/Dense0", "d_4x4_dense0", dense_rows_chw_to_hwc),
        LayerMap("4x4/Dense1", "d_4x4_dense1"),
    ]
    return layers


def _critic_fuses(discriminator, final):
    blocks = [_block(2**r) for r in range(3, resolution_log2(final) + 1)]
    fused = [f"{block}/Conv1_down/weight" in discriminator.variables for block in blocks]
    if any(fused) and not all(fused):
        raise UserInputError(
            "D fuses conv + pool in some blocks and not in others; our critic fuses all blocks or none. "
            f"Received: fused_blocks={[b for b, f in zip(blocks, fused) if f]}"
        )
    return bool(fused) and all(fused)


def _shape_of(network, name):
    if name not in network.variables:
        raise UserInputError(
            f"{network.role} has no variable {name}. Received: variables={sorted(network.variables)[:8]}"
        )
    return network.variables[name].shape


def network_config(official):
    """The `NetworkConfig` of our networks that compute what the pickle's networks compute.

    Resolution, channels and latent size come from the weights (a keyword argument present must
    agree); widths and the rest from the keyword arguments or their documented defaults; the
    critic's fused mode from its variable names (`Conv1_down`: "always", the TF1 critic).
    """
    g, d = official.generator, official.discriminator
    final = final_resolution(g)
    d_lods = [int(name[len("FromRGB_lod") :].split("/")[0]) for name in d.variables if name.startswith("FromRGB_lod")]
    if not d_lods or 2 ** (max(d_lods) + 2) != final:
        raise UserInputError(
            f"G is a {final}x{final} network but D's FromRGB layers are not. Received: D FromRGB lods={sorted(d_lods)}"
        )
    measured = {
        "resolution": final,
        "num_channels": int(_shape_of(g, "ToRGB_lod0/weight")[-1]),
        "latent_size": int(_shape_of(g, "4x4/Dense/weight")[0]),
    }
    for network in official.networks:
        for name, value in measured.items():
            stated = network.kwargs.get(name)
            if stated is not None and not (name == "latent_size" and network.role == "D") and stated != value:
                raise UserInputError(
                    f"{network.role} says {name}={stated} but its weights are those of {name}={value}. "
                    f"Received: {name}={stated}"
                )
    widths = {}
    for name in ("fmap_base", "fmap_decay", "fmap_max"):
        widths[name] = g.kwarg(name)
        if d.kwarg(name) != widths[name]:
            raise UserInputError(
                f"G and D have different {name} ({widths[name]} and {d.kwarg(name)}); our networks share one. "
                f"Received: {name}={d.kwarg(name)}"
            )
    if official.source_format == "theano":
        group_size = d.kwargs.get("mbstd_group_size", THEANO_MBSTD_GROUP_SIZE)
    else:
        group_size = d.kwarg("mbstd_group_size")
    config = NetworkConfig(
        resolution=final,
        num_channels=measured["num_channels"],
        latent_size=measured["latent_size"],
        fmap_base=int(widths["fmap_base"]),
        fmap_decay=float(widths["fmap_decay"]),
        fmap_max=int(widths["fmap_max"]),
        fused_resample="always" if _critic_fuses(d, final) else "auto",
        mbstd_group_size=max(1, int(group_size)),
        normalize_latents=bool(g.kwarg("normalize_latents")),
    )
    if _shape_of(d, "4x4/Conv/weight")[2] == config.num_features(1):
        # No stddev input (the authors skip the layer for groups <= 1): our group of 1 appends a
        # constant map, which the zero row of `append_zero_stddev_input` ignores.
        config = dataclasses.replace(config, mbstd_group_size=1)
    return config


def assign_weights(network, official_network, layer_maps, weights_are_runtime):
    """Copies every variable of `official_network` into `network` (a built growing network).

    Every variable of the pickle must land in exactly one of ours and every one of ours must be
    filled; anything else is a UserInputError naming the variable.
    """
    ours = network.layers_by_name()
    remaining = dict(official_network.variables)
    filled = set()
    role = official_network.role
    for layer_map in layer_maps:
        targets = (
            ("weight", ours[layer_map.layer], "kernel", layer_map.convert),
            ("bias", ours[layer_map.bias_layer or layer_map.layer], "bias", copy),
        )
        for suffix, layer, attribute, convert in targets:
            name = f"{layer_map.scope}/{suffix}"
            if name not in remaining:
                raise UserInputError(
                    f"{role} has no variable {name}, which a {network.config.resolution}x{network.config.resolution} "
                    f"{official_network.build_func} network has. Received: variables={sorted(remaining)[:8]}"
                )
            value = remaining.pop(name)
            variable = getattr(layer, attribute)
            expected = _THEIR_SHAPE[convert](tuple(variable.shape))
            if tuple(value.shape) != expected:
                raise UserInputError(
                    f"{role} variable {name} has shape {tuple(value.shape)}, expected {expected} for the widths "
                    f"{_widths(network.config)}. Received: shape={tuple(value.shape)}"
                )
            converted = convert(value)
            if attribute == "kernel" and weights_are_runtime:
                converted = converted / layer.scale
            elif attribute == "kernel":
                # Equal run-time weights: theirs * gain / sqrt(their fan-in) = ours * gain / sqrt(our
                # fan-in). The fan-ins differ only where a zero stddev row was appended.
                converted = converted * np.sqrt(int(np.prod(variable.shape[:-1])) / _tf1_fan_in(name, value.shape))
            value = converted
            variable.assign(np.ascontiguousarray(value, dtype=np.float32))
            filled.add(id(variable))
    if remaining:
        raise UserInputError(
            f"{role} holds variables a {official_network.build_func} network of these widths does not have: "
            f"{', '.join(sorted(remaining)[:6])}. Received: variable={sorted(remaining)[0]}"
        )
    unfilled = [w.path for w in network.trainable_weights if id(w) not in filled]
    if unfilled:  # a gap in the tables above, not a user error
        raise AssertionError(f"no pickle variable maps to {unfilled}")


def _tf1_fan_in(name, shape):
    """The authors' fan-in: all dims but the last; for the fused up-conv `[3, 3, out, in]`, 9 * in."""
    if "Conv0_up" in name:
        return shape[0] * shape[1] * shape[3]
    return int(np.prod(shape[:-1]))


def _widths(config):
    return f"fmap_base={config.fmap_base}, fmap_decay={config.fmap_decay:g}, fmap_max={config.fmap_max}"


def assign_networks(official, config, generator, discriminator, ema_generator=None):
    """Fills our built G, D (and Gs) from `official` (an `OfficialNetworks`) for `config`."""
    pairs = [(generator, official.generator), (discriminator, official.discriminator)]
    if ema_generator is not None:
        pairs.append((ema_generator, official.ema_generator))
    for network, official_network in pairs:
        tables = discriminator_layers if official_network.role == "D" else generator_layers
        assign_weights(
            network, official_network, tables(config, official_network.variables), official.weights_are_runtime
        )
