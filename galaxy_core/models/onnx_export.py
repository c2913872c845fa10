"""Export a run's Keras model to ONNX (`model.onnx`), for fast classification with ONNX Runtime.

The converter is `tf2onnx` (what Keras 3's `model.export(format="onnx")` uses on TensorFlow), with
two measured problems worked around:

- Memory. tf2onnx freezes the weights into TensorFlow graph protos and rewrites every constant on
  each optimizer pass; with upb protobuf arenas the old copies are never freed. DenseNet201 at
  256 px with the Flatten head (a 503 MB Dense kernel) took more than 22 GB and was killed. So the
  classifier head (the chain of Flatten / GlobalAveragePooling2D / Dense / Dropout layers at the
  end of the model) is NOT sent through tf2onnx: only the backbone is (about 2.7 GB peak for
  DenseNet201), and the head is appended as plain ONNX nodes (Flatten or ReduceMean, MatMul, Add,
  Relu, Softmax) with the Keras weights as initializers. tf2onnx's per-pass graph deep copies are
  switched off (`TF2ONNX_CATCH_ERRORS=FALSE`) and each node proto is rebuilt fresh per pass.
- Isolation. `export_model_file` runs the conversion in a child process (`python -m
  galaxy_core.models.onnx_export MODEL.keras OUT.onnx`), so its memory is returned when it ends and a
  failure (even an out-of-memory kill) only means "no ONNX file": callers fall back to Keras.

Before the file is written, `galaxy_core.models.onnx_passes.optimize` rewrites the graph into a form
ONNX Runtime runs faster, with the same results (each batch norm left as `Mul` + `Add` becomes one
depthwise `Conv`), and records `onnx_passes.EXPORT_VERSION` in the model's metadata.

Each file records the SHA-256 of the `model.keras` it came from and the input shape (in its metadata
and a sidecar with its own SHA-256, `galaxy_core.models.fingerprint`): the predictor uses it for that
model only. Files are written atomically (`galaxy_core.io.atomic_path`). Where the ONNX file of a bundle lives
(beside it, or in a cache folder when the runs folder is read-only) is decided by
`galaxy_core.models.predictor`.

ONNX model contract: input "image" float32 `(N, S, S, 3)` in [0, 1] (the Keras model's input),
output "probs" float32 `(N, num_classes)` (softmax), opset `OPSET`.

Example (command line):
    python -m galaxy_core.models.onnx_export runs/NAME/model.keras runs/NAME/model.onnx
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from galaxy_core.errors import ModelError
from galaxy_core.models.fingerprint import file_sha256, seal, stamp
from galaxy_core.models.onnx_passes import optimize
from galaxy_core.tf_quiet import quiet_env, quiet_tf_logs

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "probs"
EXPORT_TIMEOUT_S = 1800
# Layers appended as plain ONNX nodes (the classifier head); everything before goes through tf2onnx.
HEAD_LAYER_TYPES = ("Flatten", "GlobalAveragePooling2D", "Dense", "Dropout")
DENSE_ACTIVATIONS = ("linear", "relu", "softmax")


class OnnxExportError(ModelError):
    """The Keras model could not be exported to ONNX (missing exporter, unsupported layer, ...)."""


def split_head(model) -> tuple[object, list]:
    """Split a Keras model into its backbone output tensor and the head layers after it.

    The head is the longest chain of single-input `HEAD_LAYER_TYPES` layers (Dense only with a
    linear, relu or softmax activation) ending at the model's output.

    Returns:
        `(features, head_layers)`: the Keras tensor the head starts from and the head layers in
        call order. `head_layers` is empty (and `features` is the output) when the model does not
        end with such layers.
    """
    import keras

    head: list = []
    tensor = model.outputs[0]
    while True:
        layer = tensor._keras_history.operation
        if not isinstance(layer, keras.layers.Layer) or type(layer).__name__ not in HEAD_LAYER_TYPES:
            break
        if isinstance(layer, keras.layers.Dense) and _activation_name(layer) not in DENSE_ACTIVATIONS:
            break
        inbound = layer._inbound_nodes
        if len(inbound) != 1 or len(inbound[0].input_tensors) != 1:
            break
        head.insert(0, layer)
        tensor = inbound[0].input_tensors[0]
    return tensor, head


def _activation_name(layer) -> str:
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", str(activation))


def export_model(model, path: str | os.PathLike, opset: int = OPSET, source_sha256: str | None = None) -> Path:
    """Export a Keras model (float32 `(N, S, S, 3)` in [0, 1] -> softmax) to an ONNX file, in process.

    Uses a lot of memory for a big backbone (2.7 GB for DenseNet201 at 256 px); prefer
    `export_model_file`, which runs this in a child process.

    Args:
        model: a float32 Keras model with one image input and one output.
        path: the `.onnx` file to write (atomically).
        opset: ONNX opset.
        source_sha256: SHA-256 of the `.keras` file the model was loaded from
            (`fingerprint.file_sha256`): recorded with the input shape in the file's metadata and
            its sidecar (`galaxy_core.models.fingerprint`), so the file is used for that model only.
            None: no fingerprint (the predictor will not trust the file).

    Returns:
        `path`.

    Raises:
        OnnxExportError: tf2onnx/onnx missing, mixed-precision model or conversion failure.
    """
    os.environ["TF2ONNX_CATCH_ERRORS"] = "FALSE"  # no graph deep copy per optimizer pass
    try:
        import onnx
        import tensorflow as tf
        import tf2onnx  # noqa: F401 - checked here so the message names it

        import keras
    except ImportError as err:
        raise OnnxExportError(f"ONNX export needs tf2onnx and onnx ({err}); install them with "
                              f"`pip install -r requirements.txt`.") from err
    from galaxy_core.io import atomic_path

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise OnnxExportError("ONNX export supports models with one input and one output.")
    if any(getattr(layer, "dtype_policy", None) is not None and layer.dtype_policy.name != "float32"
           for layer in model.layers):
        raise OnnxExportError("ONNX export needs a float32 model (this one uses mixed precision).")
    features, head = split_head(model)
    backbone = keras.Model(model.inputs[0], features) if head else model
    shape = tuple(model.inputs[0].shape[1:])
    signature = [tf.TensorSpec((None, *shape), tf.float32, name=INPUT_NAME)]
    proto = _convert_with_tf2onnx(backbone, signature, opset)
    _rename_io(proto, INPUT_NAME, "features" if head else OUTPUT_NAME)
    if head:
        _append_head(proto, head, "features", OUTPUT_NAME)
    optimize(proto)
    if source_sha256 is not None:
        stamp(proto, source_sha256, shape)
    onnx.checker.check_model(proto)
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))
    if source_sha256 is not None:
        seal(path, source_sha256, shape)
    return path


def _convert_with_tf2onnx(model, signature, opset: int):
    import tf2onnx
    from keras.src.export.onnx import get_concrete_fn, patch_tf2onnx

    _patch_tf2onnx_node_protos()
    patch_tf2onnx()  # Keras's numpy 2 fix for tf2onnx
    function = get_concrete_fn(model, signature)
    try:
        proto, _ = tf2onnx.convert.from_function(function, signature, opset=opset)
    except Exception as err:  # noqa: BLE001 - any converter failure means "no ONNX"
        raise OnnxExportError(f"tf2onnx could not convert the model: {type(err).__name__}: {err}") from err
    return proto


def _patch_tf2onnx_node_protos() -> None:
    """Rebuild each tf2onnx node proto fresh before it is rewritten (frees the old weight copies).

    tf2onnx's `Node.update_proto` clears and re-adds the attributes of the same NodeProto on every
    optimizer pass; upb protobuf keeps cleared sub-messages in the message's arena, so each pass
    keeps another copy of every constant.
    """
    import onnx
    from tf2onnx import graph as tf2onnx_graph

    node_class = tf2onnx_graph.Node
    if getattr(node_class.update_proto, "_galaxy_patched", False):
        return
    original = node_class.update_proto

    def update_proto(self, external_tensor_storage=None):
        old = self._op
        self._op = onnx.NodeProto(name=old.name, op_type=old.op_type, domain=old.domain,
                                  doc_string=old.doc_string)
        return original(self, external_tensor_storage)

    update_proto._galaxy_patched = True
    node_class.update_proto = update_proto


def _rename_io(proto, input_name: str, output_name: str) -> None:
    graph = proto.graph
    renames = {graph.input[0].name: input_name, graph.output[0].name: output_name}
    for value in (graph.input[0], graph.output[0]):
        value.name = renames[value.name]
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]
        for i, name in enumerate(node.output):
            if name in renames:
                node.output[i] = renames[name]


def _append_head(proto, head: Sequence, features: str, output: str) -> None:
    """Append the Keras head layers as ONNX nodes after the graph output `features` (NHWC)."""
    import keras
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    num_classes = int(head[-1].units) if isinstance(head[-1], keras.layers.Dense) else None
    del graph.output[:]
    current = features
    for i, layer in enumerate(head):
        name = f"head{i}_{layer.name}"
        if isinstance(layer, keras.layers.Dropout):
            continue  # identity at inference
        if isinstance(layer, keras.layers.Flatten):
            # Keras flattens channels-last (h, w, c) in row-major order: ONNX Flatten on NHWC is the same.
            graph.node.append(helper.make_node("Flatten", [current], [name], axis=1, name=name))
        elif isinstance(layer, keras.layers.GlobalAveragePooling2D):
            graph.node.append(helper.make_node("ReduceMean", [current], [name], axes=[1, 2], keepdims=0,
                                               name=name))
        else:  # Dense
            kernel, bias = (np.asarray(w, dtype=np.float32) for w in layer.get_weights())
            graph.initializer.extend([numpy_helper.from_array(kernel, f"{name}_kernel"),
                                      numpy_helper.from_array(bias, f"{name}_bias")])
            graph.node.append(helper.make_node("MatMul", [current, f"{name}_kernel"], [f"{name}_mm"],
                                               name=f"{name}_mm"))
            graph.node.append(helper.make_node("Add", [f"{name}_mm", f"{name}_bias"], [name],
                                               name=f"{name}_add"))
            activation = _activation_name(layer)
            if activation != "linear":
                op = {"relu": "Relu", "softmax": "Softmax"}[activation]
                extra = {"axis": -1} if op == "Softmax" else {}
                graph.node.append(helper.make_node(op, [name], [f"{name}_{op.lower()}"],
                                                   name=f"{name}_{op.lower()}", **extra))
                name = f"{name}_{op.lower()}"
        current = name
    graph.node.append(helper.make_node("Identity", [current], [output], name="output_identity"))
    graph.output.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", num_classes]))


def export_model_file(model_path: str | os.PathLike, onnx_path: str | os.PathLike,
                      timeout_s: float = EXPORT_TIMEOUT_S) -> Path:
    """Export the `.keras` file `model_path` to `onnx_path` in a child Python process.

    The child's memory (gigabytes for a big backbone) is returned when it ends; a crash or kill
    leaves no file behind (atomic write).

    Returns:
        `onnx_path`.

    Raises:
        OnnxExportError: the child failed; the message has the last line of its error output.
    """
    onnx_path = Path(onnx_path)
    env = quiet_env()
    command = [sys.executable, "-m", "galaxy_core.models.onnx_export", str(model_path), str(onnx_path)]
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        raise OnnxExportError(f"ONNX export of {model_path} took more than {timeout_s:.0f} s") from err
    if done.returncode != 0 or not onnx_path.is_file():
        lines = [line for line in (done.stderr or "").splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit status {done.returncode}"
        if done.returncode < 0:
            why = f"killed by signal {-done.returncode} (out of memory?)"
        raise OnnxExportError(f"ONNX export of {model_path} failed: {why}")
    return onnx_path


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m galaxy_core.models.onnx_export MODEL.keras OUT.onnx`: export in this process."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m galaxy_core.models.onnx_export",
                                     description="Export a run's model.keras to ONNX (model.onnx).")
    parser.add_argument("model", help="the .keras model file (e.g. runs/NAME/model.keras)")
    parser.add_argument("out", help="the .onnx file to write")
    args = parser.parse_args(argv)
    from galaxy_core.models.network import load_model

    start = time.perf_counter()
    try:
        source_sha256 = file_sha256(args.model)  # before loading: the fingerprint of what is loaded
        model = load_model(args.model, compile=False)
        export_model(model, args.out, source_sha256=source_sha256)
    except (ModelError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.0f} MB) in "
          f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    quiet_tf_logs()
    sys.exit(main())
