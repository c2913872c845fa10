"""Tests for galaxy_core.preprocessing.preprocess: image functions (shapes, dtypes, behaviour, argument checks).
The preprocessed cache is tested in test_cache.py."""

import threading

import cv2
import numpy as np
import pytest

from galaxy_core.preprocessing import preprocess as pp
from galaxy_core.config import Config
from galaxy_core.errors import PreprocessError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(40, 30, 3), dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def low_contrast_colour_image(size=64):
    """Orange image whose brightness varies only +-5 % around half: uint8 (size, size, 3)."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:size, :size]
    shade = 0.45 + 0.05 * (np.sin(xx / 6.0) * np.cos(yy / 5.0) + 1) + rng.normal(0, 0.005, (size, size))
    return np.clip(shade[..., None] * np.array([220.0, 140.0, 60.0]), 0, 255).astype(np.uint8)


def mean_tile_std(image, tiles=8):
    """Mean over tiles of the gray-level standard deviation (local contrast)."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    side = gray.shape[0] // tiles
    return np.mean([gray[i:i + side, j:j + side].std()
                    for i in range(0, gray.shape[0], side) for j in range(0, gray.shape[1], side)])


def hue_degrees(image):
    return cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)[..., 0].astype(np.float64) * 360.0 / 256.0


def hue_change(before, after):
    """Median absolute hue change in degrees (circular)."""
    diff = (hue_degrees(after) - hue_degrees(before) + 180.0) % 360.0 - 180.0
    return float(np.median(np.abs(diff)))


def dots_and_blob(size=48):
    """Dim background, a 1-px dot, a 2x2 dot and a bright disc of radius 8: uint8 (size, size, 3)."""
    image = np.full((size, size, 3), 20, dtype=np.uint8)
    image[5, 5] = 250
    image[10:12, 30:32] = 250
    yy, xx = np.mgrid[:size, :size]
    image[(yy - 32) ** 2 + (xx - 24) ** 2 <= 64] = 200
    return image


# --------------------------------------------------------------------------------------------
# to_rgb_uint8
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: RGB[..., 0],                                   # (H, W) gray
    lambda: RGB[..., :1],                                  # (H, W, 1)
    lambda: RGB,                                           # (H, W, 3)
    lambda: np.dstack([RGB, np.full(RGB.shape[:2], 255, np.uint8)]),  # RGBA opaque
    lambda: RGB.astype(np.uint16) * 257,                   # 16-bit
    lambda: RGB / 255.0,                                   # float64 in [0, 1]
    lambda: (RGB / 255.0).astype(np.float32),              # float32 in [0, 1]
], ids=["gray2d", "gray1ch", "rgb", "rgba", "uint16", "float64", "float32"])
def test_to_rgb_uint8_every_input_kind(make):
    image = make()
    out = pp.to_rgb_uint8(image)
    assert out.dtype == np.uint8 and out.shape == (40, 30, 3) and out.flags.c_contiguous
    # the first channel always survives exactly (gray is copied to all three)
    np.testing.assert_array_equal(out[..., 0], RGB[..., 0])
    if image.ndim == 2 or image.shape[2] == 1:
        np.testing.assert_array_equal(out[..., 1], out[..., 2])
    else:
        np.testing.assert_array_equal(out, RGB)


def test_to_rgb_uint8_scales_uint16_and_float_without_clipping():
    values16 = np.array([[0, 1000, 128 * 257, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(pp.to_rgb_uint8(values16)[0, :, 0], [0, 4, 128, 255])
    floats = np.array([[0.0, 0.5, 1.0]])
    np.testing.assert_array_equal(pp.to_rgb_uint8(floats)[0, :, 1], [0, 128, 255])
    big_endian = values16.astype(">u2")  # as read from FITS files
    np.testing.assert_array_equal(pp.to_rgb_uint8(big_endian)[0, :, 2], [0, 4, 128, 255])


def test_to_rgb_uint8_composites_rgba_on_black():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = [[0, 255], [128, 51]]
    out = pp.to_rgb_uint8(rgba)
    np.testing.assert_array_equal(out[..., 0], [[0, 200], [100, 40]])


@pytest.mark.parametrize("bad", [
    np.zeros((8, 8, 5), np.uint8),            # 5 channels
    np.zeros((8, 8, 2), np.uint8),            # 2 channels
    np.zeros((8, 8, 3), np.int32),            # int32
    np.zeros((8, 8, 3), np.int8),             # signed 8-bit
    np.zeros((2, 8, 8, 3), np.uint8),         # a batch: wrong ndim
    np.zeros((8,), np.uint8),                 # 1-D
    np.zeros((0, 8, 3), np.uint8),            # empty
    np.full((4, 4, 3), 1.5),                  # float outside [0, 1]
    np.full((4, 4, 3), np.nan),               # not finite
    [[1, 2], [3, 4]],                         # not an ndarray
], ids=["5ch", "2ch", "int32", "int8", "4d", "1d", "empty", "float>1", "nan", "list"])
def test_to_rgb_uint8_rejects_bad_input(bad):
    with pytest.raises(PreprocessError):
        pp.to_rgb_uint8(bad)


# --------------------------------------------------------------------------------------------
# resize_image
# --------------------------------------------------------------------------------------------
def test_resize_image_shapes_and_identity():
    assert pp.resize_image(RGB, 16).shape == (16, 16, 3)
    assert pp.resize_image(RGB, 100).shape == (100, 100, 3)
    assert pp.resize_image(RGB, 100).dtype == np.uint8
    square = RGB[:30]
    assert pp.resize_image(square, 30) is square


def test_resize_image_shrinks_by_area_averaging():
    # A 1-px checkerboard halved by INTER_AREA is flat mid-gray; nearest or linear would alias.
    board = ((np.indices((64, 64)).sum(axis=0) % 2) * 254).astype(np.uint8)
    small = pp.resize_image(np.repeat(board[..., None], 3, axis=2), 32)
    assert np.all(np.abs(small.astype(int) - 127) <= 1)


def test_resize_image_rejects_bad_args():
    with pytest.raises(PreprocessError):
        pp.resize_image(RGB, 0)
    with pytest.raises(PreprocessError):
        pp.resize_image(RGB, 2.5)
    with pytest.raises(PreprocessError):
        pp.resize_image(RGB[..., 0], 16)  # gray: convert with to_rgb_uint8 first


# --------------------------------------------------------------------------------------------
# apply_clahe
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["luminance", "per_channel"])
def test_clahe_raises_local_contrast(mode):
    image = low_contrast_colour_image()
    before = image.copy()
    out = pp.apply_clahe(image, clip_limit=2.0, tile_grid=8, channel_mode=mode)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert mean_tile_std(out) > 2.5 * mean_tile_std(image)
    np.testing.assert_array_equal(image, before)  # the input is not modified


def test_clahe_luminance_keeps_hue_per_channel_does_not():
    image = low_contrast_colour_image()
    luminance = pp.apply_clahe(image, 2.0, 8, "luminance")
    per_channel = pp.apply_clahe(image, 2.0, 8, "per_channel")
    assert hue_change(image, luminance) <= 1.5
    assert hue_change(image, per_channel) >= 4.0


def test_clahe_default_mode_is_luminance():
    image = low_contrast_colour_image()
    np.testing.assert_array_equal(pp.apply_clahe(image), pp.apply_clahe(image, channel_mode="luminance"))


def test_clahe_object_is_cached_per_parameters_and_thread():
    assert pp._clahe(2.0, 8) is pp._clahe(2.0, 8)
    assert pp._clahe(2.0, 8) is not pp._clahe(3.0, 8)
    other = []
    thread = threading.Thread(target=lambda: other.append(pp._clahe(2.0, 8)))
    thread.start()
    thread.join()
    assert other[0] is not pp._clahe(2.0, 8)


@pytest.mark.parametrize("kwargs", [
    {"clip_limit": -1.0}, {"clip_limit": 0}, {"clip_limit": float("nan")}, {"tile_grid": 0},
    {"tile_grid": 2.5}, {"channel_mode": "hsv"},
])
def test_clahe_rejects_bad_args(kwargs):
    with pytest.raises(PreprocessError):
        pp.apply_clahe(RGB, **kwargs)


# --------------------------------------------------------------------------------------------
# apply_opening
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["ellipse", "rect", "cross"])
def test_opening_removes_small_dots_keeps_blob(shape):
    image = dots_and_blob()
    out = pp.apply_opening(image, shape, 3, 1)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out[5, 5, 0] == 20                      # 1-px star gone
    assert np.all(out[10:12, 30:32] == 20)         # 2x2 star gone
    assert np.all(out[28:37, 20:29] == 200)        # the disc's core kept
    assert image[5, 5, 0] == 250                   # input untouched


@pytest.mark.parametrize("size, iterations", [(1, 1), (3, 0), (1, 0)])
def test_opening_identity_settings_return_input(size, iterations):
    image = dots_and_blob()
    assert pp.apply_opening(image, "ellipse", size, iterations) is image


@pytest.mark.parametrize("kwargs", [
    {"kernel_size": 4}, {"kernel_size": 0}, {"kernel_size": -3}, {"iterations": -1},
    {"kernel_shape": "disk"}, {"kernel_size": 3.0},
])
def test_opening_rejects_bad_args(kwargs):
    with pytest.raises(PreprocessError):
        pp.apply_opening(RGB, **kwargs)


# --------------------------------------------------------------------------------------------
# preprocess_image / preprocess_batch
# --------------------------------------------------------------------------------------------
def test_preprocess_image_is_the_composition():
    cfg = Config(image_size=32, channel_mode="per_channel", opening_kernel_shape="rect")
    raw = RNG.integers(0, 65536, size=(50, 40), dtype=np.uint16)   # 16-bit gray, not square
    expected = pp.to_rgb_uint8(raw)
    expected = pp.resize_image(expected, 32)
    expected = pp.apply_clahe(expected, cfg.clahe_clip_limit, cfg.clahe_tile_grid, "per_channel")
    expected = pp.apply_opening(expected, "rect", cfg.opening_kernel_size, cfg.opening_iterations)
    out = pp.preprocess_image(raw, cfg)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def test_crop_off_is_the_chain_without_a_crop():
    cfg = Config(image_size=32)
    stages = pp.preprocess_stages(RGB, cfg)
    assert list(stages) == list(pp.STAGES) == ["original", "galaxy crop", "CLAHE", "CLAHE + opening"]
    assert stages["galaxy crop"] is stages["original"]
    expected = pp.apply_clahe(pp.resize_image(RGB, 32), cfg.clahe_clip_limit, cfg.clahe_tile_grid)
    np.testing.assert_array_equal(stages["CLAHE"], expected)
    # crop_min_fraction does nothing while the crop is off
    np.testing.assert_array_equal(pp.preprocess_image(RGB, cfg.replace(crop_min_fraction=0.9)),
                                  pp.preprocess_image(RGB, cfg))


def test_crop_on_crops_the_full_resolution_image_before_the_resize():
    from galaxy_core.preprocessing.crop import crop_to_galaxy

    rng = np.random.default_rng(5)
    frame = np.clip(rng.normal(25, 3, (256, 256, 1)), 0, 255).repeat(3, axis=2).astype(np.uint8)
    cv2.circle(frame, (128, 128), 10, (210, 200, 190), -1)  # a 20 px galaxy in a 256 px cutout
    cfg = Config(image_size=64, crop_scale=3.0, crop_min_fraction=0.1)
    stages = pp.preprocess_stages(frame, cfg)
    np.testing.assert_array_equal(stages["galaxy crop"], pp.resize_image(crop_to_galaxy(frame, 3.0, 0.1), 64))
    np.testing.assert_array_equal(stages["original"], pp.resize_image(frame, 64))
    expected = pp.apply_opening(pp.apply_clahe(stages["galaxy crop"], cfg.clahe_clip_limit,
                                               cfg.clahe_tile_grid, cfg.channel_mode),
                                cfg.opening_kernel_shape, cfg.opening_kernel_size, cfg.opening_iterations)
    np.testing.assert_array_equal(pp.preprocess_image(frame, cfg), expected)

    def disk_pixels(image):
        return int((image.mean(axis=2) > 120).sum())

    # the galaxy fills much more of the model's input: ~5x5 px without the crop, ~20x20 with it
    assert disk_pixels(stages["galaxy crop"]) > 10 * disk_pixels(stages["original"]) > 0


def test_preprocess_batch_array_list_and_out():
    cfg = Config(image_size=32)
    batch = RNG.integers(0, 256, size=(3, 40, 40, 3), dtype=np.uint8)
    out = pp.preprocess_batch(batch, cfg)
    assert out.shape == (3, 32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[1], pp.preprocess_image(batch[1], cfg))
    mixed = pp.preprocess_batch([batch[0], RGB, RGB[..., 0]], cfg)   # different sizes and layouts
    np.testing.assert_array_equal(mixed[1], pp.preprocess_image(RGB, cfg))
    target = np.zeros((3, 32, 32, 3), np.uint8)
    assert pp.preprocess_batch(batch, cfg, out=target) is target
    np.testing.assert_array_equal(target, out)


def test_preprocess_batch_rejects_single_image_and_bad_out():
    cfg = Config(image_size=32)
    with pytest.raises(PreprocessError, match="preprocess_image"):
        pp.preprocess_batch(RGB, cfg)
    with pytest.raises(PreprocessError):
        pp.preprocess_batch(RGB[None], cfg, out=np.zeros((1, 16, 16, 3), np.uint8))
    with pytest.raises(PreprocessError):
        pp.preprocess_image(RGB, cfg={"image_size": 32})
