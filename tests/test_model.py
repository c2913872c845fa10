"""Model builder: the paper's DenseNet201 head, flat graph, backbone scaling, weights, save/load."""

import keras
import numpy as np
import pytest

from galaxy_core.config import Config
from galaxy_core.errors import ModelError
from galaxy_core.models.network import (BackboneScaling, build_model, feature_map_layer, load_model,
                               resolve_backbone, scaling_for_backbone, valid_backbones)

SMALL = dict(backbone="SmallCNN", image_size=32, dense_units=16)


def _nested_models(model):
    return [layer.name for layer in model.layers if isinstance(layer, keras.Model)]


@pytest.mark.slow
def test_densenet201_paper_head_at_256():
    """One DenseNet201 build (weights=None): the recipe's head, flat graph, parameter counts."""
    cfg = Config()  # DenseNet201, 256x256, flatten head, 1024 units, dropout 0.3, 10 classes
    model = build_model(cfg, weights=None)
    assert model.input_shape == (None, 256, 256, 3)
    assert model.output_shape == (None, 10)
    assert _nested_models(model) == []  # backbone layers are the model's own
    names = [layer.name for layer in model.layers]
    assert names[-4:] == ["head_flatten", "head_dense", "head_dropout", "predictions"]
    assert names.index("backbone_scaling") < names.index("conv1_conv")
    assert names.index("aug_rotation") < names.index("backbone_scaling")
    flatten_dim = 8 * 8 * 1920  # DenseNet201's last feature map at 256x256
    assert model.get_layer("head_flatten").output.shape[-1] == flatten_dim
    dense = model.get_layer("head_dense")
    assert dense.units == 1024 and dense.activation.__name__ == "relu"
    assert dense.count_params() == flatten_dim * 1024 + 1024
    assert model.get_layer("head_dropout").rate == pytest.approx(0.3)
    out = model.get_layer("predictions")
    assert out.count_params() == 1024 * 10 + 10 and out.activation.__name__ == "softmax"
    assert out.dtype_policy.name == "float32"
    # DenseNet201 without top has 18,321,984 parameters (Keras documentation).
    assert model.count_params() == 18_321_984 + flatten_dim * 1024 + 1024 + 1024 * 10 + 10
    assert all(w.trainable for w in model.get_layer("conv1_conv").weights)
    assert feature_map_layer(model).name == "relu"


@pytest.mark.parametrize("backbone, module", [("DenseNet121", "densenet"), ("VGG19", "vgg19"),
                                              ("MobileNetV2", "mobilenet_v2"),
                                              ("EfficientNetB0", "efficientnet")])
def test_scaling_layer_matches_preprocess_input(backbone, module):
    preprocess = getattr(keras.applications, module).preprocess_input
    x = np.random.default_rng(0).uniform(0, 1, (2, 5, 5, 3)).astype(np.float32)
    got = np.asarray(scaling_for_backbone(backbone)(x))
    np.testing.assert_allclose(got, preprocess(x * 255.0), rtol=1e-5, atol=1e-4)


def test_inference_is_deterministic_and_default_call_is_inference():
    model = build_model(Config(**SMALL, flips=True))
    x = np.random.default_rng(0).uniform(0, 1, (3, 32, 32, 3)).astype(np.float32)
    a = np.asarray(model(x, training=False))
    np.testing.assert_array_equal(a, np.asarray(model(x, training=False)))
    np.testing.assert_array_equal(a, np.asarray(model(x)))  # no augmentation, BN in inference
    np.testing.assert_allclose(a.sum(1), 1.0, rtol=1e-5)
    assert not np.allclose(a, np.asarray(model(x, training=True)))  # augmentation + dropout active


def test_save_load_safe_mode_round_trip(tmp_path):
    model = build_model(Config(**SMALL))
    x = np.random.default_rng(1).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)), np.asarray(model(x, training=False)))
    assert isinstance(loaded.get_layer("backbone_scaling"), BackboneScaling)
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.keras")


def test_load_model_refuses_what_safe_mode_refuses_before_keras_reads_it(tmp_path):
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Lambda(lambda t: t * 2.0, name="evil")(inputs)
    keras.Model(inputs, outputs).save(tmp_path / "lambda.keras")
    with pytest.raises(ModelError, match=r"contains a Lambda layer \('evil'\), which Keras safe mode refuses"):
        load_model(tmp_path / "lambda.keras")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="junk.keras is not a Keras archive"):
        load_model(tmp_path / "junk.keras")


def test_local_weights_file_loaded_into_backbone(tmp_path):
    from galaxy_core.models.network import small_cnn

    source = small_cnn(input_shape=(32, 32, 3))
    kernel = source.get_layer("block2_conv").kernel
    kernel.assign(np.full(kernel.shape, 0.125, np.float32))
    source.save_weights(tmp_path / "backbone.weights.h5")
    model = build_model(Config(**SMALL), weights=str(tmp_path / "backbone.weights.h5"))
    np.testing.assert_array_equal(np.asarray(model.get_layer("block2_conv").kernel), 0.125)
    with pytest.raises(ModelError, match="not found"):
        build_model(Config(**SMALL), weights=str(tmp_path / "nope.h5"))


def test_frozen_backbone_and_gap_head():
    model = build_model(Config(**SMALL, freeze_backbone=True, head="gap"))
    trainable = {w.path.split("/")[0] for w in model.trainable_weights}
    assert trainable == {"head_dense", "predictions"}
    assert model.get_layer("head_gap").output.shape[-1] == 128
    assert feature_map_layer(model).name == "last_relu"


def test_vgg19_flat_and_last_conv_layer():
    model = build_model(Config(backbone="VGG19", image_size=32, dense_units=8, freeze_backbone=True))
    assert _nested_models(model) == []
    assert feature_map_layer(model).name == "block5_conv4"
    assert not model.get_layer("block1_conv1").trainable


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ModelError, match="DenseNet201.*VGG19|VGG19.*DenseNet201"):
        build_model(Config(backbone="DenseNet999", image_size=32))
    assert "SmallCNN" in valid_backbones() and "MobileNetV3Small" in valid_backbones()


def test_backbone_names_are_accepted_in_any_case():
    """Issue 10 item 11: `--backbone densenet121` was refused only for its case."""
    assert resolve_backbone("densenet121") == "DenseNet121"
    assert resolve_backbone(" vgg19 ") == "VGG19" and resolve_backbone("smallcnn") == "SmallCNN"
    assert resolve_backbone("MobileNetV2") == "MobileNetV2"
    with pytest.raises(ModelError, match="Unknown backbone 'densenet'. .*DenseNet121"):
        resolve_backbone("densenet")
    model = build_model(Config(**{**SMALL, "backbone": "smallcnn"}))
    assert model.name == "galaxy_smallcnn" and feature_map_layer(model).name == "last_relu"
    scaling = scaling_for_backbone("densenet121")
    assert scaling.get_config()["scale"] == scaling_for_backbone("DenseNet121").get_config()["scale"]


def test_feature_map_layer_needs_a_conv_layer():
    inputs = keras.Input((8, 8, 3))
    dense_only = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
    with pytest.raises(ModelError, match="no convolution layer"):
        feature_map_layer(dense_only)


def test_imagenet_download_failure_says_how_to_work_offline(monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(ModelError, match="--weights none"):
        build_model(Config(backbone="VGG19", image_size=32, dense_units=8), weights="imagenet")
