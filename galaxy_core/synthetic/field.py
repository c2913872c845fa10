"""The field around the galaxy: foreground stars and faint background galaxies, the same for every class."""

from __future__ import annotations

import math

import numpy as np

from galaxy_core.synthetic.canvas import Canvas
from galaxy_core.synthetic.components import loguniform
from galaxy_core.synthetic.palette import Palette, band_colour


def add_field(cv: Canvas, pal: Palette) -> None:
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
        cv.add(cv.stars, cv.sersic(r * math.cos(a), r * math.sin(a), loguniform(rng, 0.01, 0.03),
                                   rng.uniform(1, 4), rng.uniform(0.3, 1.0), rng.uniform(0, math.pi),
                                   loguniform(rng, 3e-4, 3e-3)), pal.random_galaxy())
    # Faint, small background galaxies (blue to red), kept away from the centre.
    for _ in range(int(rng.poisson(rng.uniform(2, 9)))):
        r, a = rng.uniform(0.15, 0.7), rng.uniform(0, 2 * math.pi)
        cv.add(cv.stars, cv.sersic(r * math.cos(a), r * math.sin(a), loguniform(rng, 0.003, 0.012),
                                   rng.uniform(0.8, 4), rng.uniform(0.3, 1.0), rng.uniform(0, math.pi),
                                   loguniform(rng, 1.5e-5, 4e-4)),
               band_colour(rng.uniform(0.3, 1.6), rng.uniform(0.2, 1.0)))
