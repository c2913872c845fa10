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

Modules, each importing only those above it:
- `settings`: the generator's name and version, and the ranges it draws from;
- `palette`: band colours and the per-image palette;
- `canvas`: the pixel grid, PSF, noise and stretch (`Canvas`);
- `components`: bulges, disks, spiral arms, bars, rings and knots;
- `classes`: one renderer per class (`RENDERERS`);
- `field`: stars and background galaxies;
- `dataset`: `render_galaxy`, `generate_images`, labels, metadata, `write_synthetic_dataset`;
- `cli`: `python -m galaxy_core.synthetic OUT.h5 --n N --size S --seed K [--balance uniform]`.

This package re-exports the public names, so `from galaxy_core.synthetic import render_galaxy` works.
"""

from __future__ import annotations

from galaxy_core.synthetic.canvas import Canvas
from galaxy_core.synthetic.cli import main
from galaxy_core.synthetic.dataset import (class_counts, generate_images, image_rng, make_labels, make_metadata,
                                           render_galaxy, save_montage, write_synthetic_dataset)
from galaxy_core.synthetic.palette import Palette, band_colour
from galaxy_core.synthetic.settings import (BALANCES, GENERATOR_NAME, GENERATOR_VERSION, MERGER_SEPARATION,
                                            NOISE_RANGE, NUM_CLASSES, PSF_FWHM_PX, PXSCALE_ARCSEC,
                                            Q_STRETCH_RANGE, SOFTENING_RANGE, SYNTHETIC_NOTE, ZOOM_RANGE,
                                            ZOOM_RANGES)

__all__ = ["BALANCES", "Canvas", "GENERATOR_NAME", "GENERATOR_VERSION", "MERGER_SEPARATION", "NOISE_RANGE",
           "NUM_CLASSES", "PSF_FWHM_PX", "PXSCALE_ARCSEC", "Palette", "Q_STRETCH_RANGE", "SOFTENING_RANGE",
           "SYNTHETIC_NOTE", "ZOOM_RANGE", "ZOOM_RANGES", "band_colour", "class_counts", "generate_images",
           "image_rng", "main", "make_labels", "make_metadata", "render_galaxy", "save_montage",
           "write_synthetic_dataset"]
