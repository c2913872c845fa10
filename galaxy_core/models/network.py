"""Transfer-learning classifier: [0, 1] images -> augmentation -> backbone scaling -> backbone -> head.

The recipe (DenseNet201 default): a `keras.applications` backbone without its top, then
Flatten -> Dense(1024, relu) -> Dropout(0.3) -> Dense(num_classes, softmax). The graph is FLAT: the
backbone is built on the tensor coming out of our own augmentation and scaling layers
(`input_tensor=`), so every backbone layer is a layer of the returned model (no nested backbone
`Model`) and Grad-CAM can reach the last convolutional layer by name.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import keras
import numpy as np

from galaxy_core.models.archive import check_model_archive
from galaxy_core.models.augment import CUSTOM_OBJECTS as AUGMENT_OBJECTS, build_augmentation
from galaxy_core.config import Config
from galaxy_core.errors import ModelError


@keras.saving.register_keras_serializable(package="galaxy_core")
class BackboneScaling(keras.layers.Layer):
    """Maps [0, 1] RGB to what a `keras.applications` backbone expects (its `preprocess_input`).

    Computes `out[..., c] = x[..., channel_order[c]] * scale[c] + offset[c]`, which covers every
    `preprocess_input` mode of Keras applications: "torch" (ImageNet mean/std on [0, 1]), "caffe"
    (RGB -> BGR minus the ImageNet mean in [0, 255]), "tf" ([-1, 1]) and models with built-in
    rescaling (plain [0, 255]). See `scaling_for_backbone`.

    Args:
        scale: three floats, one per output channel.
        offset: three floats, one per output channel.
        channel_order: input channel feeding each output channel, e.g. (2, 1, 0) for RGB -> BGR.
    """

    def __init__(self, scale, offset, channel_order=(0, 1, 2), **kwargs):
        super().__init__(**kwargs)
        self.scale = [float(v) for v in scale]
        self.offset = [float(v) for v in offset]
        self.channel_order = [int(v) for v in channel_order]

    def call(self, inputs):
        x = keras.ops.cast(inputs, self.compute_dtype)
        if self.channel_order != [0, 1, 2]:
            x = keras.ops.take(x, self.channel_order, axis=-1)
        scale = keras.ops.convert_to_tensor(self.scale, dtype=self.compute_dtype)
        offset = keras.ops.convert_to_tensor(self.offset, dtype=self.compute_dtype)
        return x * scale + offset  # (N, S, S, 3)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(scale=self.scale, offset=self.offset, channel_order=self.channel_order)
        return config


def small_cnn(include_top: bool = False, weights: str | None = None, input_tensor=None,
              input_shape: tuple[int, int, int] | None = None, **kwargs) -> keras.Model:
    """A small CNN backbone with the `keras.applications` signature ("SmallCNN"; fast on CPU).

    Four blocks of Conv3x3 -> BatchNorm -> ReLU -> MaxPool2 (32, 64, 128, 128 filters) and a
    final Conv3x3 -> BN -> ReLU "last_conv" (128). Made for the offline demo and tests; it has no
    pretrained weights (`weights` must be None or a local file, loaded by `build_model`).
    Expects inputs in [-1, 1] (see `scaling_for_backbone`).
    """
    if include_top:
        raise ModelError("SmallCNN has no classification top; use include_top=False.")
    if weights not in (None, "none") and not Path(str(weights)).is_file():
        raise ModelError("SmallCNN has no pretrained weights: use --weights none or a local file.")
    if input_tensor is None:
        inputs = keras.Input(shape=input_shape or (None, None, 3))
        x = inputs
    else:
        inputs, x = input_tensor, input_tensor
    for i, filters in enumerate((32, 64, 128, 128)):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i + 1}_conv")(x)
        # momentum 0.9: the moving statistics settle within a few dozen steps (short CPU runs).
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"block{i + 1}_bn")(x)
        x = keras.layers.ReLU(name=f"block{i + 1}_relu")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{i + 1}_pool")(x)
    x = keras.layers.Conv2D(128, 3, padding="same", use_bias=False, name="last_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="last_bn")(x)
    x = keras.layers.ReLU(name="last_relu")(x)
    if input_tensor is not None:
        from keras.src.ops.operation_utils import get_source_inputs

        inputs = get_source_inputs(input_tensor)
    return keras.Model(inputs, x, name="small_cnn")


# Backbones of this project, next to the keras.applications ones (name -> constructor).
EXTRA_BACKBONES = {"SmallCNN": small_cnn}


def custom_objects() -> dict[str, Any]:
    """The project's custom layers, for `keras.saving.load_model`."""
    objects = {"BackboneScaling": BackboneScaling, **AUGMENT_OBJECTS}
    return {**objects, **{f"galaxy_core>{name}": cls for name, cls in objects.items()}}


def valid_backbones() -> list[str]:
    """Backbone names: `keras.applications` constructors (e.g. "DenseNet201", "VGG19") + "SmallCNN"."""
    names = [name for name in dir(keras.applications)
             if name[:1].isupper() and callable(getattr(keras.applications, name))]
    return sorted(names + list(EXTRA_BACKBONES))


def resolve_backbone(name: str) -> str:
    """The canonical backbone name for `name`, matched case-insensitively ("densenet121" -> "DenseNet121").

    Cheap (no model is built): call it before long work so a typo fails at once.

    Raises:
        ModelError: no such backbone; the message lists the valid names.
    """
    names = valid_backbones()
    text = str(name).strip()
    if text in names:
        return text
    matches = [valid for valid in names if valid.lower() == text.lower()]
    if len(matches) == 1:
        return matches[0]
    raise ModelError(f"Unknown backbone {name!r}. Use a keras.applications model name (any case), one of: "
                     f"{', '.join(names)}.")


def get_application(name: str):
    """The constructor of backbone `name` (any case, see `resolve_backbone`); ModelError if none."""
    name = resolve_backbone(name)
    if name in EXTRA_BACKBONES:
        return EXTRA_BACKBONES[name]
    return getattr(keras.applications, name)


def scaling_for_backbone(name: str) -> BackboneScaling:
    """A `BackboneScaling` layer equivalent to `<family>.preprocess_input` of backbone `name`.

    The family's `preprocess_input` is probed on [0, 255] inputs: it is a per-channel affine map
    (possibly with an RGB -> BGR swap), which is recovered exactly and then checked on random input.
    """
    name = resolve_backbone(name)
    fn = get_application(name)
    if name in EXTRA_BACKBONES:  # the project's own backbones take [-1, 1]
        return BackboneScaling([2.0] * 3, [-1.0] * 3, [0, 1, 2], name="backbone_scaling")
    module = sys.modules.get(fn.__module__)
    preprocess = getattr(module, "preprocess_input", None)
    if preprocess is None:
        raise ModelError(f"Backbone {name!r} has no preprocess_input in {fn.__module__}; "
                         "cannot derive its input scaling.")
    # Probe: a black pixel gives the offsets, one full pixel per input channel gives the order/scale.
    probe = np.zeros((1, 1, 4, 3), dtype=np.float32)
    for channel in range(3):
        probe[0, 0, channel + 1, channel] = 255.0
    out = np.asarray(preprocess(probe.copy()), dtype=np.float64)[0, 0]  # (4, 3)
    offset = out[0]
    delta = out[1:] - offset  # delta[j, c]: effect of input channel j on output channel c
    order = np.argmax(np.abs(delta), axis=0)  # (3,) input channel per output channel
    scale = delta[order, np.arange(3)]  # effect of a full-range ([0, 1] -> 1.0) input step
    layer = BackboneScaling(scale.tolist(), offset.tolist(), order.tolist(),
                            name="backbone_scaling")
    # Check on random data that the affine fit reproduces preprocess_input.
    sample = np.random.default_rng(0).uniform(0, 255, (1, 4, 4, 3)).astype(np.float32)
    want = np.asarray(preprocess(sample.copy()), dtype=np.float64)
    got = sample[..., order] / 255.0 * scale + offset
    if sorted(order.tolist()) != [0, 1, 2] or not np.allclose(got, want, rtol=1e-4, atol=1e-3):
        raise ModelError(f"preprocess_input of backbone {name!r} is not a per-channel affine map; "
                         "this backbone is not supported.")
    return layer


def normalize_weights(weights: str | None) -> str | None:
    """'imagenet', None (random init) or an existing local weights file path."""
    if weights is None or str(weights).strip().lower() in ("", "none", "null", "random"):
        return None
    if str(weights).lower() == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ModelError(f"Weights file {str(path)!r} not found. Use --weights imagenet, --weights none "
                         "or the path of an existing .h5/.keras weights file.")
    if not (path.name.endswith(".h5") or path.name.endswith(".keras")):
        raise ModelError(f"Weights file {str(path)!r} must end with .h5, .weights.h5 or .keras.")
    return str(path)


def build_model(cfg: Config, weights: str | None = None) -> keras.Model:
    """Build the classifier described by `cfg` (flat graph).

    Args:
        cfg: uses `backbone`, `weights`, `image_size`, `head`, `dense_units`, `dropout`,
            `freeze_backbone`, `unfreeze_last`, `num_classes` and the augmentation fields.
        weights: the backbone's initial weights, overriding `cfg.weights`: "imagenet",
            "none"/None (random init, the default: never downloads) or a path to a local weights
            file for the backbone without its top (.h5 / .weights.h5 / .keras). Training passes
            `cfg.weights` here.

    Returns:
        An uncompiled `keras.Model`: input float32 `(N, S, S, 3)` in [0, 1] named "image", output
        float32 softmax `(N, num_classes)`. Augmentation is active only with `training=True`.

    Raises:
        ModelError: unknown backbone, missing weights file, weights that do not fit, or ImageNet
            weights that cannot be downloaded (e.g. offline).
    """
    weights = normalize_weights(weights)
    backbone_name = resolve_backbone(cfg.backbone)
    application = get_application(backbone_name)
    size = cfg.image_size
    shape = (size, size, 3)

    inputs = keras.Input(shape=shape, dtype="float32", name="image")  # [0, 1]
    x = inputs
    # Augmentation layers applied one by one (not as a nested Sequential) to keep the graph flat.
    for layer in build_augmentation(cfg).layers:
        x = layer(x)
    x = scaling_for_backbone(backbone_name)(x)  # backbone's own input range
    try:
        backbone = application(include_top=False, weights=None, input_tensor=x, input_shape=shape)
    except ValueError as err:
        raise ModelError(f"Cannot build backbone {backbone_name} at {size}x{size}: {err}") from err
    own = {id(layer) for layer in keras.Model(inputs, x).layers}
    backbone_layers = [layer for layer in backbone.layers if id(layer) not in own]

    features = backbone.output  # (N, h, w, channels)
    if cfg.head == "flatten":
        x = keras.layers.Flatten(name="head_flatten")(features)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="head_gap")(features)
    x = keras.layers.Dense(cfg.dense_units, activation="relu", name="head_dense")(x)
    x = keras.layers.Dropout(cfg.dropout, seed=cfg.seed, name="head_dropout")(x)
    # float32 softmax: stable under a mixed_float16 policy.
    outputs = keras.layers.Dense(cfg.num_classes, activation="softmax", dtype="float32",
                                 name="predictions")(x)
    model = keras.Model(inputs, outputs, name=f"galaxy_{backbone_name.lower()}")

    if weights is not None:
        load_backbone_weights(model, backbone_name, shape, weights)
    if cfg.freeze_backbone:
        freeze_layers(backbone_layers, cfg.unfreeze_last)
    return model


def freeze_layers(layers: list[keras.layers.Layer], keep_last: int = 0) -> list[str]:
    """Freeze `layers` except the last `keep_last` of them that have weights; returns the names
    of the layers left trainable. A frozen BatchNormalization also runs in inference mode (Keras 3)."""
    weighted = [layer for layer in layers if layer.weights]
    keep = {id(layer) for layer in weighted[len(weighted) - keep_last:]} if keep_last else set()
    for layer in layers:
        if id(layer) not in keep:
            layer.trainable = False
    return [layer.name for layer in layers if id(layer) in keep]


def load_backbone_weights(model: keras.Model, backbone: str, shape: tuple[int, int, int],
                          weights: str) -> None:
    """Load ImageNet or file weights into the backbone layers of `model` (matched by layer name).

    A standalone copy of the backbone is built with the weights (this is how Keras knows the files'
    layout), then each weighted layer is copied into the same-named layer of `model`.
    """
    application = get_application(backbone)
    try:
        if weights == "imagenet":
            source = application(include_top=False, weights="imagenet", input_shape=shape)
        else:
            source = application(include_top=False, weights=None, input_shape=shape)
            source.load_weights(weights)
    except ModelError:
        raise
    except Exception as err:  # network errors, HDF5 errors, layout mismatches
        if weights == "imagenet":
            raise ModelError(f"Could not get the ImageNet weights of {backbone} ({err}). Offline? "
                             "Use --weights none, or --weights PATH to a local notop weights file "
                             "(e.g. copied into ~/.keras/models).") from err
        raise ModelError(f"Could not load backbone weights from {weights!r} into {backbone} "
                         f"(include_top=False, input {shape}): {err}") from err
    for layer in source.layers:
        if layer.weights:
            try:
                model.get_layer(layer.name).set_weights(layer.get_weights())
            except ValueError as err:
                raise ModelError(f"Backbone weights do not fit layer {layer.name!r}: {err}") from err


# Layers that make a feature map from learned filters; Grad-CAM needs at least one.
CONV_TYPES = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D,
              keras.layers.Conv2DTranspose)
# Layers skipped when choosing the Grad-CAM feature map: they subsample or summarise it.
POOLING_TYPES = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D,
                 keras.layers.GlobalMaxPooling2D, keras.layers.GlobalAveragePooling2D)


def walk_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """Every layer of `model` in order, the layers of nested models (a backbone, the augmentation
    block) right after the nested model itself."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from walk_layers(layer)


def output_rank(layer: keras.layers.Layer) -> int | None:
    """Rank of a layer's output tensor (4 for a feature map), or None when it has no single output."""
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):  # layer used several times, or not built
        return None


def feature_map_layer(model: keras.Model) -> keras.layers.Layer:
    """Grad-CAM's feature map: the last 4-D, non-pooling layer at or after the last conv layer.

    One rule for the whole project (`galaxy_core.explain` uses it). That is the backbone's final
    activation for every keras.applications family (DenseNet `relu`, MobileNetV2 `out_relu`,
    ResNet `conv5_block3_out`, EfficientNet `top_activation`, Xception `block14_sepconv2_act`),
    `block5_conv4` for VGG19 (its pool is skipped), and the last conv (or its activation) of a
    small CNN (`last_relu` for SmallCNN).

    Raises:
        ModelError: the model has no convolution layer.
    """
    layers = model.layers
    conv_at = [i for i, layer in enumerate(layers) if isinstance(layer, CONV_TYPES)]
    if not conv_at:
        raise ModelError(f"Model {model.name!r} has no convolution layer; Grad-CAM needs one.")
    chosen = layers[conv_at[-1]]
    for layer in layers[conv_at[-1] + 1:]:
        if output_rank(layer) == 4 and not isinstance(layer, POOLING_TYPES):
            chosen = layer
    return chosen


def load_model(path: str | Path, compile: bool = True) -> keras.Model:
    """Load a model saved by this project, in safe mode: a `.keras` file, or an unzipped model
    folder (`model.save(path, zipped=False)`: config.json + model.weights.h5, as training
    checkpoints are).

    Raises:
        ModelError: missing or unreadable file, or a `.keras` file holding what safe mode refuses
            (`archive.check_model_archive`, run first: its message is clearer than Keras's).
    """
    path = Path(path)
    if not (path.is_file() or (path / "config.json").is_file()):
        raise ModelError(f"Model file {str(path)!r} not found.")
    if path.is_file():
        check_model_archive(path, where=f"Model {str(path)!r}")
    try:
        return keras.saving.load_model(path, custom_objects=custom_objects(), compile=compile,
                                       safe_mode=True)
    except Exception as err:
        raise ModelError(f"Cannot load model {str(path)!r}: {err}") from err
