"""Galaxy components drawn on a `Canvas`: Sersic bulges, inclined disks, spiral arms, bars, rings, knots."""

from __future__ import annotations

import math

import numpy as np

from galaxy_core.synthetic.canvas import Canvas
from galaxy_core.synthetic.palette import Palette


def loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A float drawn log-uniformly from [lo, hi) (lo > 0), with `rng`."""
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


class Disk:
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


def spiral_disk(cv: Canvas, pal: Palette, disk: Disk, h: float, flux: float, *, arms: int,
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


def add_bulge(cv: Canvas, pal: Palette, x0, y0, re, n, q, pa, flux, boxy=2.0) -> None:
    cv.add(cv.galaxy, cv.sersic(x0, y0, re, n, q, pa, flux, boxy), pal.old())
