"""Tests of galaxy_core.models.onnx_export: the head split, ONNX probabilities vs Keras, export failures."""

import numpy as np
import pytest

from galaxy_core.config import Config
from galaxy_core.models.network import build_model
from galaxy_core.models.onnx_export import OnnxExportError, export_model, export_model_file, split_head
from galaxy_core.models.predictor import OnnxPredictor


def test_split_head_finds_the_classifier_head():
    import keras

    model = build_model(Config(backbone="SmallCNN", image_size=32, dense_units=8))
    features, head = split_head(model)
    assert [layer.name for layer in head] == ["head_flatten", "head_dense", "head_dropout", "predictions"]
    assert tuple(features.shape) == (None, 2, 2, 128)  # SmallCNN's last block at 32 px
    # A model ending in a layer the ONNX head builder does not know: nothing is split off.
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    plain = keras.Model(inputs, keras.layers.Activation("softmax")(keras.layers.GlobalAveragePooling2D()(x)))
    features, head = split_head(plain)
    assert head == [] and features is plain.outputs[0]


@pytest.mark.parametrize("backbone, head, size", [("SmallCNN", "flatten", 32), ("MobileNetV2", "gap", 32)])
def test_onnx_probabilities_match_keras(tmp_path, backbone, head, size):
    import keras

    keras.utils.set_random_seed(0)
    model = build_model(Config(backbone=backbone, head=head, image_size=size, dense_units=16))
    path = export_model(model, tmp_path / "model.onnx")
    predictor = OnnxPredictor(path, threads=1)
    x = np.random.default_rng(1).uniform(0, 1, (5, size, size, 3)).astype(np.float32)
    got = predictor.predict(x)
    want = np.asarray(model.predict_on_batch(x))
    assert got.shape == (5, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # atomic write, no leftovers


def test_export_model_file_fails_cleanly(tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"not a keras archive")
    with pytest.raises(OnnxExportError, match="failed"):
        export_model_file(bad, tmp_path / "model.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]  # nothing half-written


def test_the_child_export_records_the_source_fingerprint_and_input_shape(tmp_path):
    """Issue 25 item 1: model.onnx names the model.keras it came from (SHA-256) and its input shape."""
    import onnx

    from galaxy_core.models.fingerprint import SHAPE_KEY, SOURCE_KEY, check, file_sha256

    source = tmp_path / "model.keras"
    build_model(Config(backbone="SmallCNN", image_size=32, dense_units=8)).save(source)
    path = export_model_file(source, tmp_path / "model.onnx")
    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert metadata[SOURCE_KEY] == file_sha256(source) and metadata[SHAPE_KEY] == "32,32,3"
    assert check(path, file_sha256(source), (32, 32, 3)) is None
    assert "another model" in check(path, "0" * 64, (32, 32, 3))
