"""Morphology statistics of the central galaxy: a fixed vector of numbers per image.

The classic non-parametric measures astronomers use to sort galaxies by eye-independent numbers,
computed on the sky-subtracted luminance of the galaxy-centred crop (`galaxy_core.preprocessing.crop`): light
concentration, inner and outer axis ratios and their position-angle twist, rotational asymmetry,
smoothness (clumpiness), Gini and M20, inner and outer colour, bright peaks (a second nucleus),
Fourier amplitudes of the azimuthal light profile (m = 1, 2, 3 in four annuli: lopsidedness, bars
and two-armed spirals) and the twist of the m = 2 phase between annuli (spiral winding).

Each statistic is measured at two crop sides, 2.5 and 5 radii of the central object (the object's
isophotal radius from `crop.central_radius`), so both the galaxy and its surroundings (a companion,
tidal features) are seen, on a `WORK_SIZE` px resampling of the crop. They are nearly invariant to
rotations and flips and to the image's side (a 256 px cutout and its 512 px enlargement give close
values). The offline demo feeds them to a small classifier (`galaxy_core.morphology.classifier`) whose
probabilities are averaged with the CNN's: statistics of the light distribution carry over from
synthetic to real galaxies better than a small CNN's pixel features (BENCHMARKS.md, "Real images").

Pure numpy + OpenCV, no state.

Example:
    >>> img = np.zeros((256, 256, 3), np.uint8)
    >>> _ = cv2.ellipse(img, (128, 128), (40, 10), 0, 0, 360, (180, 170, 160), -1)  # an edge-on disc
    >>> f = morphology_features(img)
    >>> f.shape, f.dtype
    ((67,), dtype('float32'))
    >>> round(float(f[FEATURE_NAMES.index("q_outer@2.5")]), 1)    # axis ratio of the outer light
    0.2
"""

from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

from galaxy_core.preprocessing.crop import central_radius
from galaxy_core.preprocessing.preprocess import to_rgb_uint8

# Side of the square the crop is resampled to before measuring (px).
WORK_SIZE = 96
# Crop sides, in radii of the central object.
CROP_RADII: tuple[float, ...] = (2.5, 5.0)
# Radius used when no central object is found (px of a 256 px frame).
FALLBACK_RADIUS = 30.0
# Frame width (px of the work image) whose median / MAD give the sky level and noise.
_BORDER = 5
_ANNULI = ((0.05, 0.2), (0.2, 0.4), (0.4, 0.65), (0.65, 1.0))

_STAT_NAMES: tuple[str, ...] = (
    "flux<0.1R", "flux<0.2R", "flux<0.35R", "flux<0.6R",
    "q_inner", "q_outer", "twist",
    "asymmetry", "smoothness", "gini", "m20",
    "colour_inner", "colour_outer",
    "log_peaks", "peak2_ratio", "peak2_distance",
    *(f"fourier_m{m}_a{a}" for a in range(len(_ANNULI)) for m in (1, 2, 3)),
    "m2_phase_step_01", "m2_phase_step_12", "m2_phase_step_23",
    "flux_outside", "log_snr",
)
# Names of the vector's entries, in order: the log radius, then every statistic at each crop side.
FEATURE_NAMES: tuple[str, ...] = ("log_radius", *(f"{name}@{k:g}" for k in CROP_RADII for name in _STAT_NAMES))
N_FEATURES = len(FEATURE_NAMES)

_yy, _xx = np.mgrid[0:WORK_SIZE, 0:WORK_SIZE].astype(np.float32)
_CENTRE = (WORK_SIZE - 1) / 2.0
_R = np.hypot(_xx - _CENTRE, _yy - _CENTRE)
_THETA = np.arctan2(_yy - _CENTRE, _xx - _CENTRE)


def morphology_features(image: np.ndarray) -> np.ndarray:
    """The morphology statistics of one image's central galaxy.

    Args:
        image: a cutout with the galaxy at the centre, in any layout `preprocess.to_rgb_uint8`
            takes (uint8 / uint16 / float in [0, 1]; gray, RGB or RGBA), any side (it is resampled
            to 256 px first, the scale the radii are measured at).

    Returns:
        float32 `(N_FEATURES,)`, finite; entry names in `FEATURE_NAMES`.

    Raises:
        PreprocessError: a layout or dtype `to_rgb_uint8` refuses (the message says which).
    """
    image = to_rgb_uint8(image)
    if image.shape[:2] != (256, 256):
        image = cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA)
    radius = central_radius(image) or FALLBACK_RADIUS
    values = [np.log(radius)]
    for k in CROP_RADII:
        values.extend(_statistics(_centred_crop(image, k * radius)))
    return np.nan_to_num(np.asarray(values, np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def features_batch(images: Iterable[np.ndarray]) -> np.ndarray:
    """`morphology_features` of each image, stacked: float32 `(N, N_FEATURES)`.

    Args:
        images: images as `morphology_features` takes them (any iterable: a list, an
            `(N, H, W, 3)` array, batches read from an HDF5 dataset).
    """
    rows = [morphology_features(image) for image in images]
    return np.stack(rows) if rows else np.zeros((0, N_FEATURES), np.float32)


def _centred_crop(image: np.ndarray, side: float) -> np.ndarray:
    full = image.shape[0]
    side = int(np.clip(side, 16, full))
    start = (full - side) // 2
    crop = image[start:start + side, start:start + side].astype(np.float32)
    return cv2.resize(crop, (WORK_SIZE, WORK_SIZE), interpolation=cv2.INTER_AREA)


def _frame(values: np.ndarray) -> np.ndarray:
    b = _BORDER
    return np.concatenate([values[:b].reshape(-1, *values.shape[2:]), values[-b:].reshape(-1, *values.shape[2:]),
                           values[:, :b].reshape(-1, *values.shape[2:]), values[:, -b:].reshape(-1, *values.shape[2:])])


def _statistics(crop: np.ndarray) -> list[float]:
    """The `_STAT_NAMES` values of one float32 `(WORK_SIZE, WORK_SIZE, 3)` crop."""
    lum = crop.mean(axis=2)
    frame = _frame(lum)
    sky = float(np.median(frame))
    noise = max(1.4826 * float(np.median(np.abs(frame - sky))), 0.5)
    light = np.clip(lum - sky, 0.0, None)
    rmax = WORK_SIZE / 2.0
    aperture = _R < rmax
    total = float(light[aperture].sum()) + 1e-9
    out = [float(light[_R < f * rmax].sum()) / total for f in (0.1, 0.2, 0.35, 0.6)]
    q_in, pa_in = _shape(light, _R < 0.3 * rmax)
    q_out, pa_out = _shape(light, (_R >= 0.3 * rmax) & aperture)
    twist = abs((pa_in - pa_out + np.pi / 2) % np.pi - np.pi / 2)
    out += [q_in, q_out, twist * (1.0 - q_out)]
    out.append(float(np.abs(light - light[::-1, ::-1])[aperture].sum()) / (2 * total))
    out.append(float(np.abs(light - cv2.GaussianBlur(light, (0, 0), 2.0))[aperture].sum()) / total)
    bright = aperture & (light > noise)
    out.append(_gini(light[bright]) if bright.sum() > 5 else 0.0)
    out.append(_m20(np.where(bright, light, 0.0)))
    colour = crop - np.median(np.concatenate([crop[:_BORDER].reshape(-1, 3), crop[-_BORDER:].reshape(-1, 3)]), axis=0)
    for mask in (_R < 0.2 * rmax, (_R >= 0.2 * rmax) & (_R < 0.6 * rmax)):
        red, blue = float(colour[..., 0][mask].sum()), float(colour[..., 2][mask].sum())
        out.append((red - blue) / (abs(red) + abs(blue) + 1e-6))
    out += _peaks(light, noise, aperture, rmax)
    phases = []
    for a0, a1 in _ANNULI:
        ring = (_R >= a0 * rmax) & (_R < a1 * rmax)
        weights, theta = light[ring], _THETA[ring]
        ring_total = float(weights.sum()) + 1e-9
        for m in (1, 2, 3):
            z = complex((weights * np.exp(1j * m * theta)).sum()) / ring_total
            out.append(abs(z))
            if m == 2:
                phases.append(np.angle(z) / 2)
    out += [abs((b - a + np.pi / 2) % np.pi - np.pi / 2) for a, b in zip(phases, phases[1:])]
    out.append(float(light[~aperture].sum()) / (float(light.sum()) + 1e-9))
    out.append(float(np.log10(total / noise + 1)))
    return out


def _shape(light: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Axis ratio (minor / major, 0..1) and position angle (rad) of the light inside `mask`."""
    w = light * mask
    total = float(w.sum()) + 1e-9
    mx, my = float((w * _xx).sum()) / total, float((w * _yy).sum()) / total
    cxx = float((w * (_xx - mx) ** 2).sum()) / total
    cyy = float((w * (_yy - my) ** 2).sum()) / total
    cxy = float((w * (_xx - mx) * (_yy - my)).sum()) / total
    eigval, eigvec = np.linalg.eigh(np.array([[cxx, cxy], [cxy, cyy]]) + 1e-6)
    ratio = float(np.sqrt(max(eigval[0], 1e-9) / max(eigval[1], 1e-9)))
    return ratio, float(np.arctan2(eigvec[1, 1], eigvec[0, 1]))


def _gini(values: np.ndarray) -> float:
    v = np.sort(np.abs(values))
    n = len(v)
    if n < 2 or v.sum() <= 0:
        return 0.0
    return float(((2 * np.arange(1, n + 1) - n - 1) * v).sum() / (v.mean() * n * (n - 1)))


def _m20(light: np.ndarray) -> float:
    """log10 of the second moment of the brightest 20% of the light over the total (about the centre)."""
    w, r2 = light.ravel(), (_R ** 2).ravel()
    total = float((w * r2).sum()) + 1e-9
    order = np.argsort(-w)
    brightest = np.cumsum(w[order]) <= 0.2 * w.sum()
    return float(np.log10(max(float((w[order][brightest] * r2[order][brightest]).sum()), 1e-9) / total))


def _peaks(light: np.ndarray, noise: float, aperture: np.ndarray, rmax: float) -> list[float]:
    """log(1 + number of bright local maxima), 2nd/1st peak ratio, their distance / rmax."""
    smooth = cv2.GaussianBlur(light, (0, 0), 1.5)
    is_peak = (smooth == cv2.dilate(smooth, np.ones((7, 7), np.uint8))) & (smooth > 5 * noise) & aperture
    values = smooth[is_peak]
    ys, xs = np.nonzero(is_peak)
    out = [float(np.log1p(is_peak.sum()))]
    if len(values) < 2:
        return out + [0.0, 0.0]
    order = np.argsort(-values)
    first, second = order[0], order[1]
    return out + [float(values[second] / values[first]),
                  float(np.hypot(xs[second] - xs[first], ys[second] - ys[first]) / rmax)]

