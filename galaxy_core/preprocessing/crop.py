"""Galaxy-centred crop ("zoom to the galaxy"): measure the central object, cut a square around it.

Galaxy10 DECaLS cutouts are 256 px with the target galaxy at the centre, and many galaxies span only
20-40 px of them: resized to a small model input they become blobs of a few pixels. This module
finds the central object and crops a square around the image centre whose side follows the
object's size, so that the resize after it keeps the galaxy's structure. It is the first stage of
the preprocessing chain (`galaxy_core.preprocessing.preprocess.preprocess_stages`, Config fields `crop_scale`
and `crop_min_fraction`); `crop_scale = 0` turns it off.

The measure, on the luminance (mean of R, G, B) lightly blurred against pixel noise:
1. sky level = median of a border frame, sky noise = 1.4826 x its median absolute deviation;
2. mask = pixels above sky + `THRESHOLD_SIGMA` x noise; its 8-connected components of at least
   `MIN_AREA` px (at 256 px; smaller ones are noise peaks) are the objects;
3. the central object = the largest object that reaches a small window at the image centre, else
   the object nearest the centre if it comes within a quarter of the side of it;
4. its radius = isophotal semi-major axis `a = 2 sqrt(largest eigenvalue of the covariance of its
   pixel coordinates)` (exact for a uniform ellipse) plus the offset of its centroid from the image
   centre, so that a square of side `2 a` about the centre contains it;
5. crop side = `crop_scale x a`, clamped to `[crop_min_fraction x min(H, W), min(H, W)]`.

No central object (a blank, flat or sky-only image) -> the whole image (the largest centred
square). Pure numpy + OpenCV, no state; the same function runs on synthetic training images and on
real cutouts and uploads.

Example:
    >>> img = np.zeros((256, 256, 3), np.uint8)
    >>> _ = cv2.circle(img, (128, 128), 20, (200, 200, 200), -1)   # a disk of radius 20 px, 256 px frame
    >>> galaxy_box(img, scale=3.0, min_fraction=0.1)                # (x0, y0, side)
    (93, 93, 69)
    >>> crop_to_galaxy(img, 3.0, 0.1).shape
    (69, 69, 3)
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from galaxy_core.errors import PreprocessError

# A pixel belongs to an object when its blurred luminance is this many robust sigmas above the sky.
THRESHOLD_SIGMA = 3.0
# The sky noise estimate never goes below this many grey levels (flat or noiseless skies have MAD 0).
MIN_NOISE_LEVELS = 0.5
# Smallest object, in pixels of a 256 x 256 image (scaled with the image's area, at least 3 px):
# smaller components above the threshold are sky-noise peaks.
MIN_AREA = 20.0


def galaxy_box(image: np.ndarray, scale: float, min_fraction: float) -> tuple[int, int, int]:
    """The square to crop around the central object: `(x0, y0, side)` in pixels.

    Args:
        image: uint8 `(H, W, 3)` RGB (e.g. `preprocess.to_rgb_uint8` output), at least 8x8 px.
        scale: crop side in units of the central object's radius `a` (> 0; e.g. 3 keeps a margin of
            half a radius around an isophotal diameter of 2 a).
        min_fraction: smallest side as a fraction of `min(H, W)`, in (0, 1].

    Returns:
        `(x0, y0, side)` ints: the crop is `image[y0:y0 + side, x0:x0 + side]`, centred on the image
        centre (to within half a pixel), `side` in `[ceil(min_fraction * min(H, W)), min(H, W)]`.

    Raises:
        PreprocessError: not a uint8 `(H, W, 3)` image, smaller than 8x8, or scale / min_fraction
            out of range.
    """
    image = _check_image(image)
    scale, min_fraction = _check_params(scale, min_fraction)
    height, width = image.shape[:2]
    full = min(height, width)
    radius = central_radius(image)
    smallest = min(full, math.ceil(min_fraction * full - 1e-9))
    side = full if radius is None else int(min(full, max(smallest, round(scale * radius))))
    return (width - side) // 2, (height - side) // 2, side


def crop_to_galaxy(image: np.ndarray, scale: float, min_fraction: float) -> np.ndarray:
    """Crop a square centred on the image centre, sized by the central object (see `galaxy_box`).

    Args:
        image: uint8 `(H, W, 3)` RGB.
        scale: crop side in units of the central object's radius; 0 = no crop.
        min_fraction: smallest side as a fraction of `min(H, W)`, in (0, 1].

    Returns:
        uint8 `(side, side, 3)`, a new C-contiguous array; the input itself when `scale == 0`.
    """
    if isinstance(scale, (int, float, np.number)) and not isinstance(scale, (bool, np.bool_)) and scale == 0:
        return image
    x0, y0, side = galaxy_box(image, scale, min_fraction)
    return np.ascontiguousarray(image[y0:y0 + side, x0:x0 + side])


def central_radius(image: np.ndarray) -> float | None:
    """Isophotal radius of the object at the image centre, in pixels (None when there is none).

    Args:
        image: uint8 `(H, W, 3)` RGB, at least 8x8 px.

    Returns:
        `a + d` as a float: `a` = 2 sqrt(largest eigenvalue of the object's pixel-coordinate
        covariance) (the semi-major axis for a uniform ellipse), `d` = distance of its centroid from
        the image centre; None when there is no central object (see the module's steps 2-3).
    """
    image = _check_image(image)
    height, width = image.shape[:2]
    lum = image.astype(np.float32).mean(axis=2)
    sigma = max(0.7, min(height, width) / 256.0)  # 1 px at 256 px: against pixel noise, not detail
    lum = cv2.GaussianBlur(lum, (0, 0), sigma)
    border = max(2, min(height, width) // 16)
    frame = np.concatenate([lum[:border].ravel(), lum[-border:].ravel(),
                            lum[border:-border, :border].ravel(), lum[border:-border, -border:].ravel()])
    sky = float(np.median(frame))
    noise = max(1.4826 * float(np.median(np.abs(frame - sky))), MIN_NOISE_LEVELS)
    mask = (lum > sky + THRESHOLD_SIGMA * noise).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    # Noise peaks above the threshold are a few pixels each: objects need MIN_AREA (20 px at 256 px).
    min_area = max(3.0, MIN_AREA * (height * width) / 256 ** 2)
    objects = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= min_area)
    objects = objects[objects > 0]  # 0 is the background
    if objects.size == 0:
        return None
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    w = max(1, min(height, width) // 32)
    window = labels[int(cy) - w + 1:int(cy) + w + 1, int(cx) - w + 1:int(cx) + w + 1]
    central = np.intersect1d(np.unique(window), objects)
    if central.size:
        label = int(central[np.argmax(stats[central, cv2.CC_STAT_AREA])])
    else:  # the object pixel nearest the centre, if within a quarter of the side
        ys, xs = np.nonzero(np.isin(labels, objects))
        d2 = (ys - cy) ** 2 + (xs - cx) ** 2
        nearest = int(np.argmin(d2))
        if d2[nearest] > (min(height, width) / 4.0) ** 2:
            return None
        label = int(labels[ys[nearest], xs[nearest]])
    ys, xs = np.nonzero(labels == label)
    coords = np.stack([xs, ys]).astype(np.float64)
    centroid = coords.mean(axis=1)
    cov = np.atleast_2d(np.cov(coords)) if coords.shape[1] > 1 else np.zeros((2, 2))
    major = float(np.linalg.eigvalsh(cov + np.eye(2) / 12.0)[-1])  # + pixel extent (1/12 px^2)
    offset = float(math.hypot(centroid[0] - cx, centroid[1] - cy))
    return 2.0 * math.sqrt(major) + offset


def _check_image(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise PreprocessError(f"The galaxy crop expects a uint8 (H, W, 3) RGB image; got {got}. "
                              "Convert it with preprocess.to_rgb_uint8 first.")
    if min(image.shape[:2]) < 8:
        raise PreprocessError(f"The galaxy crop needs an image of at least 8x8 px; got {image.shape[:2]}. "
                              "Give a larger image (this run crops to the galaxy; only training can turn "
                              "the crop off, with --crop-scale 0).")
    return image


def _check_params(scale: Any, min_fraction: Any) -> tuple[float, float]:
    for name, value in (("crop_scale", scale), ("crop_min_fraction", min_fraction)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)) \
                or not np.isfinite(value):
            raise PreprocessError(f"{name} must be a finite number; got {value!r}.")
    if scale <= 0:
        raise PreprocessError(f"crop_scale must be > 0 for a crop (0 = no crop); got {scale}.")
    if not 0 < min_fraction <= 1:
        raise PreprocessError(f"crop_min_fraction must be in (0, 1] (a fraction of the image side); "
                              f"got {min_fraction}.")
    return float(scale), float(min_fraction)
