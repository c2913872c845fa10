"""Tests for galaxy_core.preprocessing.crop: the central object's radius and the galaxy-centred square crop."""

import cv2
import numpy as np
import pytest

from galaxy_core import synthetic
from galaxy_core.preprocessing import crop
from galaxy_core.errors import PreprocessError


def sky(size=256, seed=0, level=30, noise=4.0, shape=None):
    """A noisy grey sky: uint8 (size, size, 3) (or `shape`)."""
    rng = np.random.default_rng(seed)
    height, width = shape or (size, size)
    return np.clip(rng.normal(level, noise, (height, width, 1)), 0, 255).repeat(3, axis=2).astype(np.uint8)


def with_disk(image, centre, radius, value=200):
    out = image.copy()
    cv2.circle(out, centre, radius, (value, value, value), -1)
    return out


def bright_extent(image, threshold=120):
    """Half-width of the bright pixels' bounding box about the image centre, in pixels."""
    ys, xs = np.nonzero(image.mean(axis=2) > threshold)
    cy, cx = (image.shape[0] - 1) / 2, (image.shape[1] - 1) / 2
    return max(np.abs(ys - cy).max(), np.abs(xs - cx).max())


def test_small_disk_in_a_big_frame_is_cropped_to_a_centred_square_that_contains_it():
    image = with_disk(sky(), (128, 128), 12)
    x0, y0, side = crop.galaxy_box(image, scale=3.0, min_fraction=0.05)
    assert 2 * 12 < side < 256 // 3  # contains the disk, much smaller than the frame
    assert 3.0 * 12 <= side <= 3.0 * (12 + 4)  # ~ scale x radius (the blur widens the isophote a little)
    assert abs((x0 + side / 2) - 128) <= 1 and abs((y0 + side / 2) - 128) <= 1  # centred
    assert x0 == y0
    cut = crop.crop_to_galaxy(image, 3.0, 0.05)
    assert cut.shape == (side, side, 3) and cut.dtype == np.uint8 and cut.flags.c_contiguous
    np.testing.assert_array_equal(cut, image[y0:y0 + side, x0:x0 + side])
    assert bright_extent(cut) < side / 2  # the whole disk is inside, with a margin
    assert (cut.mean(axis=2) > 120).sum() == (image.mean(axis=2) > 120).sum()


def test_side_follows_the_objects_size_and_scale():
    sides = [crop.galaxy_box(with_disk(sky(), (128, 128), r), 3.0, 0.05)[2] for r in (8, 16, 32)]
    assert sides[0] < sides[1] < sides[2]
    assert 1.7 < sides[2] / sides[1] < 2.3 and 1.7 < sides[1] / sides[0] < 2.3
    image = with_disk(sky(), (128, 128), 16)
    assert crop.galaxy_box(image, 4.0, 0.05)[2] > crop.galaxy_box(image, 2.5, 0.05)[2]


def test_an_offset_object_is_still_inside_the_centred_crop():
    image = with_disk(sky(), (140, 120), 10)  # centroid 12 px right, 8 px up of the centre
    x0, y0, side = crop.galaxy_box(image, 2.0, 0.05)
    assert x0 <= 140 - 10 and x0 + side >= 140 + 10 and y0 <= 120 - 10 and y0 + side >= 120 + 10


def test_an_elongated_object_is_measured_along_its_major_axis():
    image = sky()
    cv2.ellipse(image, (128, 128), (50, 5), 30, 0, 360, (200, 200, 200), -1)
    side = crop.galaxy_box(image, 2.2, 0.05)[2]
    assert side >= 2 * 50  # an area radius (sqrt(50 * 5) = 16 px) would cut the disk's ends off
    assert bright_extent(crop.crop_to_galaxy(image, 2.2, 0.05)) < side / 2


def test_the_central_object_wins_over_a_bigger_brighter_neighbour():
    image = with_disk(with_disk(sky(), (128, 128), 10), (40, 40), 30, value=250)
    x0, y0, side = crop.galaxy_box(image, 3.0, 0.05)
    assert side < 60  # sized by the central disk, not the neighbour (or both)
    image = with_disk(with_disk(sky(), (131, 126), 3), (40, 40), 30, value=250)  # off the exact centre
    assert crop.galaxy_box(image, 3.0, 0.05)[2] < 40


def test_min_fraction_and_full_frame_clamps():
    image = with_disk(sky(), (128, 128), 4)
    assert crop.galaxy_box(image, 3.0, 0.25)[2] == 64  # ceil(0.25 x 256): never below
    assert crop.galaxy_box(with_disk(sky(), (128, 128), 120), 3.0, 0.25) == (0, 0, 256)  # never above
    assert crop.galaxy_box(sky(), 3.0, 0.25) == (0, 0, 256)  # only sky: the whole image
    flat = np.full((64, 64, 3), 90, np.uint8)
    assert crop.galaxy_box(flat, 3.0, 0.25) == (0, 0, 64)


def test_non_square_images_get_a_centred_square_of_at_most_the_short_side():
    image = with_disk(sky(shape=(200, 300)), (150, 100), 10)
    x0, y0, side = crop.galaxy_box(image, 3.0, 0.05)
    assert side <= 200 and abs(x0 + side / 2 - 150) <= 1 and abs(y0 + side / 2 - 100) <= 1
    assert crop.galaxy_box(sky(shape=(200, 300)), 3.0, 0.05) == (50, 0, 200)


def test_scale_zero_returns_the_input_and_the_input_is_never_changed():
    image = with_disk(sky(), (128, 128), 12)
    assert crop.crop_to_galaxy(image, 0, 0.25) is image
    before = image.copy()
    crop.crop_to_galaxy(image, 3.0, 0.25)
    np.testing.assert_array_equal(image, before)


def test_a_synthetic_small_galaxy_is_zoomed_in_and_a_large_one_is_not():
    # Generator version 3 draws disks at zoom 0.3-1.0: a zoomed-out one gets a tight crop.
    small = large = None
    for index in range(40):
        image = synthetic.render_galaxy(6, 256, synthetic.image_rng(3, index))
        side = crop.galaxy_box(image, 3.0, 0.25)[2]
        small = side if small is None else min(small, side)
        large = side if large is None else max(large, side)
    assert small <= 128 and large >= 200


@pytest.mark.parametrize("image, match", [
    (np.zeros((64, 64), np.uint8), "uint8 \\(H, W, 3\\)"),
    (np.zeros((64, 64, 3), np.float32), "uint8 \\(H, W, 3\\)"),
    ([[0]], "uint8 \\(H, W, 3\\)"),
    (np.zeros((6, 64, 3), np.uint8), "at least 8x8"),
])
def test_bad_images_are_refused_with_the_fix(image, match):
    with pytest.raises(PreprocessError, match=match):
        crop.galaxy_box(image, 3.0, 0.25)


@pytest.mark.parametrize("scale, min_fraction, match", [
    (-1.0, 0.25, "crop_scale must be > 0"),
    (0.0, 0.25, "crop_scale must be > 0"),
    (float("nan"), 0.25, "finite number"),
    (True, 0.25, "finite number"),
    (3.0, 0.0, "crop_min_fraction must be in \\(0, 1\\]"),
    (3.0, 1.5, "crop_min_fraction must be in \\(0, 1\\]"),
])
def test_bad_parameters_are_refused(scale, min_fraction, match):
    with pytest.raises(PreprocessError, match=match):
        crop.galaxy_box(sky(64), scale, min_fraction)


def test_the_tiny_image_error_does_not_suggest_a_setting_predict_cannot_change():
    """Issue 25 item 14: predict and the app cannot set crop_scale; the message says what they can do."""
    with pytest.raises(PreprocessError, match="Give a larger image") as info:
        crop.crop_to_galaxy(np.zeros((6, 64, 3), np.uint8), 2.0, 0.3)
    assert "crop_scale=0" not in str(info.value)
