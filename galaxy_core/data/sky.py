"""Sky twins: images of the same galaxy, and a train/val/test split that keeps them together.

Galaxy10 DECaLS holds about 59 pairs of images within 1 arcsec of each other: the same galaxy
twice. A random split puts some of those pairs across train and test, so the test set holds a
twin of a training image and the test accuracy is optimistic. `sky_groups` links every pair within
a radius (union of pairs: chains A-B, B-C make one group) and `group_split` keeps each group in one
split. `sky_split` does both from `ra`/`dec`; it is a drop-in beside
`galaxy_core.data.split.split_indices` (same arguments plus the coordinates, same `Split` result).
`make_split(split_by, ...)` is what training calls: "sky" (`sky_split`) or "random"
(`split_indices`), each with its `run.json` record.

How `group_split` stratifies: it runs `galaxy_core.data.split.split_indices` (two stratified scikit-learn
`train_test_split` calls) on the GROUPS, each group labelled with its members' most common label
(ties: the smaller label), and gives every image its group's split. So
- with no twins (every group a single image) it returns exactly `split_indices`'s split;
- the class proportions of the groups are kept to within about one group per class, and the
  fractions are fractions of groups: with Galaxy10's ~59 pairs among 17,736 images the image
  fractions move by < 0.4 %;
- a group whose twins carry different labels counts under its majority label.

Example:
    >>> ra = np.array([10.0, 10.0 + 0.2 / 3600, 50.0, 80.0])   # rows 0 and 1: 0.2 arcsec apart
    >>> dec = np.array([5.0, 5.0, -3.0, 20.0])
    >>> sky_groups(ra, dec).tolist()
    [0, 0, 1, 2]
    >>> group_stats(sky_groups(ra, dec))
    {'groups_merged': 1, 'images_in_merged_groups': 2, 'largest_group': 2}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from galaxy_core.config import SPLIT_BY
from galaxy_core.errors import GalaxyError
from galaxy_core.data.split import Split, split_indices

DEFAULT_RADIUS_ARCSEC = 1.0
SPLIT_MODES = SPLIT_BY  # ("sky", "random"): Config.split_by's choices


class SkyError(GalaxyError, ValueError):
    """Sky coordinates or group ids that cannot be used (shape, range, NaN)."""


def _coordinates(ra_deg: Any, dec_deg: Any) -> tuple[np.ndarray, np.ndarray]:
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    if ra.ndim != 1 or ra.shape != dec.shape:
        raise SkyError(f"ra and dec must be 1-D arrays of the same length (degrees, one per image), "
                       f"got shapes {ra.shape} and {dec.shape}.")
    bad = ~(np.isfinite(ra) & np.isfinite(dec))
    if bad.any():
        raise SkyError(f"{int(bad.sum())} image(s) have no finite ra/dec (first: row "
                       f"{int(np.flatnonzero(bad)[0])}); fix the file's ra/dec, or use "
                       f"--split-by random.")
    if np.abs(dec).max(initial=0.0) > 90:
        raise SkyError(f"dec must be in [-90, 90] degrees, got {dec.min()}..{dec.max()}; are ra and "
                       f"dec swapped, or in radians?")
    return ra, dec


def twin_pairs(ra_deg, dec_deg, radius_arcsec: float = DEFAULT_RADIUS_ARCSEC
               ) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of images closer than `radius_arcsec` on the sky.

    Great-circle distances with scikit-learn's `BallTree(metric="haversine")` (exact at any
    separation, across ra = 0/360 and near the poles).

    Args:
        ra_deg, dec_deg: float `(N,)` right ascension and declination in degrees.
        radius_arcsec: a pair is a twin when its separation is <= this (default 1 arcsec).

    Returns:
        `(pairs int64 (P, 2) with i < j, sorted; separations float64 (P,) in arcsec)`.

    Raises:
        SkyError: bad shapes, non-finite coordinates, dec outside [-90, 90], radius <= 0.

    Example:
        >>> pairs, sep = twin_pairs([0.0, 359.9999, 90.0], [0.0, 0.0, 0.0])
        >>> pairs.tolist(), sep.round(2).tolist()
        ([[0, 1]], [0.36])
    """
    from sklearn.neighbors import BallTree

    ra, dec = _coordinates(ra_deg, dec_deg)
    radius = float(radius_arcsec)
    if not np.isfinite(radius) or radius <= 0:
        raise SkyError(f"radius_arcsec must be a positive number of arcseconds, got {radius_arcsec!r}.")
    if ra.size < 2:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float64)
    points = np.radians(np.column_stack([dec, ra]))  # haversine wants (latitude, longitude)
    tree = BallTree(points, metric="haversine")
    neighbours, distances = tree.query_radius(points, r=np.radians(radius / 3600.0),
                                              return_distance=True)
    rows = np.repeat(np.arange(ra.size), [len(n) for n in neighbours])
    cols = np.concatenate(neighbours).astype(np.int64)
    seps = np.degrees(np.concatenate(distances)) * 3600.0
    keep = rows < cols
    pairs = np.column_stack([rows[keep], cols[keep]]).astype(np.int64)
    seps = seps[keep]
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    return pairs[order], seps[order]


def sky_groups(ra_deg, dec_deg, radius_arcsec: float = DEFAULT_RADIUS_ARCSEC) -> np.ndarray:
    """Group id of every image: images linked by chains of pairs within `radius_arcsec` share one.

    Args:
        ra_deg, dec_deg: float `(N,)` degrees (e.g. `Galaxy10File.metadata()["ra"]`, `["dec"]`).
        radius_arcsec: twin radius (default 1 arcsec).

    Returns:
        int64 `(N,)` ids `0..G-1`, numbered in order of each group's first image (so a set with no
        twins gets `0..N-1`).

    Raises:
        SkyError: see `twin_pairs`.

    Example:
        >>> sky_groups([1.0, 2.0, 1.0], [0.0, 0.0, 0.0]).tolist()   # rows 0 and 2: same position
        [0, 1, 0]
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ra, _ = _coordinates(ra_deg, dec_deg)
    pairs, _ = twin_pairs(ra_deg, dec_deg, radius_arcsec)
    n = ra.size
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, components = connected_components(graph, directed=False)
    return _first_occurrence_ids(components)


def _first_occurrence_ids(groups: np.ndarray) -> np.ndarray:
    """Relabel ids to 0..G-1 in order of first appearance (int64)."""
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse.reshape(-1)]


def _check_groups(groups: Any, n: int) -> np.ndarray:
    g = np.asarray(groups)
    if g.shape != (n,):
        raise SkyError(f"groups must hold one group id per image ({n}), got shape {g.shape}; use "
                       f"sky_groups(ra, dec).")
    if g.size and not np.issubdtype(g.dtype, np.integer):
        raise SkyError(f"groups must be integer ids, got dtype {g.dtype}.")
    return g.astype(np.int64)


def group_stats(groups) -> dict[str, int]:
    """How many groups hold more than one image (for `run.json`).

    Returns:
        `{"groups_merged": int, "images_in_merged_groups": int, "largest_group": int}`.
    """
    g = np.asarray(groups).reshape(-1)
    if g.size == 0:
        return {"groups_merged": 0, "images_in_merged_groups": 0, "largest_group": 0}
    _, sizes = np.unique(g, return_counts=True)
    merged = sizes[sizes > 1]
    return {"groups_merged": int(merged.size), "images_in_merged_groups": int(merged.sum()),
            "largest_group": int(sizes.max())}


def group_split(labels, groups, val_fraction: float, test_fraction: float, seed: int) -> Split:
    """Stratified, seeded train/val/test split that keeps every group in one split.

    See the module docstring for the method (a stratified split of the groups by their majority
    label, then expanded to the images).

    Args:
        labels: int `(N,)` class labels.
        groups: int `(N,)` group ids (any integers; `sky_groups` makes them).
        val_fraction, test_fraction: fractions in (0, 1), summing to < 1 (of the groups).
        seed: random state; the same inputs and seed give the same split.

    Returns:
        `galaxy_core.data.split.Split` of sorted int64 index arrays, disjoint, covering 0..N-1, with no
        group in more than one of them. Equal to `split_indices(labels, ...)` when no group has
        more than one image.

    Raises:
        SkyError: groups do not match labels.
        ValueError, DatasetError: as `galaxy_core.data.split.split_indices` (bad fractions; a class
            with fewer than 3 groups).

    Example:
        >>> labels = np.repeat(np.arange(3), 10)
        >>> groups = np.arange(30); groups[1] = 0          # images 0 and 1: one galaxy
        >>> s = group_split(labels, groups, 0.2, 0.2, seed=0)
        >>> int(np.isin([0, 1], s.test).sum()) in (0, 2)
        True
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise SkyError(f"labels must be a 1-D array, got shape {labels.shape}.")
    g = _first_occurrence_ids(_check_groups(groups, labels.size)) if labels.size else np.zeros(0, np.int64)
    n_groups = int(g.max()) + 1 if g.size else 0
    first = np.full(n_groups, -1, dtype=np.int64)
    first[g[::-1]] = np.arange(g.size)[::-1]  # first image of each group
    group_labels = labels[first] if n_groups else labels[:0]
    sizes = np.bincount(g, minlength=n_groups)
    for group in np.flatnonzero(sizes > 1):  # few: the twins only
        values, counts = np.unique(labels[g == group], return_counts=True)
        group_labels[group] = values[np.argmax(counts)]  # most common; ties -> smaller label
    parts = split_indices(group_labels, val_fraction, test_fraction, seed)
    which = np.empty(n_groups, dtype=np.int8)
    for code, part in enumerate((parts.train, parts.val, parts.test)):
        which[part] = code
    image_part = which[g]
    return Split(*(np.flatnonzero(image_part == code).astype(np.int64) for code in range(3)))


def split_crossings(split: Split, groups) -> int:
    """Number of groups whose images sit in more than one part of `split` (0 for `group_split`).

    Use it to report how many twin groups a random split breaks.
    """
    n = sum(part.size for part in (split.train, split.val, split.test))
    g = _check_groups(groups, n)
    part = np.empty(n, dtype=np.int8)
    for code, rows in enumerate((split.train, split.val, split.test)):
        part[rows] = code
    pairs = np.unique(np.column_stack([g, part]), axis=0)
    _, parts_per_group = np.unique(pairs[:, 0], return_counts=True)
    return int((parts_per_group > 1).sum())


def sky_split(labels, ra_deg, dec_deg, val_fraction: float, test_fraction: float, seed: int,
              radius_arcsec: float = DEFAULT_RADIUS_ARCSEC) -> tuple[Split, dict[str, Any]]:
    """`sky_groups` then `group_split`: the `--split-by sky` split and its `run.json` record.

    Args:
        labels: int `(N,)`; ra_deg, dec_deg: float `(N,)` degrees; the rest as `split_indices`.
        radius_arcsec: twin radius (default 1 arcsec).

    Returns:
        `(Split, info)` with info = `{"split_by": "sky", "twin_radius_arcsec": float,
        "groups_merged": int, "images_in_merged_groups": int, "largest_group": int}`.

    Raises:
        SkyError, ValueError, DatasetError: as `sky_groups` and `group_split`.
    """
    groups = sky_groups(ra_deg, dec_deg, radius_arcsec)
    split = group_split(labels, groups, val_fraction, test_fraction, seed)
    return split, {"split_by": "sky", "twin_radius_arcsec": float(radius_arcsec), **group_stats(groups)}


def make_split(split_by: str, labels, ra_deg, dec_deg, val_fraction: float, test_fraction: float,
               seed: int, radius_arcsec: float = DEFAULT_RADIUS_ARCSEC) -> tuple[Split, dict[str, Any]]:
    """The split `Config.split_by` asks for, and its `run.json` record (run.json `split`).

    Args:
        split_by: "sky" (`sky_split`: twins stay together) or "random" (`split_indices`).
        labels: int `(N,)`; ra_deg, dec_deg: float `(N,)` degrees (e.g. `Galaxy10File.metadata()`);
            for "random" they may be None (then the record has no twin counts).
        val_fraction, test_fraction, seed, radius_arcsec: as `sky_split`.

    Returns:
        `(Split, info)`; "sky": `sky_split`'s info; "random": `{"split_by": "random",
        "twin_radius_arcsec", "groups_merged": twin groups in the data, "images_in_merged_groups",
        "largest_group", "groups_across_splits": twin groups the random split breaks}` (only
        `split_by` without coordinates).

    Raises:
        SkyError: unknown `split_by`, or bad coordinates for "sky"; as `sky_split` otherwise.

    Example:
        >>> labels = np.repeat(np.arange(3), 10)
        >>> ra, dec = np.arange(30.0), np.zeros(30)
        >>> make_split("random", labels, ra, dec, 0.2, 0.2, seed=0)[1]["groups_across_splits"]
        0
    """
    if split_by not in SPLIT_MODES:
        raise SkyError(f"split_by must be one of {SPLIT_MODES}, got {split_by!r}.")
    if split_by == "sky":
        return sky_split(labels, ra_deg, dec_deg, val_fraction, test_fraction, seed, radius_arcsec)
    split = split_indices(labels, val_fraction, test_fraction, seed)
    info: dict[str, Any] = {"split_by": "random"}
    if ra_deg is not None and dec_deg is not None:
        groups = sky_groups(ra_deg, dec_deg, radius_arcsec)
        info.update(twin_radius_arcsec=float(radius_arcsec), **group_stats(groups),
                    groups_across_splits=split_crossings(split, groups))
    return split, info
