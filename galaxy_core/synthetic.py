"""Synthetic Galaxy10-format data: mock DECaLS-like galaxy cutouts, labelled SYNTHETIC.

The images are rendered the way mock galaxy images are made in astronomy, on a pixel grid at the
target size (no upsampling):

1. Analytic surface-brightness components in three bands (g, r, z): Sersic bulges and ellipticals,
   inclined exponential disks with logarithmic spiral arms, bars, rings, star-forming knots, thin
   edge-on disks with dust lanes, tidal tails and bridges, irregular clumps.
2. Convolution with a seeing PSF (Gaussian core + wider wing, in the Fourier domain), foreground
   stars and faint background galaxies.
3. Sky background and (slightly correlated) noise, then the Legacy Survey `sdss_rgb` asinh stretch
   (z -> R, r -> G, g -> B) to uint8 RGB.

The class is decided by morphology only; colours, brightness and size are drawn from wide,
overlapping ranges so that no class can be told apart by colour or brightness alone.

Domain randomisation (version 3 on): each galaxy is drawn at a random apparent size (`Canvas.set_zoom`,
`ZOOM_RANGE`), and seeing, sky noise and stretch are drawn from ranges wider than the survey's
(`PSF_FWHM_PX`, `NOISE_RANGE`, `SOFTENING_RANGE`, `Q_STRETCH_RANGE`), so that a model trained on
these images depends less on any one of them when it meets real cutouts. Version 4 keeps a
merger's two members apart (`MERGER_SEPARATION`), so that two overlapping peaks alone do not mean
"merging".

Lengths are in units of the cutout side (the frame is [-0.5, 0.5) in x and y; a galaxy drawn at
zoom z uses "galaxy units" = frame units / z), fluxes in scaled band units per unit area, so that
the same galaxy looks the same at any image size.

CLI: `python -m galaxy_core.synthetic OUT.h5 --n N --size S --seed K [--balance uniform]`.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from galaxy_core.config import CLASS_NAMES
from galaxy_core.data import CLASS_COUNTS
from galaxy_core.errors import DatasetError, GalaxyError
from galaxy_core.io import atomic_path, progress_bar

NUM_CLASSES = len(CLASS_NAMES)
BALANCES = ("real", "uniform")
PXSCALE_ARCSEC = 0.262  # DECaLS pixel scale written to `pxscale` (arcsec / pixel)
GENERATOR_NAME = "galaxy_core.synthetic"
# Raised whenever the rendering changes, so files made by an older generator are not reused
# (the demo's data file name includes it).
GENERATOR_VERSION = 4
SYNTHETIC_NOTE = ("SYNTHETIC data: mock galaxies rendered by galaxy_core.synthetic (Sersic bulges, "
                  "disks, spiral arms, bars, mergers, PSF, noise). Not survey images; ra, dec and "
                  "redshift are random placeholders.")

# Legacy Survey viewer colour mapping: band -> (RGB plane, scale).
_BAND_SCALES = np.array([6.0, 3.4, 2.2])  # g, r, z
_RGB_PLANE = (2, 1, 0)  # g -> B, r -> G, z -> R
_CHUNK = 32  # images per worker task

# Domain randomisation (generator version 3): every image draws its galaxy's apparent size and its
# observing conditions from ranges wider than the real ones, so that a model trained here does not
# depend on any one of them. Apparent size: the galaxy is drawn at a log-uniform zoom (1 = the
# sizes in the class renderers). Real Galaxy10 DECaLS disks often span only 20-40 of 256 px, so
# disk, merging and disturbed classes reach small zooms; smooth classes are compact already, and
# edge-on disks stay long (a short one is a cigar). A galaxy drawn smaller keeps more surface
# brightness than plain distance would give (flux ~ zoom, not zoom^2): small galaxies in a
# classified catalogue are the bright ones, and their disks and arms stay visible.
ZOOM_RANGE = (0.3, 1.0)
ZOOM_RANGES = {2: (0.6, 1.25), 3: (0.6, 1.25), 4: (0.6, 1.25), 8: (0.55, 1.0), 9: (0.55, 1.0)}
# Observing conditions, wider than DECaLS's own (version 2 drew 2.6-5.2 px, 0.006-0.014, 0.025-0.04
# and 15-25): seeing FWHM in pixels at 256 px, sky noise std (scaled flux units at 256 px,
# log-uniform), the stretch's softening m (sky grey level) and asinh Q.
PSF_FWHM_PX = (2.0, 8.0)
NOISE_RANGE = (0.004, 0.03)
SOFTENING_RANGE = (0.008, 0.045)
Q_STRETCH_RANGE = (8.0, 40.0)
# Separation of a merger's two main members (galaxy units at zoom 1; member effective radii are
# 0.02-0.045). Version 4 raised the lower end from 0.04 to 0.08: at 0.04 the two members overlap into
# one elongated body with two peaks, which is also what a real barred spiral's bar and bulge look
# like at 64 px, and real barred spirals were called Merging (BENCHMARKS.md, "Real images").
MERGER_SEPARATION = (0.08, 0.2)


# --------------------------------------------------------------------------------------------
# Colours
# --------------------------------------------------------------------------------------------
def band_colour(g_r: float, r_z: float) -> np.ndarray:
    """Relative scaled fluxes in (g, r, z) for colours g-r and r-z (magnitudes), mean 1.

    Returns:
        float64 `(3,)` (or `(k, 3)` for arrays of colours `(k,)`): per-band multiplier of a component's flux, in the display scaling of the
        Legacy Survey viewer (so (1, 1, 1) is grey and a larger g entry is bluer).
    """
    if np.ndim(g_r) == 0 and np.ndim(r_z) == 0:  # fast path: called a few times per image
        g, r, z = 6.0 * 10 ** (-0.4 * float(g_r)), 3.4, 2.2 * 10 ** (0.4 * float(r_z))
        mean = (g + r + z) / 3.0
        return np.array([g / mean, r / mean, z / mean])
    g_r, r_z = np.asarray(g_r, np.float64), np.asarray(r_z, np.float64)
    flux = np.stack([10 ** (-0.4 * g_r), np.ones_like(g_r), 10 ** (0.4 * r_z)], axis=-1) * _BAND_SCALES
    return flux / flux.mean(axis=-1, keepdims=True)


class _Palette:
    """Per-image colour draws: stellar-population colours plus a global offset (scatter).

    Typical colours: old bulges/ellipticals g-r ~ 0.95, disks ~ 0.7, star-forming knots ~ 0.35.
    A per-image offset (dust, redshift, calibration) of ~0.12 mag and a per-component scatter make
    the colour distributions of all classes overlap widely.
    """

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        d_gr = rng.normal(0.0, 0.12)  # reddening / k-correction move both colours together
        self.offset = np.array([d_gr, 0.6 * d_gr + rng.normal(0.0, 0.04)])

    def colour(self, g_r: float, r_z: float, scatter: float = 0.08) -> np.ndarray:
        d = self.rng.normal(0.0, scatter, size=2) + self.offset
        return band_colour(g_r + d[0], r_z + d[1] * 0.6)

    def old(self) -> np.ndarray:
        return self.colour(0.95, 0.55)

    def disk(self) -> np.ndarray:
        return self.colour(0.68, 0.4)

    def young(self) -> np.ndarray:
        return self.colour(0.35, 0.2)

    def random_galaxy(self) -> np.ndarray:
        return self.colour(self.rng.uniform(0.4, 1.2), self.rng.uniform(0.2, 0.7), scatter=0.05)


# --------------------------------------------------------------------------------------------
# Canvas: band images on a grid, PSF, noise, stretch
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in frame units: float32 `(size, size)` each, in [-0.5, 0.5)."""
    c = ((np.arange(size, dtype=np.float32) + 0.5) / size - 0.5)
    return np.broadcast_to(c[None, :], (size, size)), np.broadcast_to(c[:, None], (size, size))


def _gauss_kernel_1d(size: int, sigma_px: float) -> np.ndarray:
    """Sampled, unit-sum periodic Gaussian of `sigma_px` pixels: float64 `(size,)`, peak at index 0."""
    offsets = np.fft.fftfreq(size) * size  # 0, 1, 2, ..., -2, -1
    if sigma_px < 1e-3:
        return (offsets == 0).astype(np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma_px) ** 2)
    return kernel / kernel.sum()


def _gauss_tf(size: int, sigma_px: float) -> np.ndarray:
    """Transfer function of a unit-sum Gaussian of `sigma_px` pixels on the rfft2 grid.

    The DFT of the sampled kernel (not the continuous Gaussian's transform cut at Nyquist), so that
    convolving a bright unresolved core gives no ringing.

    Returns:
        float64 `(size, size // 2 + 1)`.
    """
    kernel = _gauss_kernel_1d(size, sigma_px)
    return np.fft.fft(kernel).real[:, None] * np.fft.rfft(kernel).real[None, :]


def _sersic_b(n: float) -> float:
    """b_n so that r_e encloses half the light (Ciotti & Bertin 1999 expansion)."""
    return 2 * n - 1 / 3 + 4 / (405 * n) + 46 / (25515 * n * n)


def _sersic_total(re: float, n: float, q: float) -> float:
    """Total flux of a Sersic profile with I(r_e) = 1, r_e `re` and axis ratio `q`."""
    b = _sersic_b(n)
    return 2 * math.pi * q * re * re * n * math.exp(b) * math.gamma(2 * n) / b ** (2 * n)


class Canvas:
    """Accumulates galaxy light, stars and sky in three bands, then makes the RGB cutout.

    Layers (each float32 `(3, size, size)`, bands g, r, z):
        galaxy: sharp galaxy light (dust lanes can attenuate it).
        diffuse: low-surface-brightness light (tidal tails, envelopes), blurred more than the PSF.
        stars: foreground stars and background galaxies (not attenuated by the galaxy's dust).
    """

    def __init__(self, size: int, rng: np.random.Generator):
        self.size, self.rng = size, rng
        self.galaxy = np.zeros((3, size, size), np.float32)
        self.diffuse = np.zeros((3, size, size), np.float32)
        self.stars = np.zeros((3, size, size), np.float32)
        self.set_zoom(1.0)

    def set_zoom(self, zoom: float) -> None:
        """Draw what follows `zoom` times its size (lengths in "galaxy units" = frame units / zoom).

        Surface brightness is kept: a galaxy drawn at zoom 0.5 is the same galaxy twice as far
        away (half the size, a quarter of the flux), as the apparent sizes of real cutouts vary.
        """
        self.zoom = float(zoom)
        gx, gy = _grid(self.size)
        self.x, self.y = gx / np.float32(zoom), gy / np.float32(zoom)
        self.pixel = 1.0 / (self.size * self.zoom)  # pixel side in galaxy units

    # -- geometry ------------------------------------------------------------------------
    def rotated(self, x0: float, y0: float, pa: float) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates along (u) and across (v) the position angle `pa` (radians) about (x0, y0)."""
        dx, dy = self.x - np.float32(x0), self.y - np.float32(y0)
        c, s = np.float32(math.cos(pa)), np.float32(math.sin(pa))
        return dx * c + dy * s, dy * c - dx * s

    # -- components ----------------------------------------------------------------------
    def add(self, layer: np.ndarray, image: np.ndarray, colour: np.ndarray) -> None:
        """Add a 2-D surface-brightness map `(size, size)` with a band colour `(3,)` to a layer."""
        for b in range(3):
            layer[b] += np.float32(colour[b]) * image

    def sersic(self, x0, y0, re, n, q, pa, flux, boxy: float = 2.0) -> np.ndarray:
        """Sersic surface brightness, total flux `flux`: float32 `(size, size)`.

        `boxy` > 2 makes boxy isophotes (|u|^c + |v/q|^c), as for peanut bulges.
        """
        u, v = self.rotated(x0, y0, pa)
        soft = np.float32((0.35 * self.pixel) ** 2)  # avoid an unresolved single-pixel cusp
        if boxy == 2.0:
            r = np.sqrt(u * u + (v / np.float32(q)) ** 2 + soft)
        else:
            r = (np.abs(u) ** boxy + np.abs(v / np.float32(q)) ** boxy) ** (1.0 / boxy) + np.sqrt(soft)
        b = _sersic_b(n)
        ie = flux / _sersic_total(re, n, q)
        return (ie * np.exp(-b * ((r / np.float32(re)) ** np.float32(1.0 / n) - 1.0))).astype(np.float32)

    def points(self, layer: np.ndarray, xs, ys, fluxes, colours) -> None:
        """Splat point sources (bilinear) into a layer; the PSF gives them their shape.

        Args:
            xs, ys: float `(k,)` positions in galaxy units (frame units at zoom 1).
            fluxes: float `(k,)` total fluxes.
            colours: float `(k, 3)` or `(3,)` band colours.
        """
        s, z = self.size, self.zoom
        px = (np.asarray(xs) * z + 0.5) * s - 0.5
        py = (np.asarray(ys) * z + 0.5) * s - 0.5
        keep = (px >= 0) & (px < s - 1) & (py >= 0) & (py < s - 1)
        colours = np.broadcast_to(np.asarray(colours, dtype=np.float64), (len(px), 3))[keep]
        px, py, f = px[keep], py[keep], np.asarray(fluxes, dtype=np.float64)[keep] * (s * z) ** 2
        ix, iy = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
        fx, fy = px - ix, py - iy
        flat = layer.reshape(3, -1)
        for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                          (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            idx = (iy + dy) * s + (ix + dx)
            for b in range(3):
                np.add.at(flat[b], idx, (f * w * colours[:, b]).astype(np.float32))

    def smooth_field(self, sigma: float) -> np.ndarray:
        """Gaussian random field smoothed on `sigma` galaxy units, unit std: float32 `(size, size)`."""
        s = self.size
        white = self.rng.standard_normal((s, s))
        field = np.fft.irfft2(np.fft.rfft2(white) * _gauss_tf(s, sigma * s * self.zoom), s=(s, s))
        return (field / (field.std() + 1e-12)).astype(np.float32)

    def dust_lane(self, x0, y0, pa, width, depth, length) -> None:
        """Attenuate the galaxy layer along a mid-plane lane (stronger in g than in z)."""
        u, v = self.rotated(x0, y0, pa)
        lane = np.exp(-0.5 * (v / np.float32(width)) ** 2 - (u / np.float32(length)) ** 2)
        for b, tau in enumerate(depth * np.array([1.25, 1.0, 0.7])):
            self.galaxy[b] *= np.exp(-np.float32(tau) * lane)

    # -- final image ---------------------------------------------------------------------
    def render(self, psf_fwhm: float, noise: float, softening: float, q_stretch: float,
               diffuse_sigma: float) -> np.ndarray:
        """PSF-convolve, add sky noise and stretch: uint8 `(size, size, 3)`.

        Args:
            psf_fwhm: seeing FWHM in frame units.
            noise: sky noise std per band in scaled flux units at 256 px (lower when smaller,
                as for a downsampled cutout, by (size / 256) ** 0.6).
            softening: `m` of the sdss_rgb stretch (sets the sky's grey level).
            q_stretch: `Q` of the asinh stretch.
            diffuse_sigma: extra Gaussian blur of the diffuse layer, frame units.
        """
        s = self.size
        # At least 0.7 px: a real cutout downsampled to a small size is smoothed by resampling.
        sigma_px = max(psf_fwhm * s / 2.3548, 0.7)
        psf = 0.85 * _gauss_tf(s, sigma_px) + 0.15 * _gauss_tf(s, 2.8 * sigma_px)
        diffuse_tf = psf * _gauss_tf(s, diffuse_sigma * s)
        # Correlated noise, as in resampled survey cutouts: white noise through a small kernel.
        noise_sigma_px = 0.6 * s / 256
        noise_tf = _gauss_tf(s, noise_sigma_px)
        k1 = _gauss_kernel_1d(s, noise_sigma_px)
        # Below 256 px the noise falls more slowly than a plain 1/size: survey noise is correlated
        # and the stretch is applied before a real cutout is downsampled, so its speckle survives.
        noise_px = noise * min(1.0, s / 256) ** 0.6 / float(np.sum(k1 ** 2))  # std after the kernel
        spec = (np.fft.rfft2(self.galaxy + self.stars) * psf
                + np.fft.rfft2(self.diffuse) * diffuse_tf
                + np.fft.rfft2(self.rng.standard_normal((3, s, s)) * noise_px) * noise_tf)
        bands = np.fft.irfft2(spec, s=(s, s))  # (3, s, s) g, r, z
        return sdss_rgb(bands, softening, q_stretch)


def sdss_rgb(bands: np.ndarray, m: float = 0.03, q: float = 20.0) -> np.ndarray:
    """Legacy Survey style colour-preserving asinh stretch (Lupton et al. 2004).

    Args:
        bands: float `(3, H, W)` scaled fluxes in g, r, z.
        m: softening added to every band (sky grey level).
        q: asinh non-linearity.

    Returns:
        uint8 `(H, W, 3)` RGB (z -> R, r -> G, g -> B).
    """
    planes = np.maximum(0.0, bands + m)
    mean = planes.mean(axis=0)
    f = np.arcsinh(q * mean) / math.sqrt(q)
    ratio = f / np.maximum(mean, 1e-6)
    rgb = np.empty((bands.shape[1], bands.shape[2], 3), np.float32)
    for b, plane in enumerate(_RGB_PLANE):
        rgb[..., plane] = planes[b] * ratio
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Galaxy components
# --------------------------------------------------------------------------------------------
def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


class _Disk:
    """An inclined disk's frame: maps between the image and the disk plane."""

    def __init__(self, cv: Canvas, x0, y0, pa, incl, thickness=0.12):
        self.cv, self.x0, self.y0, self.pa = cv, x0, y0, pa
        self.cos_i = math.cos(incl)
        # Projected axis ratio of a disk of intrinsic thickness q0 (Hubble 1926).
        self.q = math.sqrt(self.cos_i ** 2 + thickness ** 2 * (1 - self.cos_i ** 2))
        u, v = cv.rotated(x0, y0, pa)
        self.u, self.w = u, v / np.float32(self.q)  # disk-plane coordinates
        self.r = np.sqrt(self.u * self.u + self.w * self.w + np.float32((0.3 * cv.pixel) ** 2))
        self.theta = np.arctan2(self.w, self.u)

    def to_image(self, r, theta) -> tuple[np.ndarray, np.ndarray]:
        """Disk-plane polar (r, theta) -> image (x, y) in frame units."""
        u, w = r * np.cos(theta), r * np.sin(theta) * self.q
        c, s = math.cos(self.pa), math.sin(self.pa)
        return self.x0 + u * c - w * s, self.y0 + u * s + w * c

    def exponential(self, h: float, flux: float) -> np.ndarray:
        """Exponential disk with scale length `h` and total flux `flux` (projected)."""
        return (flux / (2 * math.pi * h * h * self.q) * np.exp(-self.r / np.float32(h))).astype(np.float32)


def _arm_weight(k: float) -> float:
    """Mean of ((1 + cos psi) / 2)^k over psi (normalises the arm modulation)."""
    return math.gamma(k + 0.5) / (math.sqrt(math.pi) * math.gamma(k + 1))


def _spiral_disk(cv: Canvas, pal: _Palette, disk: _Disk, h: float, flux: float, *, arms: int,
                 pitch_deg: float, arm_frac: float, r_start: float, phase: float, sharpness: float,
                 knots: int, flocculence: float, knot_frac: float = 0.07) -> None:
    """An exponential disk whose light is partly in logarithmic spiral arms plus knots."""
    rng = cv.rng
    chir = rng.choice([-1.0, 1.0])
    cot = 1.0 / math.tan(math.radians(pitch_deg))
    r = disk.r
    lnr = np.log(np.maximum(r, np.float32(1e-4)) / np.float32(r_start))
    psi = arms * (disk.theta - phase - chir * cot * lnr)
    wave = ((1.0 + np.cos(psi)) * 0.5) ** np.float32(sharpness) / np.float32(_arm_weight(sharpness))
    if flocculence > 0:  # patchy, broken arms
        wave *= np.exp(np.float32(flocculence) * cv.smooth_field(0.6 * h) - 0.5 * flocculence ** 2)
    lopsided = rng.uniform(0.0, 0.4)  # one side's arms brighter: real spirals are not m-fold symmetric
    wave *= 1.0 + np.float32(lopsided) * np.cos(disk.theta - np.float32(rng.uniform(0, 2 * math.pi)))
    taper = np.clip((r - np.float32(0.6 * r_start)) / np.float32(0.6 * r_start + 1e-6), 0, 1)
    base = disk.exponential(h, flux)
    arm_amp = np.float32(arm_frac) * taper
    cv.add(cv.galaxy, base * (1 - arm_amp), pal.disk())
    cv.add(cv.galaxy, base * arm_amp * wave, pal.colour(0.5, 0.3))
    if knots:  # HII regions along the arms
        rr = r_start * 0.8 + rng.gamma(2.0, h * 0.9, size=knots)
        j = rng.integers(0, arms, size=knots)
        th = phase + 2 * math.pi * j / arms + chir * cot * np.log(rr / r_start)
        th += rng.normal(0, 0.18, size=knots)
        xs, ys = disk.to_image(rr, th)
        fl = rng.exponential(1.0, knots)
        fl *= knot_frac * flux / fl.sum()
        cv.points(cv.diffuse, xs, ys, fl, pal.young())  # slightly resolved blobs, not stars


def _bulge(cv: Canvas, pal: _Palette, x0, y0, re, n, q, pa, flux, boxy=2.0) -> None:
    cv.add(cv.galaxy, cv.sersic(x0, y0, re, n, q, pa, flux, boxy), pal.old())


# --------------------------------------------------------------------------------------------
# Classes (morphology decides the class)
# --------------------------------------------------------------------------------------------
def _centre(rng) -> tuple[float, float]:
    return tuple(rng.normal(0.0, 0.012, size=2))


def _flux(rng, lo=0.4, hi=2.5) -> float:
    """Total galaxy flux (scaled band units x frame area, relative to the sky stretch)."""
    return _loguniform(rng, lo, hi) * 1e-2


def _smooth(cv: Canvas, pal: _Palette, q_range, n_range, re_range, flux_range=(0.6, 3.0)) -> None:
    rng = cv.rng
    x0, y0 = _centre(rng)
    pa = rng.uniform(0, math.pi)
    q = rng.uniform(*q_range)
    n = rng.uniform(*n_range)
    re = _loguniform(rng, *re_range)
    flux = _flux(rng, *flux_range)
    colour = pal.old()
    if rng.random() < 0.5:  # a second, shallower component (as in S0 / cD envelopes)
        f_in = rng.uniform(0.35, 0.7)
        cv.add(cv.galaxy, cv.sersic(x0, y0, re * rng.uniform(0.3, 0.6), n, min(1.0, q * rng.uniform(1.0, 1.15)),
                                    pa, flux * f_in), colour)
        cv.add(cv.galaxy, cv.sersic(x0, y0, re * rng.uniform(1.0, 1.6), max(0.8, n * 0.5), q,
                                    pa + rng.normal(0, 0.05), flux * (1 - f_in)),
               pal.colour(0.88, 0.52))
    else:
        cv.add(cv.galaxy, cv.sersic(x0, y0, re, n, q, pa, flux), colour)


# Real smooth galaxies in Galaxy10 DECaLS are compact (a few % of the cutout); cigars are small, short
# and faint, not the long thin disks of the edge-on classes (which differ by length, lanes, bulges).
def _round_smooth(cv, pal):
    _smooth(cv, pal, (0.82, 1.0), (2.5, 5.5), (0.015, 0.06))


def _inbetween_smooth(cv, pal):
    _smooth(cv, pal, (0.45, 0.72), (1.5, 4.5), (0.016, 0.055))


def _cigar(cv, pal):
    _smooth(cv, pal, (0.14, 0.3), (0.7, 2.0), (0.025, 0.05), flux_range=(0.5, 2.0))


def _edge_on(cv: Canvas, pal: _Palette, bulge: bool) -> None:
    rng = cv.rng
    x0, y0 = _centre(rng)
    pa = rng.uniform(0, math.pi)
    h = _loguniform(rng, 0.06, 0.13)  # real edge-on disks span most of the cutout
    flux = _flux(rng, 0.6, 3.0) * h / 0.075
    q_disk = rng.uniform(0.06, 0.13)
    n_disk = rng.uniform(0.6, 1.1)
    b_frac = rng.uniform(0.35, 0.65) if bulge else 0.0
    disk_col = pal.colour(0.85, 0.5)  # edge-on disks are reddened by their own dust
    re_disk = 1.68 * h
    cv.add(cv.galaxy, cv.sersic(x0, y0, re_disk, n_disk, q_disk, pa, flux * (1 - b_frac)), disk_col)
    if rng.random() < 0.5:  # thicker, fainter envelope (thick disk)
        cv.add(cv.galaxy, cv.sersic(x0, y0, re_disk * 0.9, 1.0, q_disk * 2.2, pa, flux * 0.15), disk_col)
    if bulge:
        re_b = re_disk * rng.uniform(0.3, 0.55)
        boxy = 2.0 if rng.random() < 0.6 else rng.uniform(2.5, 3.5)
        _bulge(cv, pal, x0, y0, re_b, rng.uniform(1.5, 4.0), rng.uniform(0.65, 1.0), pa,
               flux * b_frac, boxy)
    else:  # thin clumpy disks: a few knots along the plane
        k = int(rng.integers(0, 20))
        if k:
            t = rng.normal(0, re_disk, k)
            xs = x0 + t * math.cos(pa) - rng.normal(0, q_disk * re_disk * 0.3, k) * math.sin(pa)
            ys = y0 + t * math.sin(pa) + rng.normal(0, q_disk * re_disk * 0.3, k) * math.cos(pa)
            cv.points(cv.galaxy, xs, ys, rng.exponential(flux * 0.005, k), pal.young())
    if rng.random() < (0.65 if bulge else 0.35):
        cv.dust_lane(x0, y0 + rng.normal(0, 0.002), pa, q_disk * re_disk * rng.uniform(0.15, 0.35),
                     rng.uniform(0.4, 1.5), re_disk * rng.uniform(1.0, 2.0))


def _edge_on_no_bulge(cv, pal):
    _edge_on(cv, pal, bulge=False)


def _edge_on_bulge(cv, pal):
    _edge_on(cv, pal, bulge=True)


def _spiral(cv: Canvas, pal: _Palette, kind: str) -> None:
    rng = cv.rng
    x0, y0 = _centre(rng)
    pa = rng.uniform(0, math.pi)
    incl = math.acos(rng.uniform(0.45, 1.0))  # face-on to ~63 degrees
    disk = _Disk(cv, x0, y0, pa, incl)
    h = _loguniform(rng, 0.055, 0.13)  # real spirals fill much of the cutout
    flux = _flux(rng, 0.8, 4.0) * h / 0.075
    phase = rng.uniform(0, 2 * math.pi)
    if kind == "tight":
        b_frac, re_b = rng.uniform(0.12, 0.35), h * rng.uniform(0.2, 0.35)
        arms = int(rng.choice([2, 2, 3, 4]))
        pitch, sharp, floc = rng.uniform(9, 15), rng.uniform(2, 5), rng.uniform(0.1, 0.6)
        arm_frac, knots, r_start = rng.uniform(0.5, 0.8), int(rng.integers(20, 90)), h * rng.uniform(0.4, 0.8)
    elif kind == "loose":
        b_frac, re_b = rng.uniform(0.03, 0.2), h * rng.uniform(0.15, 0.3)
        arms = int(rng.choice([2, 2, 3]))
        pitch, sharp, floc = rng.uniform(20, 34), rng.uniform(1.5, 4), rng.uniform(0.3, 0.9)
        arm_frac, knots, r_start = rng.uniform(0.55, 0.9), int(rng.integers(20, 100)), h * rng.uniform(0.3, 0.7)
    else:  # barred
        b_frac, re_b = rng.uniform(0.1, 0.3), h * rng.uniform(0.15, 0.3)
        arms = 2
        pitch, sharp, floc = rng.uniform(10, 28), rng.uniform(2, 5), rng.uniform(0.1, 0.6)
        arm_frac, knots = rng.uniform(0.4, 0.8), int(rng.integers(10, 60))
        bar_len = h * rng.uniform(1.1, 2.0)  # bar half-length
        r_start = bar_len
    d_flux = flux * (1 - b_frac)
    if kind == "barred":
        bar_flux = d_flux * rng.uniform(0.2, 0.4)
        d_flux -= bar_flux
        bar = _bar(disk, bar_len, rng.uniform(0.15, 0.3), phase, bar_flux)
        cv.add(cv.galaxy, bar, pal.colour(0.85, 0.5))
        if rng.random() < 0.45:  # inner ring at the bar's end
            ring = np.exp(-0.5 * ((disk.r - np.float32(bar_len * 1.05)) / np.float32(0.25 * bar_len)) ** 2)
            ring_flux = d_flux * rng.uniform(0.05, 0.12)
            ring *= np.float32(ring_flux / (ring.sum() * cv.pixel ** 2 + 1e-12))
            cv.add(cv.galaxy, ring, pal.disk())
            d_flux -= ring_flux
    _spiral_disk(cv, pal, disk, h, d_flux, arms=arms, pitch_deg=pitch, arm_frac=arm_frac,
                 r_start=r_start, phase=phase, sharpness=sharp, knots=knots, flocculence=floc)
    _bulge(cv, pal, x0, y0, re_b, rng.uniform(1.0, 3.5), rng.uniform(0.75, 1.0) * max(disk.q, 0.6),
           pa, flux * b_frac)


def _bar(disk: _Disk, half_len: float, q_bar: float, angle: float, flux: float) -> np.ndarray:
    """A flat (Sersic n ~ 0.5) bar in the disk plane at `angle`, projected: float32 `(size, size)`."""
    c, s = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    a = disk.u * c + disk.w * s
    b = disk.w * c - disk.u * s
    re = half_len * 0.6
    r = np.sqrt(a * a + (b / np.float32(q_bar)) ** 2)
    prof = np.exp(-_sersic_b(0.5) * ((r / np.float32(re)) ** 2 - 1.0))
    total = _sersic_total(re, 0.5, q_bar) * disk.q
    return (flux / total * prof).astype(np.float32)


def _barred_spiral(cv, pal):
    _spiral(cv, pal, "barred")


def _tight_spiral(cv, pal):
    _spiral(cv, pal, "tight")


def _loose_spiral(cv, pal):
    _spiral(cv, pal, "loose")


def _tail(cv: Canvas, pal: _Palette, x0, y0, angle, length, curl, flux, width, colour=None) -> None:
    """A tidal tail: a curved stream of light starting near (x0, y0), splatted on the diffuse layer."""
    rng = cv.rng
    k = 400
    t = np.sqrt(rng.uniform(0, 1, k))  # more points far out, fading flux along the tail
    r = length * (0.25 + t)
    phi = angle + curl * t
    w = width * (0.4 + t)
    xs = x0 + r * np.cos(phi) + rng.normal(0, 1, k) * w * -np.sin(phi)
    ys = y0 + r * np.sin(phi) + rng.normal(0, 1, k) * w * np.cos(phi)
    fl = np.exp(-2.0 * t)
    fl *= flux / fl.sum()
    cv.points(cv.diffuse, xs, ys, fl, pal.disk() if colour is None else colour)


def _member(cv: Canvas, pal: _Palette, x0, y0, flux, scale) -> float:
    """One galaxy of a merger (smooth or disky); returns its position angle."""
    rng = cv.rng
    pa = rng.uniform(0, math.pi)
    if rng.random() < 0.55:
        cv.add(cv.galaxy, cv.sersic(x0, y0, 0.03 * scale, rng.uniform(2, 4.5), rng.uniform(0.55, 1.0),
                                    pa, flux), pal.old())
    else:
        disk = _Disk(cv, x0, y0, pa, math.acos(rng.uniform(0.3, 1.0)))
        cv.add(cv.galaxy, disk.exponential(0.03 * scale, flux * 0.75), pal.disk())
        _bulge(cv, pal, x0, y0, 0.008 * scale, 2.5, 0.85, pa, flux * 0.25)
        if rng.random() < 0.6:  # clumpy, star-bursting
            k = int(rng.integers(5, 30))
            cv.points(cv.galaxy, x0 + rng.normal(0, 0.025 * scale, k), y0 + rng.normal(0, 0.025 * scale, k),
                      rng.exponential(flux * 0.006, k), pal.young())
    return pa


def _merging(cv: Canvas, pal: _Palette) -> None:
    rng = cv.rng
    sep = rng.uniform(*MERGER_SEPARATION)
    angle = rng.uniform(0, 2 * math.pi)
    ratio = rng.uniform(0.3, 1.0)  # flux of the secondary / primary
    cx, cy = _centre(rng)
    w1 = ratio / (1 + ratio)  # centre the pair's light, not the primary
    p1 = (cx - w1 * sep * math.cos(angle), cy - w1 * sep * math.sin(angle))
    p2 = (p1[0] + sep * math.cos(angle), p1[1] + sep * math.sin(angle))
    flux = _flux(rng, 0.6, 3.0)
    scale = rng.uniform(0.7, 1.5)
    _member(cv, pal, *p1, flux / (1 + ratio), scale)
    _member(cv, pal, *p2, flux * ratio / (1 + ratio), scale * rng.uniform(0.6, 1.0))
    if rng.random() < 0.3:  # a third, smaller member
        a3 = angle + rng.uniform(1.5, 4.8)
        _member(cv, pal, cx + sep * math.cos(a3), cy + sep * math.sin(a3), flux * rng.uniform(0.1, 0.3),
                scale * 0.6)
    # Tidal tails, bridge and a common envelope.
    chir = rng.choice([-1.0, 1.0])
    for p, a in ((p1, angle + math.pi), (p2, angle)):
        if rng.random() < 0.75:
            _tail(cv, pal, p[0], p[1], a + rng.normal(0, 0.6), rng.uniform(0.06, 0.2), chir * rng.uniform(0.4, 1.2),
                  flux * rng.uniform(0.05, 0.15), rng.uniform(0.012, 0.035))
    if rng.random() < 0.5:
        k = 200
        t = rng.uniform(0, 1, k)
        bend = rng.normal(0, 0.3) * sep
        xs = p1[0] + t * (p2[0] - p1[0]) - bend * np.sin(math.pi * t) * math.sin(angle) + rng.normal(0, 0.006, k)
        ys = p1[1] + t * (p2[1] - p1[1]) + bend * np.sin(math.pi * t) * math.cos(angle) + rng.normal(0, 0.006, k)
        cv.points(cv.diffuse, xs, ys, np.full(k, flux * rng.uniform(0.05, 0.12) / k), pal.disk())
    if rng.random() < 0.6:
        cv.add(cv.diffuse, cv.sersic(cx, cy, sep * rng.uniform(0.9, 1.6), 1.0, rng.uniform(0.5, 0.9),
                                     angle, flux * rng.uniform(0.1, 0.3)), pal.old())


def _disturbed(cv: Canvas, pal: _Palette) -> None:
    rng = cv.rng
    x0, y0 = _centre(rng)
    pa = rng.uniform(0, math.pi)
    flux = _flux(rng, 0.3, 1.8)
    h = _loguniform(rng, 0.05, 0.11)
    disk = _Disk(cv, x0, y0, pa, math.acos(rng.uniform(0.35, 1.0)))
    # Lopsided, patchy low-surface-brightness body: a disk warped by an m=1 mode and a random field.
    lop = rng.uniform(0.3, 0.8)
    phi1 = rng.uniform(0, 2 * math.pi)
    body = disk.exponential(h, flux * 0.55)
    body *= np.exp(np.float32(lop) * np.cos(disk.theta - np.float32(phi1)) * np.minimum(disk.r / np.float32(h), 2)
                   + np.float32(rng.uniform(0.25, 0.7)) * cv.smooth_field(h * 0.6))
    body *= np.float32(flux * 0.55 / (body.sum() * cv.pixel ** 2 + 1e-12))
    cv.add(cv.galaxy, body, pal.colour(rng.uniform(0.45, 0.8), 0.3))
    # Off-centre clumps and a faint nucleus (sometimes none).
    for _ in range(int(rng.integers(1, 5))):
        r, th = rng.uniform(0.2, 1.8) * h, phi1 + rng.normal(0, 1.2)
        xs, ys = disk.to_image(np.array([r]), np.array([th]))
        cv.add(cv.galaxy, cv.sersic(float(xs[0]), float(ys[0]), h * rng.uniform(0.15, 0.45), 1.0,
                                    rng.uniform(0.4, 1.0), rng.uniform(0, math.pi), flux * rng.uniform(0.02, 0.07)),
               pal.colour(0.45, 0.25))
    if rng.random() < 0.7:
        _bulge(cv, pal, x0, y0, h * rng.uniform(0.1, 0.3), rng.uniform(1, 3), rng.uniform(0.6, 1.0), pa,
               flux * rng.uniform(0.03, 0.15))
    k = int(rng.integers(5, 40))
    rr, th = rng.gamma(2.0, h * 0.7, k), phi1 + rng.normal(0, 1.3, k)
    xs, ys = disk.to_image(rr, th)
    cv.points(cv.diffuse, xs, ys, rng.exponential(flux * 0.0015, k), pal.young())
    if rng.random() < 0.6:  # faint plume / tidal debris
        _tail(cv, pal, x0, y0, phi1 + pa + rng.normal(0, 0.5), rng.uniform(0.05, 0.15),
              rng.choice([-1, 1]) * rng.uniform(0.2, 0.9), flux * rng.uniform(0.05, 0.15), rng.uniform(0.008, 0.02))


_RENDERERS: tuple[Callable[[Canvas, _Palette], None], ...] = (
    _disturbed, _merging, _round_smooth, _inbetween_smooth, _cigar,
    _barred_spiral, _tight_spiral, _loose_spiral, _edge_on_no_bulge, _edge_on_bulge,
)


# --------------------------------------------------------------------------------------------
# Field: stars and background galaxies
# --------------------------------------------------------------------------------------------
def _add_field(cv: Canvas, pal: _Palette) -> None:
    """Foreground stars and background galaxies, drawn the same way for every class.

    DECaLS cutouts hold a dense field of small point sources of strong, varied colour (blue
    turn-off stars, orange K and red M dwarfs) and several faint, small background galaxies.
    """
    rng = cv.rng
    # Foreground stars: many faint, few bright (power law), most above the noise at full size.
    k = int(rng.poisson(rng.uniform(25, 80)))
    if k:
        fl = 5e-6 * (rng.pareto(0.9, k) + 1.0)
        fl = np.minimum(fl, 2e-3)
        gr = np.where(rng.random(k) < 0.25, rng.uniform(-0.3, 0.5, k), rng.uniform(0.5, 1.8, k))
        cols = band_colour(gr, 0.15 + 0.75 * gr + rng.normal(0, 0.2, k))
        xs, ys = rng.uniform(-0.5, 0.5, k), rng.uniform(-0.5, 0.5, k)
        cv.points(cv.stars, xs, ys, fl, cols)
    # Sometimes a bright unrelated neighbour near the edge (in every class, so that a second galaxy
    # alone does not mean "merging").
    if rng.random() < 0.15:
        r, a = rng.uniform(0.3, 0.45), rng.uniform(0, 2 * math.pi)
        cv.add(cv.stars, cv.sersic(r * math.cos(a), r * math.sin(a), _loguniform(rng, 0.01, 0.03),
                                   rng.uniform(1, 4), rng.uniform(0.3, 1.0), rng.uniform(0, math.pi),
                                   _loguniform(rng, 3e-4, 3e-3)), pal.random_galaxy())
    # Faint, small background galaxies (blue to red), kept away from the centre.
    for _ in range(int(rng.poisson(rng.uniform(2, 9)))):
        r, a = rng.uniform(0.15, 0.7), rng.uniform(0, 2 * math.pi)
        cv.add(cv.stars, cv.sersic(r * math.cos(a), r * math.sin(a), _loguniform(rng, 0.003, 0.012),
                                   rng.uniform(0.8, 4), rng.uniform(0.3, 1.0), rng.uniform(0, math.pi),
                                   _loguniform(rng, 1.5e-5, 4e-4)),
               band_colour(rng.uniform(0.3, 1.6), rng.uniform(0.2, 1.0)))


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
def render_galaxy(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render one synthetic cutout of Galaxy10 class `label`.

    Args:
        label: class index in `0..9` (see `galaxy_core.config.CLASS_NAMES`).
        size: image side in pixels (>= 16); the galaxy is rendered at this size directly.
        rng: the random generator (all randomness comes from it).

    Returns:
        uint8 `(size, size, 3)` RGB image: a centred galaxy on a noisy sky with stars.
    """
    label = int(label)
    if not 0 <= label < NUM_CLASSES:
        raise ValueError(f"label must be in 0..{NUM_CLASSES - 1}, got {label}.")
    if int(size) < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}.")
    cv = Canvas(int(size), rng)
    pal = _Palette(rng)
    zoom = _loguniform(rng, *ZOOM_RANGES.get(label, ZOOM_RANGE))
    cv.set_zoom(zoom)
    _RENDERERS[label](cv, pal)
    cv.galaxy /= np.float32(zoom)  # surface brightness up as the galaxy shrinks (see ZOOM_RANGE)
    cv.diffuse /= np.float32(zoom)
    cv.set_zoom(1.0)  # stars and background galaxies keep their frame sizes
    _add_field(cv, pal)
    return cv.render(
        psf_fwhm=rng.uniform(*PSF_FWHM_PX) / 256,
        noise=_loguniform(rng, *NOISE_RANGE),
        softening=rng.uniform(*SOFTENING_RANGE),
        q_stretch=rng.uniform(*Q_STRETCH_RANGE),
        diffuse_sigma=rng.uniform(0.004, 0.01) * zoom,
    )


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of image `index` of a dataset with `seed` (independent of chunking)."""
    if int(seed) < 0 or int(index) < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}.")
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def generate_images(labels: Sequence[int], size: int, seed: int, start: int = 0) -> np.ndarray:
    """Render one image per label: uint8 `(N, size, size, 3)`.

    Image i uses the generator `image_rng(seed, start + i)`, so any split of a dataset into chunks
    gives byte-identical images.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    out = np.empty((labels.size, size, size, 3), np.uint8)
    for i, label in enumerate(labels):
        out[i] = render_galaxy(int(label), size, image_rng(seed, start + i))
    return out


def class_counts(n: int, balance: str = "real") -> np.ndarray:
    """How many images of each class: int64 `(10,)` summing to `n`.

    "real" follows the Galaxy10 DECaLS proportions (largest remainder), with every class at least
    once when n >= 10; "uniform" splits n evenly.
    """
    if balance not in BALANCES:
        raise ValueError(f"balance must be one of {BALANCES}, got {balance!r}.")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    weights = np.asarray(CLASS_COUNTS, float) if balance == "real" else np.ones(NUM_CLASSES)
    share = weights / weights.sum() * n
    counts = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - np.floor(share)), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    if n >= NUM_CLASSES:  # every class at least once: take from the largest
        for k in np.flatnonzero(counts == 0):
            counts[np.argmax(counts)] -= 1
            counts[k] = 1
    return counts


def make_labels(n: int, balance: str = "real", seed: int = 0) -> np.ndarray:
    """Shuffled labels with `class_counts(n, balance)`: uint8 `(n,)`."""
    counts = class_counts(n, balance)
    labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.uint8), counts)
    np.random.default_rng(np.random.SeedSequence([int(seed), 2 ** 31])).shuffle(labels)
    return labels


def make_metadata(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Placeholder sky positions in a DECaLS-like footprint, redshifts and pixel scales (float64)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2 ** 31 + 1]))
    north = rng.random(n) < 0.6  # north galactic cap, else south galactic cap
    ra = np.where(north, rng.uniform(110, 260, n), rng.uniform(-45, 45, n) % 360)
    sin_dec = rng.uniform(math.sin(math.radians(-18)), math.sin(math.radians(32)), n)
    dec = np.degrees(np.arcsin(sin_dec))
    redshift = np.clip(rng.lognormal(math.log(0.07), 0.5, n), 0.01, 0.3)
    return {"ra": ra.astype(np.float64), "dec": dec.astype(np.float64),
            "redshift": redshift.astype(np.float64), "pxscale": np.full(n, PXSCALE_ARCSEC)}


def _render_chunk(task: tuple[np.ndarray, int, int, int]) -> tuple[int, np.ndarray]:
    labels, size, seed, start = task
    return start, generate_images(labels, size, seed, start)


def write_synthetic_dataset(path, n: int, size: int = 256, seed: int = 0, balance: str = "real",
                            workers: int | None = None, progress: bool = True) -> Path:
    """Write a synthetic Galaxy10-format HDF5 file.

    Datasets: `images` uint8 `(n, size, size, 3)`, `ans` uint8 `(n,)`, `ra`, `dec`, `redshift`,
    `pxscale` float64 `(n,)`. File attributes: `synthetic=True`, `generator`, `seed`, `balance`,
    `note`. Written to a temporary sibling and renamed into place.

    Args:
        path: output file.
        n: number of images (>= 1).
        size: image side in pixels (>= 16).
        seed: the same seed gives byte-identical images, whatever `workers` is.
        balance: "real" (Galaxy10 DECaLS class proportions) or "uniform".
        workers: processes (default: CPU count for n >= 256, else 1).
        progress: draw a progress bar on stderr.

    Returns:
        The path written.
    """
    import h5py  # only the writer needs it

    n, size, seed = int(n), int(size), int(seed)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}.")
    if balance not in BALANCES:
        raise ValueError(f"balance must be one of {BALANCES}, got {balance!r}.")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}.")
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise DatasetError(f"Output folder {path.parent} does not exist; create it first.")
    labels = make_labels(n, balance, seed)
    meta = make_metadata(n, seed)
    if workers is None:
        workers = (os.cpu_count() or 1) if n >= 256 else 1
    workers = max(1, min(int(workers), math.ceil(n / _CHUNK)))
    tasks = [(labels[s:s + _CHUNK], size, seed, s) for s in range(0, n, _CHUNK)]
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f, \
            progress_bar(n, desc="synthetic", unit="img", disable=not progress) as bar:
        images = f.create_dataset("images", shape=(n, size, size, 3), dtype=np.uint8,
                                  chunks=(1, size, size, 3))
        f.create_dataset("ans", data=labels)
        for key, value in meta.items():
            f.create_dataset(key, data=value)
        f.attrs["synthetic"] = True
        f.attrs["generator"] = GENERATOR_NAME
        f.attrs["generator_version"] = GENERATOR_VERSION
        f.attrs["seed"] = seed
        f.attrs["balance"] = balance
        f.attrs["note"] = SYNTHETIC_NOTE
        if workers == 1:
            results = map(_render_chunk, tasks)
            pool = None
        else:
            pool = multiprocessing.get_context("spawn").Pool(workers)
            results = pool.imap(_render_chunk, tasks)
        try:
            for start, chunk in results:
                images[start:start + len(chunk)] = chunk
                bar.update(len(chunk))
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    return path


def save_montage(path, size: int = 128, seed: int = 0, per_class: int = 1) -> Path:
    """Write a PNG montage: one row per class, `per_class` images each (for looking at by eye)."""
    import matplotlib.image

    rows = []
    for label in range(NUM_CLASSES):
        imgs = generate_images([label] * per_class, size, seed, start=label * 1000)
        rows.append(np.concatenate(list(imgs), axis=1))
    grid = np.concatenate(rows, axis=0)
    matplotlib.image.imsave(str(path), grid)
    return Path(path)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m galaxy_core.synthetic",
        description="Write a SYNTHETIC Galaxy10-format HDF5 file of mock galaxy images.")
    parser.add_argument("out", help="output .h5 path")
    parser.add_argument("--n", type=int, default=1000, help="number of images (default 1000)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--balance", choices=BALANCES, default="real",
                        help="class proportions: real Galaxy10 DECaLS (default) or uniform")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    parser.add_argument("--montage", metavar="PNG", default=None,
                        help="also write a PNG montage (10 classes x 6 images) for inspection")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        out = write_synthetic_dataset(args.out, args.n, args.size, args.seed, args.balance,
                                      workers=args.workers, progress=not args.quiet)
        if args.montage:
            save_montage(args.montage, size=args.size, seed=args.seed, per_class=6)
    except (GalaxyError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({args.n} synthetic images, {args.size}x{args.size}, seed {args.seed}, "
          f"balance {args.balance})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
