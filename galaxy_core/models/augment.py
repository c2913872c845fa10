"""Training-time augmentation as Keras layers, so it runs on the accelerator inside the model graph.

The recipe: random rotation over the full circle, random zoom and random contrast, empty pixels
filled with 0 (black sky), optional flips. Every layer is a Keras random preprocessing layer: it
transforms only when called with `training=True` and is the identity at inference, so the saved
model can be used for evaluation and explanations as is.
"""

from __future__ import annotations

import keras

from galaxy_core.config import Config


class _InferenceByDefault:
    """Mixin: `training` defaults to False instead of Keras's True for random layers.

    Keras resolves an unspecified `training` from the first layer's call signature and passes it
    on to every later layer; with Keras's random layers first in the graph, a plain `model(x)` would
    augment AND run BatchNormalization/Dropout in training mode. With this default, `model(x)` is
    inference; `fit` still passes training=True explicitly.
    """

    def call(self, data, training=False):
        return super().call(data, training=training)


@keras.saving.register_keras_serializable(package="galaxy_core")
class AugRotation(_InferenceByDefault, keras.layers.RandomRotation):
    """`keras.layers.RandomRotation`, identity unless called with training=True."""


@keras.saving.register_keras_serializable(package="galaxy_core")
class AugZoom(_InferenceByDefault, keras.layers.RandomZoom):
    """`keras.layers.RandomZoom`, identity unless called with training=True."""


@keras.saving.register_keras_serializable(package="galaxy_core")
class AugContrast(_InferenceByDefault, keras.layers.RandomContrast):
    """`keras.layers.RandomContrast`, identity unless called with training=True."""


@keras.saving.register_keras_serializable(package="galaxy_core")
class AugFlip(_InferenceByDefault, keras.layers.RandomFlip):
    """`keras.layers.RandomFlip`, identity unless called with training=True."""


CUSTOM_OBJECTS = {cls.__name__: cls for cls in (AugRotation, AugZoom, AugContrast, AugFlip)}


def build_augmentation(cfg: Config) -> keras.Sequential:
    """The augmentation block for images in [0, 1].

    Args:
        cfg: uses `rotation_factor` (0.5 = full circle), `zoom_factor`, `contrast_factor`, `flips`
            and `seed`. A factor of 0 leaves its layer out.

    Returns:
        A `keras.Sequential` named "augmentation" mapping float32 `(N, S, S, 3)` in [0, 1] to the
        same shape and range (contrast output is clipped to [0, 1]). With all factors 0 and no
        flips it holds a single `Identity` layer.
    """
    layers = []
    # Each layer gets its own seed derived from cfg.seed: same seed twice would correlate draws.
    if cfg.rotation_factor > 0:
        layers.append(AugRotation(
            cfg.rotation_factor, fill_mode="constant", fill_value=0.0, seed=cfg.seed,
            name="aug_rotation"))
    if cfg.zoom_factor > 0:
        layers.append(AugZoom(
            cfg.zoom_factor, fill_mode="constant", fill_value=0.0, seed=cfg.seed + 1,
            name="aug_zoom"))
    if cfg.contrast_factor > 0:
        # value_range=(0, 1): RandomContrast clips its output to this range.
        layers.append(AugContrast(
            cfg.contrast_factor, value_range=(0.0, 1.0), seed=cfg.seed + 2, name="aug_contrast"))
    if cfg.flips:
        layers.append(AugFlip("horizontal_and_vertical", seed=cfg.seed + 3,
                                              name="aug_flip"))
    if not layers:  # an empty Sequential cannot be called
        layers.append(keras.layers.Identity(name="aug_identity"))
    return keras.Sequential(layers, name="augmentation")
