"""galaxy_core.morphology.statistics: the statistics measure what their names say, on drawn galaxies."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from galaxy_core.errors import PreprocessError
from galaxy_core.morphology.statistics import FEATURE_NAMES, N_FEATURES, features_batch, morphology_features


def galaxy(axes=(30, 30), angle=0.0, size=256, sky=20, noise=2.0, seed=0, companion=None) -> np.ndarray:
    """A smooth elliptical galaxy (Gaussian light profile) on a noisy sky, uint8 (size, size, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    c = (size - 1) / 2
    t = np.deg2rad(angle)
    u = (xx - c) * np.cos(t) + (yy - c) * np.sin(t)
    v = -(xx - c) * np.sin(t) + (yy - c) * np.cos(t)
    scale = size / 256
    light = 200 * np.exp(-0.5 * ((u / (axes[0] * scale / 2)) ** 2 + (v / (axes[1] * scale / 2)) ** 2))
    if companion is not None:
        dx, dy = companion
        light += 180 * np.exp(-0.5 * (((xx - c - dx * scale) ** 2 + (yy - c - dy * scale) ** 2) / (6 * scale) ** 2))
    img = sky + light[..., None] * np.array([1.0, 0.9, 0.8]) + rng.normal(0, noise, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def value(features: np.ndarray, name: str) -> float:
    return float(features[FEATURE_NAMES.index(name)])


def test_shape_dtype_and_names():
    f = morphology_features(galaxy())
    assert f.shape == (N_FEATURES,) and f.dtype == np.float32
    assert len(FEATURE_NAMES) == N_FEATURES == len(set(FEATURE_NAMES))
    assert np.isfinite(f).all()


def test_axis_ratio_separates_a_round_galaxy_from_an_edge_on_disc():
    round_, flat = morphology_features(galaxy((30, 30))), morphology_features(galaxy((60, 12)))
    assert value(round_, "q_outer@2.5") > 0.85
    assert value(flat, "q_outer@2.5") < 0.45


def test_nearly_invariant_to_rotation_and_flip():
    img = galaxy((50, 20), angle=30, companion=(40, 10))
    base = morphology_features(img)
    for view in (np.rot90(img), img[:, ::-1], np.rot90(img, 2)):
        other = morphology_features(np.ascontiguousarray(view))
        np.testing.assert_allclose(other, base, atol=0.05)


def test_a_companion_shows_as_a_second_peak_and_as_asymmetry():
    alone, pair = morphology_features(galaxy((30, 30))), morphology_features(galaxy((30, 30), companion=(30, 0)))
    assert value(alone, "peak2_ratio@5") < 0.3 < value(pair, "peak2_ratio@5")
    assert value(pair, "asymmetry@5") > value(alone, "asymmetry@5") + 0.1
    assert value(pair, "fourier_m1_a2@2.5") > value(alone, "fourier_m1_a2@2.5") + 0.2  # lopsided light


def test_concentration_rises_with_a_smaller_galaxy_at_the_same_crop_radii():
    # The crop follows the galaxy's radius, so the light fractions are about the same...
    small, large = morphology_features(galaxy((16, 16))), morphology_features(galaxy((40, 40)))
    assert abs(value(small, "flux<0.35R@2.5") - value(large, "flux<0.35R@2.5")) < 0.15
    # ...and the size itself is its own entry.
    assert value(large, "log_radius") > value(small, "log_radius") + 0.5


def test_image_side_barely_matters():
    small = morphology_features(galaxy(size=256, noise=0.0))
    large = morphology_features(galaxy(size=512, noise=0.0))
    np.testing.assert_allclose(large, small, atol=0.08)


def test_blank_and_flat_images_give_finite_values():
    for img in (np.zeros((64, 64, 3), np.uint8), np.full((256, 256, 3), 128, np.uint8)):
        assert np.isfinite(morphology_features(img)).all()


def test_batch_stacks_rows_and_handles_none():
    imgs = [galaxy(), galaxy((60, 12))]
    batch = features_batch(imgs)
    assert batch.shape == (2, N_FEATURES)
    np.testing.assert_array_equal(batch[1], morphology_features(imgs[1]))
    assert features_batch([]).shape == (0, N_FEATURES)


def test_any_layout_and_size_to_rgb_uint8_takes_is_measured():
    img = galaxy((60, 12))
    base = morphology_features(img)
    np.testing.assert_allclose(morphology_features(img.astype(np.float32) / 255), base, atol=1e-6)
    gray = morphology_features(img.mean(axis=2).astype(np.uint8))
    assert value(gray, "q_outer@2.5") < 0.45 and value(gray, "colour_inner@2.5") == 0  # no colour
    rgba = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(morphology_features(rgba), base)
    assert np.isfinite(morphology_features(galaxy(size=12))).all()  # tiny: resampled to 256 px


@pytest.mark.parametrize("bad, words", [
    (np.zeros((64, 64, 2), np.uint8), "channels"),
    (np.zeros((2, 64, 64, 3), np.uint8), "For a batch use preprocess_batch"),
    (np.full((64, 64, 3), 2.0, np.float32), r"finite values in \[0, 1\]"),
])
def test_bad_input_is_refused_with_the_fix(bad, words):
    with pytest.raises(PreprocessError, match=words):
        morphology_features(bad)


def test_a_sharp_edged_noiseless_disc_is_measured_too():
    # An image drawn with OpenCV (sharp edges, no noise) also works: the crop finds the disc.
    img = np.zeros((256, 256, 3), np.uint8)
    cv2.ellipse(img, (128, 128), (40, 10), 0, 0, 360, (180, 170, 160), -1)
    assert value(morphology_features(img), "q_outer@2.5") < 0.35
