"""Augmentation block: random with training=True, identity otherwise, values stay in [0, 1]."""

import numpy as np

from galaxy_core.models.augment import build_augmentation
from galaxy_core.config import Config


def _images(n=4, size=32, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, size, size, 3), np.float32)
    x[:, 8:24, 12:20] = rng.uniform(0.3, 1.0, (n, 1, 1, 3))  # an off-centre bright bar
    return x


def test_recipe_layers_from_config():
    aug = build_augmentation(Config())
    names = [type(layer).__name__ for layer in aug.layers]
    assert names == ["AugRotation", "AugZoom", "AugContrast"]
    rotation, zoom = aug.layers[0], aug.layers[1]
    assert rotation.fill_mode == "constant" and rotation.fill_value == 0.0
    assert zoom.fill_mode == "constant" and zoom.fill_value == 0.0


def test_zero_factors_skip_layers_and_flips_add_one():
    cfg = Config(rotation_factor=0, zoom_factor=0, contrast_factor=0.1, flips=True)
    assert [type(layer).__name__ for layer in build_augmentation(cfg).layers] == ["AugContrast", "AugFlip"]
    empty = build_augmentation(cfg.replace(contrast_factor=0, flips=False))
    x = _images()
    assert [type(layer).__name__ for layer in empty.layers] == ["Identity"]
    np.testing.assert_array_equal(np.asarray(empty(x, training=True)), x)


def test_changes_images_only_when_training():
    aug = build_augmentation(Config(flips=True))
    x = _images()
    trained = np.asarray(aug(x, training=True))
    assert trained.shape == x.shape and trained.dtype == np.float32
    assert np.abs(trained - x).max() > 0.1
    np.testing.assert_array_equal(np.asarray(aug(x, training=False)), x)
    np.testing.assert_array_equal(np.asarray(aug(x)), x)  # default is inference, not Keras's training=True
    assert trained.min() >= 0.0 and trained.max() <= 1.0  # constant 0 fill, contrast clipped


def test_contrast_output_clipped_to_unit_range():
    aug = build_augmentation(Config(rotation_factor=0, zoom_factor=0, contrast_factor=0.9, seed=3))
    x = np.random.default_rng(1).uniform(0, 1, (8, 32, 32, 3)).astype(np.float32)
    y = np.asarray(aug(x, training=True))
    assert y.min() >= 0.0 and y.max() <= 1.0
    assert not np.allclose(y, x)
