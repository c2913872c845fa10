"""The synthetic generator's identity and the ranges it draws from.

`GENERATOR_NAME` and `GENERATOR_VERSION` are written into every file (the demo's data file name
includes the version; raise it whenever the rendering changes, so that older files are not reused).
The ranges are the domain randomisation of version 3 on (apparent size, seeing, sky noise, stretch)
and version 4's merger separation; the package docstring says why each is as wide as it is.
"""

from __future__ import annotations

import numpy as np

from galaxy_core.config import CLASS_NAMES


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
BAND_SCALES = np.array([6.0, 3.4, 2.2])  # g, r, z
RGB_PLANE = (2, 1, 0)  # g -> B, r -> G, z -> R

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
