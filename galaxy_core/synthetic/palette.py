"""Colours of the synthetic galaxies: (g, r, z) flux ratios from g-r and r-z colours, per-image palettes."""

from __future__ import annotations

import numpy as np

from galaxy_core.synthetic.settings import BAND_SCALES


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
    flux = np.stack([10 ** (-0.4 * g_r), np.ones_like(g_r), 10 ** (0.4 * r_z)], axis=-1) * BAND_SCALES
    return flux / flux.mean(axis=-1, keepdims=True)


class Palette:
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
