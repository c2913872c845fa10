"""Images and files: `render_galaxy`, `generate_images`, labels and metadata, `write_synthetic_dataset`."""

from __future__ import annotations

import math
import multiprocessing
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from galaxy_core.data.galaxy10 import CLASS_COUNTS
from galaxy_core.errors import DatasetError
from galaxy_core.io import atomic_path, progress_bar
from galaxy_core.synthetic.canvas import Canvas
from galaxy_core.synthetic.classes import RENDERERS
from galaxy_core.synthetic.components import loguniform
from galaxy_core.synthetic.field import add_field
from galaxy_core.synthetic.palette import Palette
from galaxy_core.synthetic.settings import (BALANCES, GENERATOR_NAME, GENERATOR_VERSION, NOISE_RANGE, NUM_CLASSES,
                                            PSF_FWHM_PX, PXSCALE_ARCSEC, Q_STRETCH_RANGE, SOFTENING_RANGE,
                                            SYNTHETIC_NOTE, ZOOM_RANGE, ZOOM_RANGES)

_CHUNK = 32  # images per worker task


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
    pal = Palette(rng)
    zoom = loguniform(rng, *ZOOM_RANGES.get(label, ZOOM_RANGE))
    cv.set_zoom(zoom)
    RENDERERS[label](cv, pal)
    cv.galaxy /= np.float32(zoom)  # surface brightness up as the galaxy shrinks (see ZOOM_RANGE)
    cv.diffuse /= np.float32(zoom)
    cv.set_zoom(1.0)  # stars and background galaxies keep their frame sizes
    add_field(cv, pal)
    return cv.render(
        psf_fwhm=rng.uniform(*PSF_FWHM_PX) / 256,
        noise=loguniform(rng, *NOISE_RANGE),
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
