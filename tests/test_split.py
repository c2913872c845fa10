"""galaxy_core.data.split: stratified seeded split, its .npz file, balanced class weights."""

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from galaxy_core.data import galaxy10 as data
from galaxy_core.data import split as split_mod
from galaxy_core.errors import DatasetError


# --------------------------------------------------------------------------------------------
# Split and class weights
# --------------------------------------------------------------------------------------------
def _imbalanced_labels(seed=0):
    counts = np.array(data.CLASS_COUNTS) // 10  # 1,773 labels with the real imbalance
    labels = np.repeat(np.arange(10), counts)
    np.random.default_rng(seed).shuffle(labels)
    return labels, counts


def test_split_is_stratified_disjoint_and_complete():
    labels, counts = _imbalanced_labels()
    split = split_mod.split_indices(labels, val_fraction=0.1, test_fraction=0.15, seed=42)
    parts = (split.train, split.val, split.test)
    assert all(p.dtype == np.int64 for p in parts)
    joined = np.concatenate(parts)
    assert np.array_equal(np.sort(joined), np.arange(labels.size))  # disjoint and covering
    sizes = split.sizes()
    assert sum(sizes.values()) == labels.size
    assert abs(sizes["test"] - 0.15 * labels.size) <= 1 and abs(sizes["val"] - 0.1 * labels.size) <= 1
    # Class proportions: val and test (one stratified draw each) within one image per class of
    # the proportional count; train is what is left, so its rounding errors add up (two images).
    for part, tolerance in ((split.val, 1), (split.test, 1), (split.train, 2)):
        got = np.bincount(labels[part], minlength=10)
        assert np.abs(got - part.size * counts / labels.size).max() <= tolerance


def test_split_is_reproducible_and_seed_dependent():
    labels, _ = _imbalanced_labels()
    a = split_mod.split_indices(labels, 0.1, 0.1, seed=1)
    b = split_mod.split_indices(labels, 0.1, 0.1, seed=1)
    c = split_mod.split_indices(labels, 0.1, 0.1, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip((a.train, a.val, a.test), (b.train, b.val, b.test)))
    assert not np.array_equal(a.test, c.test)


def test_split_tiny_class_works_and_too_tiny_is_a_clear_error():
    labels = np.r_[np.zeros(40, int), np.ones(40, int), np.full(3, 2)]
    split = split_mod.split_indices(labels, 0.2, 0.2, seed=0)
    for part in (split.train, split.val, split.test):
        assert set(labels[part]) == {0, 1, 2}
    with pytest.raises(DatasetError, match=r"at least 3 images.*2 \(Round Smooth\): 2"):
        split_mod.split_indices(np.r_[np.zeros(40, int), np.full(2, 2)], 0.2, 0.2, seed=0)
    with pytest.raises(DatasetError, match="Cannot make a stratified split of 30 images"):
        split_mod.split_indices(np.arange(30) % 10, 0.1, 0.1, seed=0)  # 3 test images, 10 classes
    with pytest.raises(ValueError, match="sum < 1"):
        split_mod.split_indices(labels, 0.5, 0.5, seed=0)


def test_save_and_load_split(tmp_path):
    labels, _ = _imbalanced_labels()
    split = split_mod.split_indices(labels, 0.1, 0.1, seed=3)
    path = split_mod.save_split(split, tmp_path / "split.npz")
    back = split_mod.load_split(path)
    assert back.sizes() == split.sizes()
    assert all(np.array_equal(x, y) and y.dtype == np.int64
               for x, y in zip((split.train, split.val, split.test), (back.train, back.val, back.test)))
    with pytest.raises(DatasetError, match="missing"):
        np.savez(tmp_path / "bad.npz", train=np.arange(3))
        split_mod.load_split(tmp_path / "bad.npz")
    with pytest.raises(DatasetError, match="overlap"):
        np.savez(tmp_path / "overlap.npz", train=np.arange(3), val=np.arange(2), test=np.arange(5, 6))
        split_mod.load_split(tmp_path / "overlap.npz")
    with pytest.raises(DatasetError, match="Cannot read the split file"):
        split_mod.load_split(tmp_path / "absent.npz")


def test_class_weights_equal_scikit_learn():
    labels, _ = _imbalanced_labels()
    weights = split_mod.compute_class_weights(labels, 10)
    expected = compute_class_weight("balanced", classes=np.arange(10), y=labels)
    assert sorted(weights) == list(range(10))
    np.testing.assert_allclose([weights[c] for c in range(10)], expected)
    assert weights[4] > weights[2]  # the rarest class (Cigar Shaped Smooth) weighs most
    with pytest.raises(DatasetError, match=r"no image of class 4 \(Cigar Shaped Smooth\)"):
        split_mod.compute_class_weights(labels[labels != 4], 10)
