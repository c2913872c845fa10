"""The drawing surface: band images on a pixel grid, then PSF, noise and the asinh stretch to RGB."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from galaxy_core.synthetic.settings import RGB_PLANE


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


def sersic_b(n: float) -> float:
    """b_n so that r_e encloses half the light (Ciotti & Bertin 1999 expansion)."""
    return 2 * n - 1 / 3 + 4 / (405 * n) + 46 / (25515 * n * n)


def sersic_total(re: float, n: float, q: float) -> float:
    """Total flux of a Sersic profile with I(r_e) = 1, r_e `re` and axis ratio `q`."""
    b = sersic_b(n)
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
        b = sersic_b(n)
        ie = flux / sersic_total(re, n, q)
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
    for b, plane in enumerate(RGB_PLANE):
        rgb[..., plane] = planes[b] * ratio
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
