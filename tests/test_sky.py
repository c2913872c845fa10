"""Sky twins and the split that keeps them together, on synthetic positions with planted twins."""

import doctest

import numpy as np
import pytest

from galaxy_core.data import sky
from galaxy_core.data.galaxy10 import open_dataset
from galaxy_core.data.split import Split, split_indices
from galaxy_core.errors import DatasetError
from galaxy_core.data.sky import (SkyError, group_split, group_stats, sky_groups, sky_split,
                             split_crossings, twin_pairs)
from galaxy_core.synthetic import make_labels, make_metadata
from conftest import write_galaxy10_like


def offset(ra, dec, arcsec, angle):
    """Position `arcsec` away from (ra, dec) in direction `angle` (small-angle, degrees)."""
    d = arcsec / 3600.0
    return ra + d * np.cos(angle) / np.cos(np.radians(dec)), dec + d * np.sin(angle)


def planted_layout(n, n_pairs, n_triples=0, n_near_misses=0, seed=0):
    """Synthetic labels and DECaLS-like positions (galaxy_core.synthetic) with planted twins.

    Returns (labels, ra, dec, planted): planted is a list of row groups that are the same galaxy
    (0.05-0.9 arcsec apart); near misses are pairs 1.5-3 arcsec apart (different galaxies).
    """
    rng = np.random.default_rng(seed)
    labels = make_labels(n, seed=seed).astype(np.int64)
    meta = make_metadata(n, seed=seed)
    ra, dec = meta["ra"].copy(), meta["dec"].copy()
    rows = rng.permutation(n)
    planted, used = [], 0
    for size, count in ((2, n_pairs), (3, n_triples)):
        for _ in range(count):
            group = rows[used:used + size]
            used += size
            for row in group[1:]:  # each copy within 0.9" of the first one (and of each other)
                ra[row], dec[row] = offset(ra[group[0]], dec[group[0]], rng.uniform(0.05, 0.45),
                                           rng.uniform(0, 2 * np.pi))
                if rng.random() < 0.8:  # twins usually carry the same label, not always
                    labels[row] = labels[group[0]]
            planted.append(sorted(group.tolist()))
    for _ in range(n_near_misses):
        a, b = rows[used:used + 2]
        used += 2
        ra[b], dec[b] = offset(ra[a], dec[a], rng.uniform(1.5, 3.0), rng.uniform(0, 2 * np.pi))
    return labels, ra % 360, dec, planted


def test_docstring_examples():
    assert doctest.testmod(sky).failed == 0


def test_sky_groups_find_exactly_the_planted_twins():
    labels, ra, dec, planted = planted_layout(2000, n_pairs=40, n_triples=5, n_near_misses=20)
    groups = sky_groups(ra, dec, radius_arcsec=1.0)
    assert groups.dtype == np.int64 and groups.shape == (2000,)
    found = [sorted(np.flatnonzero(groups == g).tolist())
             for g in np.unique(groups) if (groups == g).sum() > 1]
    assert sorted(found) == sorted(planted)  # near misses (>= 1.5") stay apart
    assert group_stats(groups) == {"groups_merged": 45, "images_in_merged_groups": 95,
                                   "largest_group": 3}
    # Ids run 0..G-1 in order of first appearance.
    _, first = np.unique(groups, return_index=True)
    assert (np.diff(groups[np.sort(first)]) == 1).all() and groups[0] == 0
    # A larger radius also links the near misses.
    assert group_stats(sky_groups(ra, dec, radius_arcsec=3.5))["groups_merged"] == 65


def test_twin_pairs_across_ra_zero_and_near_the_pole():
    ra = np.array([359.99995, 0.00005, 120.0, 300.0, 10.0])
    dec = np.array([0.0, 0.0, 89.9999, 89.9999, -30.0])
    pairs, seps = twin_pairs(ra, dec, radius_arcsec=1.0)
    # Rows 0, 1: 0.36" apart across ra = 0. Rows 2, 3: 180 degrees of ra apart, but 0.36" from the
    # pole each, so 0.72" apart on the sky.
    assert pairs.tolist() == [[0, 1], [2, 3]]
    np.testing.assert_allclose(seps, [0.36, 0.72], atol=1e-3)
    assert twin_pairs(ra, dec, radius_arcsec=0.5)[0].tolist() == [[0, 1]]
    assert twin_pairs([1.0], [1.0])[0].shape == (0, 2)


def test_group_split_keeps_twins_together_and_stays_stratified():
    labels, ra, dec, planted = planted_layout(3000, n_pairs=80, n_triples=10)
    groups = sky_groups(ra, dec)
    split = group_split(labels, groups, val_fraction=0.1, test_fraction=0.1, seed=7)
    assert isinstance(split, Split)
    parts = (split.train, split.val, split.test)
    everything = np.concatenate(parts)
    assert np.array_equal(np.sort(everything), np.arange(3000))  # disjoint and complete
    assert all(p.dtype == np.int64 and np.array_equal(p, np.sort(p)) for p in parts)
    assert split_crossings(split, groups) == 0
    for group in planted:  # no test image has a twin in train (or val)
        assert sum(np.isin(group, p).any() for p in parts) == 1
    # The random split does break some twin groups: the effect is real.
    assert split_crossings(split_indices(labels, 0.1, 0.1, seed=7), groups) > 5
    # Stratified over groups: each class's test count is within 2 of 10 % of its images, plus the
    # extra images of the twin groups holding that class (a group moves as one).
    counts = np.bincount(labels, minlength=10)
    test_counts = np.bincount(labels[split.test], minlength=10)
    extra = np.zeros(10)
    for group in planted:
        extra[np.unique(labels[group])] += len(group) - 1
    assert (np.abs(test_counts - 0.1 * counts) <= 2 + extra).all()
    assert abs(split.test.size - 300) <= 12 and abs(split.val.size - 300) <= 12
    # Seeded.
    again = group_split(labels, groups, 0.1, 0.1, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(parts, (again.train, again.val, again.test)))


def test_group_split_without_twins_is_the_random_split():
    labels = make_labels(500, seed=3).astype(np.int64)
    a = group_split(labels, np.arange(500), 0.15, 0.15, seed=2)
    b = split_indices(labels, 0.15, 0.15, seed=2)
    for x, y in zip((a.train, a.val, a.test), (b.train, b.val, b.test)):
        np.testing.assert_array_equal(x, y)
    # Arbitrary (non 0..G-1) ids work the same once relabelled.
    c = group_split(labels, np.arange(500) * 7 + 100, 0.15, 0.15, seed=2)
    np.testing.assert_array_equal(c.test, b.test)


def test_sky_split_from_a_synthetic_galaxy10_file_with_planted_twins(tmp_path):
    labels, ra, dec, planted = planted_layout(400, n_pairs=12, n_triples=2)
    path = write_galaxy10_like(tmp_path / "twins.h5", n=400, size=8, labels=labels, ra=ra, dec=dec)
    with open_dataset(path) as ds:
        meta = ds.metadata()
        split, info = sky_split(ds.labels, meta["ra"], meta["dec"], 0.1, 0.2, seed=0)
    assert info == {"split_by": "sky", "twin_radius_arcsec": 1.0, "groups_merged": 14,
                    "images_in_merged_groups": 30, "largest_group": 3}
    train = set(split.train.tolist())
    for group in planted:
        in_test = [row for row in group if row in set(split.test.tolist())]
        assert not in_test or not train.intersection(group)


def test_galaxy10_sized_layout_with_59_pairs():
    """Synthetic stand-in for the real layout: 17,736 images, 59 pairs within 1 arcsec."""
    labels, ra, dec, planted = planted_layout(17736, n_pairs=59, seed=11)
    groups = sky_groups(ra, dec)
    stats = group_stats(groups)
    assert stats == {"groups_merged": 59, "images_in_merged_groups": 118, "largest_group": 2}
    random_split = split_indices(labels, 0.1, 0.1, seed=42)
    sky_split_ = group_split(labels, groups, 0.1, 0.1, seed=42)
    assert split_crossings(random_split, groups) >= 5  # ~1 - (0.8^2 + 2 * 0.1^2) = 34 % of pairs
    assert split_crossings(sky_split_, groups) == 0
    assert abs(sky_split_.test.size - random_split.test.size) <= 59
    counts = np.bincount(labels, minlength=10)
    assert np.abs(np.bincount(labels[sky_split_.test], minlength=10) - 0.1 * counts).max() <= 4


@pytest.mark.parametrize("call, error, words", [
    (lambda: sky_groups([1.0, 2.0], [1.0]), SkyError, "same length"),
    (lambda: sky_groups([1.0, np.nan], [1.0, 2.0]), SkyError, "finite ra/dec"),
    (lambda: sky_groups([1.0, 2.0], [100.0, 2.0]), SkyError, "swapped"),
    (lambda: sky_groups([1.0, 2.0], [1.0, 2.0], radius_arcsec=0), SkyError, "positive"),
    (lambda: group_split(np.zeros(30, int), np.arange(29), 0.1, 0.1, 0), SkyError, "one group id"),
    (lambda: group_split(np.repeat([0, 1], 15), np.arange(30) * 0.5, 0.1, 0.1, 0), SkyError, "integer"),
    (lambda: group_split(np.repeat([0, 1], 15), np.repeat(np.arange(5), 6), 0.2, 0.2, 0),
     DatasetError, "at least 3"),
    (lambda: group_split(np.repeat([0, 1], 15), np.arange(30), 0.6, 0.6, 0), ValueError, "sum < 1"),
])
def test_errors_say_what_is_wrong(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)


def test_make_split_sky_keeps_twins_together_and_random_reports_the_broken_groups():
    labels, ra, dec, planted = planted_layout(600, n_pairs=40, n_triples=3)
    sky_parts, sky_info = sky.make_split("sky", labels, ra, dec, 0.1, 0.2, seed=1)
    assert sky_info["split_by"] == "sky" and sky_info["groups_merged"] == 43
    part = np.empty(600, np.int8)
    for code, rows in enumerate((sky_parts.train, sky_parts.val, sky_parts.test)):
        part[rows] = code
    assert all(len(set(part[group])) == 1 for group in planted)

    random_parts, info = sky.make_split("random", labels, ra, dec, 0.1, 0.2, seed=1)
    expected = split_indices(labels, 0.1, 0.2, 1)  # exactly today's split
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(random_parts, name), getattr(expected, name))
    assert info["split_by"] == "random" and info["groups_merged"] == 43
    assert info["groups_across_splits"] == split_crossings(random_parts, sky_groups(ra, dec)) > 0
    assert sky.make_split("random", labels, None, None, 0.1, 0.2, seed=1)[1] == {"split_by": "random"}
    with pytest.raises(SkyError, match="split_by must be one of"):
        sky.make_split("galactic", labels, ra, dec, 0.1, 0.2, seed=1)
