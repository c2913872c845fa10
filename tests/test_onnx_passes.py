"""Tests of galaxy_core.models.onnx_passes: the scale-shift fusion is exact and leaves no Mul -> Add pair."""

import numpy as np
import pytest

from galaxy_core.models.onnx_export import export_model
from galaxy_core.models.onnx_passes import (EXPORT_VERSION, METADATA_KEY, drop_unused_initializers, export_version,
                                     fuse_scale_shift, optimize, upgrade_file)
from galaxy_core.models.predictor import OnnxPredictor

onnx = pytest.importorskip("onnx")


def preactivation_model(size=16):
    """A tiny DenseNet-style model (BN -> ReLU -> Conv on concatenated features) with random BN stats."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    for _ in range(2):
        y = keras.layers.BatchNormalization()(x)
        y = keras.layers.ReLU()(y)
        y = keras.layers.Conv2D(4, 3, padding="same")(y)
        x = keras.layers.Concatenate()([x, y])
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Dense(6, activation="relu")(x))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.5, beta.shape),
                               rng.normal(0, 0.5, mean.shape), rng.uniform(0.5, 2, var.shape)])
        elif isinstance(layer, keras.layers.Dense):  # confident outputs, so differences show
            layer.set_weights([rng.normal(0, 0.3, w.shape) for w in layer.get_weights()])
    return model


def scale_shift_pairs(proto) -> int:
    """How many per-channel Mul nodes feed straight into an Add."""
    consumers = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    return sum(node.op_type == "Mul" and consumers.get(node.output[0]) == ["Add"] for node in proto.graph.node)


def test_fusion_is_exact_and_removes_every_pair(tmp_path):
    model = preactivation_model()
    path = export_model(model, tmp_path / "model.onnx")
    proto = onnx.load(str(path))
    assert export_version(proto) == EXPORT_VERSION
    assert scale_shift_pairs(proto) == 0
    depthwise = [n for n in proto.graph.node if n.op_type == "Conv"
                 and any(a.name == "group" and a.i > 1 for a in n.attribute)]
    assert len(depthwise) == 3  # the three batch norms
    x = np.random.default_rng(1).uniform(0, 1, (4, 16, 16, 3)).astype(np.float32)
    want = np.asarray(model.predict_on_batch(x))
    got = OnnxPredictor(path, threads=1).predict(x)
    assert 0.15 < want.max(axis=1).min() and want.max(axis=1).max() < 0.99  # not a saturated softmax: the comparison can fail
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_upgrade_file_rewrites_an_old_export_once(tmp_path):
    model = preactivation_model()
    path = export_model(model, tmp_path / "model.onnx")
    proto = onnx.load(str(path))
    # Rebuild what an export before the passes looked like: the fused Convs back as Mul + Add.
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    nodes = []
    for node in proto.graph.node:
        group = [a.i for a in node.attribute if a.name == "group"]
        if node.op_type == "Conv" and group and group[0] > 1:
            w = numpy_helper.to_array(inits[node.input[1]]).reshape(1, -1, 1, 1)
            b = numpy_helper.to_array(inits[node.input[2]]).reshape(1, -1, 1, 1)
            proto.graph.initializer.extend([numpy_helper.from_array(w, node.name + "_s"),
                                            numpy_helper.from_array(b, node.name + "_b")])
            nodes += [helper.make_node("Mul", [node.input[0], node.name + "_s"], [node.name + "_m"]),
                      helper.make_node("Add", [node.name + "_m", node.name + "_b"], [node.output[0]])]
        else:
            nodes.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    del proto.metadata_props[:]
    drop_unused_initializers(proto)
    old = tmp_path / "old.onnx"
    onnx.save(proto, str(old))
    x = np.random.default_rng(2).uniform(0, 1, (3, 16, 16, 3)).astype(np.float32)
    before = OnnxPredictor(old, threads=1)
    assert before.export_version == 1 and scale_shift_pairs(onnx.load(str(old))) == 3
    want = before.predict(x)
    assert upgrade_file(old) == {"fused_scale_shift": 3, "dropped_initializers": 6}
    after = onnx.load(str(old))
    assert scale_shift_pairs(after) == 0 and export_version(after) == EXPORT_VERSION
    np.testing.assert_allclose(OnnxPredictor(old, threads=1).predict(x), want, atol=1e-6, rtol=0)
    assert upgrade_file(old) is None  # already current: not written again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "old.onnx"]


def test_pairs_that_do_not_qualify_are_left_alone():
    from onnx import TensorProto, helper, numpy_helper

    scale = numpy_helper.from_array(np.full((1, 4, 1, 1), 2, np.float32), "s")
    shift = numpy_helper.from_array(np.ones((1, 4, 1, 1), np.float32), "b")
    other = numpy_helper.from_array(np.ones((1, 4, 1, 1), np.float32), "c")
    # The Mul's output is read twice (by the Add and by a second Add): fusing would lose it.
    nodes = [helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"]),
             helper.make_node("Add", ["m", "c"], ["z"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3, 3]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4, 3, 3])], [scale, shift, other])
    proto = helper.make_model(graph)
    assert fuse_scale_shift(proto) == 0 and len(proto.graph.node) == 3
    # A channel count that does not match the tensor's (a broadcast over a 1-channel input).
    graph = helper.make_graph(
        nodes[:2], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3, 3])], [scale, shift])
    proto = helper.make_model(graph)
    assert fuse_scale_shift(proto) == 0
    # The same pair on a 4-channel input qualifies.
    graph = helper.make_graph(
        nodes[:2], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3, 3])], [scale, shift])
    proto = helper.make_model(graph)
    assert optimize(proto) == {"fused_scale_shift": 1, "dropped_initializers": 2}
    assert [n.op_type for n in proto.graph.node] == ["Conv"]
    assert {p.key: p.value for p in proto.metadata_props} == {METADATA_KEY: str(EXPORT_VERSION)}
