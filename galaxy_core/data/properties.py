"""A galaxy's sky properties: its catalogue columns, accuracy against redshift, and a survey link.

Kept apart from `galaxy_core.runs.compare` (which is about runs): this module is about the galaxies.
Layer: on top of `galaxy_core.data.galaxy10` only; no display code.

- `sky_columns(dataset, indices)`: `ra`, `dec`, `redshift`, `pxscale` of chosen rows, float32 (the
  columns `predictions.h5` keeps for the test images).
- `accuracy_by_bins(values, correct, edges)`: accuracy per bin of a property (e.g. redshift).
- `quantile_edges(values, n_bins)`: bin edges holding about the same number of images each.
- `legacy_survey_url(ra, dec, zoom=14)`: the Legacy Surveys sky viewer at a position (a plain
  link; nothing here goes online).

Example:
    >>> legacy_survey_url(150.1, 2.2)
    'https://www.legacysurvey.org/viewer?ra=150.100000&dec=2.200000&layer=ls-dr10&zoom=14'
    >>> edges, acc, counts = accuracy_by_bins([0.02, 0.05, 0.08, 0.12], [1, 1, 0, 1], [0, 0.1, 0.2])
    >>> acc.round(3).tolist(), counts.tolist()
    ([0.667, 1.0], [3, 1])
"""

from __future__ import annotations

import numpy as np

from galaxy_core.data.galaxy10 import METADATA_KEYS, Galaxy10File, open_dataset
from galaxy_core.errors import GalaxyError

LEGACY_VIEWER = "https://www.legacysurvey.org/viewer"
DEFAULT_LAYER = "ls-dr10"
DEFAULT_ZOOM = 14
MAX_ZOOM = 16


class PropertyError(GalaxyError, ValueError):
    """Property values, bins or sky positions that cannot be used."""


def sky_columns(dataset: Galaxy10File | str, indices) -> dict[str, np.ndarray]:
    """The catalogue columns of some rows of a Galaxy10-format file.

    Args:
        dataset: an open `galaxy_core.data.galaxy10.Galaxy10File`, or the path of one (opened and closed here).
        indices: int `(k,)` dataset rows (e.g. the test split, `predictions["indices"]`), any order.

    Returns:
        `{"ra", "dec", "redshift", "pxscale"}`: float32 `(k,)` each, in the order of `indices`
        (ra/dec in degrees; float32 keeps positions to ~0.1 arcsec, enough for maps and links,
        not for twin matching: use `Galaxy10File.metadata()`'s float64 for `galaxy_core.data.sky`).

    Raises:
        DatasetError: the file cannot be read; IndexError: a row is out of range.

    Example (not run: needs a file):
        cols = sky_columns("data/Galaxy10_DECals.h5", bundle.predictions["indices"])
    """
    if not isinstance(dataset, Galaxy10File):
        with open_dataset(dataset) as ds:
            return sky_columns(ds, indices)
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise IndexError(f"indices must be a 1-D array of integer rows, got shape {idx.shape} dtype "
                         f"{idx.dtype}.")
    if idx.size and (idx.min() < 0 or idx.max() >= dataset.n):
        raise IndexError(f"row {int(idx.max() if idx.max() >= dataset.n else idx.min())} is out of "
                         f"range 0..{dataset.n - 1} for {dataset.path}; were these indices made for "
                         f"another dataset file?")
    meta = dataset.metadata()
    return {key: meta[key][idx.astype(np.int64)].astype(np.float32) for key in METADATA_KEYS}


def quantile_edges(values, n_bins: int = 8) -> np.ndarray:
    """Bin edges at quantiles of the finite `values`, so bins hold about the same number each.

    Returns:
        float64 `(m + 1,)` increasing edges, m <= n_bins (tied quantiles are merged).

    Raises:
        PropertyError: n_bins < 1 or no finite value.

    Example:
        >>> quantile_edges([1, 2, 3, 4, 5], n_bins=2).tolist()
        [1.0, 3.0, 5.0]
    """
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
        raise PropertyError(f"n_bins must be a positive integer, got {n_bins!r}.")
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise PropertyError("No finite values to bin (all missing or NaN).")
    edges = np.unique(np.quantile(v, np.linspace(0, 1, int(n_bins) + 1)))
    return edges if edges.size > 1 else np.array([edges[0], edges[0]], dtype=np.float64)


def accuracy_by_bins(values, correct, edges) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy of the predictions in each bin of a property such as redshift.

    Bins are `[edges[i], edges[i+1])`, the last one closed (`<= edges[-1]`). Images with a
    non-finite value or one outside the edges are left out of every bin.

    Args:
        values: float `(N,)` property per image (e.g. `sky_columns(...)["redshift"]`).
        correct: bool or 0/1 `(N,)`: was the image classified right.
        edges: increasing float `(B + 1,)` bin edges, or an int B for `quantile_edges(values, B)`.

    Returns:
        `(edges float64 (B+1,), accuracy float64 (B,), counts int64 (B,))`; accuracy is NaN in an
        empty bin.

    Raises:
        PropertyError: shapes differ, or edges are not increasing.

    Example:
        >>> accuracy_by_bins([0.1, 0.3, 0.5], [True, False, True], 2)[2].tolist()
        [1, 2]
    """
    v = np.asarray(values, dtype=np.float64)
    ok = np.asarray(correct)
    if v.ndim != 1 or ok.shape != v.shape:
        raise PropertyError(f"values and correct must be 1-D arrays of the same length, got shapes "
                            f"{v.shape} and {ok.shape}.")
    if ok.dtype != bool and not np.isin(ok, (0, 1)).all():
        raise PropertyError("correct must be booleans (or 0/1): predicted class == true class.")
    ok = ok.astype(bool)
    if np.ndim(edges) == 0:
        edges = quantile_edges(v, int(edges))
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or not np.all(np.isfinite(e)) or np.any(np.diff(e) < 0) \
            or e[-1] <= e[0]:
        raise PropertyError(f"edges must be at least 2 finite, increasing values, got {e.tolist()}.")
    inside = np.isfinite(v) & (v >= e[0]) & (v <= e[-1])
    which = np.clip(np.searchsorted(e, v[inside], side="right") - 1, 0, e.size - 2)
    counts = np.bincount(which, minlength=e.size - 1).astype(np.int64)
    hits = np.bincount(which, weights=ok[inside].astype(np.float64), minlength=e.size - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = hits / counts
    accuracy[counts == 0] = np.nan
    return e, accuracy, counts


def legacy_survey_url(ra: float, dec: float, zoom: int = DEFAULT_ZOOM,
                      layer: str = DEFAULT_LAYER) -> str:
    """Link to the Legacy Surveys sky viewer centred on (ra, dec).

    Args:
        ra: right ascension in degrees (wrapped into [0, 360)).
        dec: declination in degrees, in [-90, 90].
        zoom: viewer zoom level 0..16 (14: about the size of a Galaxy10 cutout).
        layer: viewer layer (default "ls-dr10", the Legacy Surveys DR10 images).

    Returns:
        `https://www.legacysurvey.org/viewer?ra=..&dec=..&layer=..&zoom=..` (6 decimals: 0.004
        arcsec).

    Raises:
        PropertyError: non-finite position, dec outside [-90, 90], or a bad zoom.
    """
    from urllib.parse import urlencode

    ra_f, dec_f = float(ra), float(dec)
    if not (np.isfinite(ra_f) and np.isfinite(dec_f)) or abs(dec_f) > 90:
        raise PropertyError(f"No sky position to link: ra={ra!r}, dec={dec!r} (need finite degrees, "
                            f"dec in [-90, 90]).")
    if isinstance(zoom, bool) or int(zoom) != zoom or not 0 <= zoom <= MAX_ZOOM:
        raise PropertyError(f"zoom must be an integer 0..{MAX_ZOOM}, got {zoom!r}.")
    ra_f = round(ra_f % 360.0, 6) % 360.0  # never "360.000000"
    query = urlencode({"ra": f"{ra_f:.6f}", "dec": f"{dec_f:.6f}", "layer": str(layer),
                       "zoom": int(zoom)})
    return f"{LEGACY_VIEWER}?{query}"

