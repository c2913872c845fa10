"""One renderer per Galaxy10 class: the class is decided by morphology only (`RENDERERS`)."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from galaxy_core.synthetic.canvas import Canvas, sersic_b, sersic_total
from galaxy_core.synthetic.components import Disk, add_bulge, loguniform, spiral_disk
from galaxy_core.synthetic.palette import Palette
from galaxy_core.synthetic.settings import MERGER_SEPARATION


def _centre(rng) -> tuple[float, float]:
    return tuple(rng.normal(0.0, 0.012, size=2))


def _flux(rng, lo=0.4, hi=2.5) -> float:
    """Total galaxy flux (scaled band units x frame area, relative to the sky stretch)."""
    return loguniform(rng, lo, hi) * 1e-2


def _smooth(cv: Canvas, pal: Palette, q_range, n_range, re_range, flux_range=(0.6, 3.0)) -> None:
    rng = cv.rng
    x0, y0 = _centre(rng)
    pa = rng.uniform(0, math.pi)
    q = rng.uniform(*q_range)
    n = rng.uniform(*n_range)
    re = loguniform(rng, *re_range)
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


def _edge_on(cv: Canvas, pal: Palette, bulge: bool) -> None:
    rng = cv.rng
    x0, y0 = _centre(rng)
    pa = rng.uniform(0, math.pi)
    h = loguniform(rng, 0.06, 0.13)  # real edge-on disks span most of the cutout
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
        add_bulge(cv, pal, x0, y0, re_b, rng.uniform(1.5, 4.0), rng.uniform(0.65, 1.0), pa,
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


def _spiral(cv: Canvas, pal: Palette, kind: str) -> None:
    rng = cv.rng
    x0, y0 = _centre(rng)
    pa = rng.uniform(0, math.pi)
    incl = math.acos(rng.uniform(0.45, 1.0))  # face-on to ~63 degrees
    disk = Disk(cv, x0, y0, pa, incl)
    h = loguniform(rng, 0.055, 0.13)  # real spirals fill much of the cutout
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
    spiral_disk(cv, pal, disk, h, d_flux, arms=arms, pitch_deg=pitch, arm_frac=arm_frac,
                 r_start=r_start, phase=phase, sharpness=sharp, knots=knots, flocculence=floc)
    add_bulge(cv, pal, x0, y0, re_b, rng.uniform(1.0, 3.5), rng.uniform(0.75, 1.0) * max(disk.q, 0.6),
           pa, flux * b_frac)


def _bar(disk: Disk, half_len: float, q_bar: float, angle: float, flux: float) -> np.ndarray:
    """A flat (Sersic n ~ 0.5) bar in the disk plane at `angle`, projected: float32 `(size, size)`."""
    c, s = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    a = disk.u * c + disk.w * s
    b = disk.w * c - disk.u * s
    re = half_len * 0.6
    r = np.sqrt(a * a + (b / np.float32(q_bar)) ** 2)
    prof = np.exp(-sersic_b(0.5) * ((r / np.float32(re)) ** 2 - 1.0))
    total = sersic_total(re, 0.5, q_bar) * disk.q
    return (flux / total * prof).astype(np.float32)


def _barred_spiral(cv, pal):
    _spiral(cv, pal, "barred")


def _tight_spiral(cv, pal):
    _spiral(cv, pal, "tight")


def _loose_spiral(cv, pal):
    _spiral(cv, pal, "loose")


def _tail(cv: Canvas, pal: Palette, x0, y0, angle, length, curl, flux, width, colour=None) -> None:
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


def _member(cv: Canvas, pal: Palette, x0, y0, flux, scale) -> float:
    """One galaxy of a merger (smooth or disky); returns its position angle."""
    rng = cv.rng
    pa = rng.uniform(0, math.pi)
    if rng.random() < 0.55:
        cv.add(cv.galaxy, cv.sersic(x0, y0, 0.03 * scale, rng.uniform(2, 4.5), rng.uniform(0.55, 1.0),
                                    pa, flux), pal.old())
    else:
        disk = Disk(cv, x0, y0, pa, math.acos(rng.uniform(0.3, 1.0)))
        cv.add(cv.galaxy, disk.exponential(0.03 * scale, flux * 0.75), pal.disk())
        add_bulge(cv, pal, x0, y0, 0.008 * scale, 2.5, 0.85, pa, flux * 0.25)
        if rng.random() < 0.6:  # clumpy, star-bursting
            k = int(rng.integers(5, 30))
            cv.points(cv.galaxy, x0 + rng.normal(0, 0.025 * scale, k), y0 + rng.normal(0, 0.025 * scale, k),
                      rng.exponential(flux * 0.006, k), pal.young())
    return pa


def _merging(cv: Canvas, pal: Palette) -> None:
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


def _disturbed(cv: Canvas, pal: Palette) -> None:
    rng = cv.rng
    x0, y0 = _centre(rng)
    pa = rng.uniform(0, math.pi)
    flux = _flux(rng, 0.3, 1.8)
    h = loguniform(rng, 0.05, 0.11)
    disk = Disk(cv, x0, y0, pa, math.acos(rng.uniform(0.35, 1.0)))
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
        add_bulge(cv, pal, x0, y0, h * rng.uniform(0.1, 0.3), rng.uniform(1, 3), rng.uniform(0.6, 1.0), pa,
               flux * rng.uniform(0.03, 0.15))
    k = int(rng.integers(5, 40))
    rr, th = rng.gamma(2.0, h * 0.7, k), phi1 + rng.normal(0, 1.3, k)
    xs, ys = disk.to_image(rr, th)
    cv.points(cv.diffuse, xs, ys, rng.exponential(flux * 0.0015, k), pal.young())
    if rng.random() < 0.6:  # faint plume / tidal debris
        _tail(cv, pal, x0, y0, phi1 + pa + rng.normal(0, 0.5), rng.uniform(0.05, 0.15),
              rng.choice([-1, 1]) * rng.uniform(0.2, 0.9), flux * rng.uniform(0.05, 0.15), rng.uniform(0.008, 0.02))


RENDERERS: tuple[Callable[[Canvas, Palette], None], ...] = (
    _disturbed, _merging, _round_smooth, _inbetween_smooth, _cigar,
    _barred_spiral, _tight_spiral, _loose_spiral, _edge_on_no_bulge, _edge_on_bulge,
)
