"""Exact graph passes over an exported ONNX model, so ONNX Runtime runs it faster on the CPU.

Why: tf2onnx turns each inference-mode BatchNormalization that it cannot fold into a neighbouring
convolution into a per-channel `Mul` followed by a per-channel `Add`. DenseNet's batch norms are
pre-activation (BN -> ReLU -> Conv, on the concatenated features), so none fold: DenseNet201 has
102 such pairs. ONNX Runtime's CPU provider runs convolutions in a blocked channel layout (NCHWc);
an `Add` it cannot keep in that layout costs a reorder out of it and one back in, on every pair
(measured on DenseNet201 at 256 px, one image: 10.4 ms of reorders + 5.2 ms of `Add` out of
110 ms). `fuse_scale_shift` rewrites each pair as one depthwise 1x1 `Conv` with a bias, the same
arithmetic (`x * scale + shift`, one multiply and one add per element, so the result is the same to
float32 rounding), which stays in the blocked layout and fuses with the `Relu` after it.

Every pass here keeps the model's inputs, outputs and results; they are applied by
`galaxy_core.models.onnx_export` before the file is written, and `EXPORT_VERSION` (stored in the model's
metadata as `METADATA_KEY`) tells `galaxy_core.models.predictor` whether an existing file has them.

Example:
    >>> import onnx                                   # doctest: +SKIP
    >>> proto = onnx.load("runs/NAME/model.onnx")     # doctest: +SKIP
    >>> optimize(proto)                               # doctest: +SKIP
    {'fused_scale_shift': 102, 'dropped_initializers': 204}
"""

from __future__ import annotations

import numpy as np

# 1: tf2onnx output + the appended head. 2: + fuse_scale_shift.
EXPORT_VERSION = 2
METADATA_KEY = "galaxy_export_version"


def _initializers(graph) -> dict:
    return {init.name: init for init in graph.initializer}


def _constant_and_tensor(node, initializers: dict):
    """`(tensor input name, constant array)` of a binary node with one initializer input, else None."""
    from onnx import numpy_helper

    if len(node.input) != 2:
        return None
    first, second = node.input
    if (first in initializers) == (second in initializers):
        return None
    name, const = (second, first) if first in initializers else (first, second)
    return name, numpy_helper.to_array(initializers[const])


def _channels(shape_of: dict, name: str) -> int | None:
    """The channel count of a rank-4 NCHW tensor whose shape inference knows it, else None."""
    dims = shape_of.get(name)
    if dims is None or len(dims) != 4 or not dims[1].HasField("dim_value"):
        return None
    return int(dims[1].dim_value)


def _shapes(proto) -> dict:
    """Tensor name -> its `TensorShapeProto.dim` list, from ONNX shape inference."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto)
    graph = inferred.graph
    return {value.name: list(value.type.tensor_type.shape.dim)
            for value in (*graph.value_info, *graph.input, *graph.output)
            if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape")}


def fuse_scale_shift(proto) -> int:
    """Replace each per-channel `Mul` -> `Add` pair on an NCHW tensor by one depthwise 1x1 `Conv`.

    A pair qualifies when the `Mul` multiplies a rank-4 tensor with C channels by a float32
    initializer of shape `(1, C, 1, 1)`, its output feeds only an `Add` of a float32 initializer
    of the same shape, and it is not a graph output. The `Conv` has `group=C`, weight
    `scale.reshape(C, 1, 1, 1)` and bias `shift.reshape(C)`; it writes the `Add`'s output name, so
    nothing downstream changes. Modifies `proto` in place.

    Args:
        proto: an `onnx.ModelProto`.

    Returns:
        The number of pairs fused.

    Example:
        >>> fuse_scale_shift(proto)   # doctest: +SKIP  (DenseNet201 exported by tf2onnx)
        102
    """
    from onnx import helper, numpy_helper

    graph = proto.graph
    initializers = _initializers(graph)
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {value.name for value in graph.output}
    shape_of = None  # inferred only if some pair looks like a candidate
    replaced: dict[int, object] = {}  # id(Mul node) -> the Conv replacing it
    removed: set[int] = set()  # id(Add node)
    for node in graph.node:
        if node.op_type != "Mul" or node.domain not in ("", "ai.onnx"):
            continue
        mul = _constant_and_tensor(node, initializers)
        users = consumers.get(node.output[0], [])
        if mul is None or node.output[0] in outputs or len(users) != 1 or users[0].op_type != "Add":
            continue
        source, scale = mul
        add = _constant_and_tensor(users[0], initializers)
        if add is None or add[0] != node.output[0]:
            continue
        shift = add[1]
        if (scale.dtype != np.float32 or shift.dtype != np.float32 or scale.ndim != 4
                or scale.shape != shift.shape or scale.shape[0] != 1 or scale.shape[2:] != (1, 1)):
            continue
        if shape_of is None:
            shape_of = _shapes(proto)
        channels = scale.shape[1]
        if _channels(shape_of, source) != channels:
            continue
        base = f"scale_shift_{len(replaced)}"
        weight = numpy_helper.from_array(scale.reshape(channels, 1, 1, 1), f"{base}_weight")
        bias = numpy_helper.from_array(shift.reshape(channels), f"{base}_bias")
        graph.initializer.extend([weight, bias])
        replaced[id(node)] = helper.make_node(
            "Conv", [source, weight.name, bias.name], [users[0].output[0]], name=base,
            group=channels, kernel_shape=[1, 1])
        removed.add(id(users[0]))
    if replaced:
        nodes = [replaced.get(id(node), node) for node in graph.node if id(node) not in removed]
        del graph.node[:]
        graph.node.extend(nodes)
    return len(replaced)


def drop_unused_initializers(proto) -> int:
    """Remove initializers no node reads (and that are not graph outputs). Returns how many."""
    graph = proto.graph
    used = {name for node in graph.node for name in node.input} | {value.name for value in graph.output}
    keep = [init for init in graph.initializer if init.name in used]
    dropped = len(graph.initializer) - len(keep)
    if dropped:
        del graph.initializer[:]
        graph.initializer.extend(keep)
    return dropped


def version_from_metadata(metadata) -> int:
    """The export version in a model's metadata map (key -> value strings, as ONNX Runtime's
    `get_modelmeta().custom_metadata_map` gives it); 1 when absent: an export from before the passes."""
    value = metadata.get(METADATA_KEY, "1")
    return int(value) if value.isdigit() else 1


def export_version(proto) -> int:
    """The `EXPORT_VERSION` recorded in an `onnx.ModelProto`'s metadata (1 when absent)."""
    return version_from_metadata({prop.key: prop.value for prop in proto.metadata_props})


def optimize(proto) -> dict[str, int]:
    """Apply every pass (in place) and record `EXPORT_VERSION` in the metadata.

    Returns:
        What each pass changed, e.g. `{"fused_scale_shift": 102, "dropped_initializers": 204}`.
    """
    done = {"fused_scale_shift": fuse_scale_shift(proto),
            "dropped_initializers": drop_unused_initializers(proto)}
    for prop in list(proto.metadata_props):
        if prop.key == METADATA_KEY:
            proto.metadata_props.remove(prop)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, str(EXPORT_VERSION)
    return done


def upgrade_file(path, out=None) -> dict[str, int] | None:
    """Apply `optimize` to an ONNX file written by an older export (atomically, to `out` or in place).

    Args:
        path: an `.onnx` file written by `galaxy_core.models.onnx_export`.
        out: where to write the upgraded model (default: `path` itself).

    Returns:
        What `optimize` changed, or None when the file already has `EXPORT_VERSION` (nothing written).
    """
    import onnx

    from galaxy_core.io import atomic_path

    proto = onnx.load(str(path))
    if export_version(proto) >= EXPORT_VERSION:
        return None
    done = optimize(proto)
    with atomic_path(out if out is not None else path) as tmp:
        onnx.save_model(proto, str(tmp))
    return done
