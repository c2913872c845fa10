"""The train/val/test split of a dataset's rows and the balanced class weights of its labels.

`split_indices` is a stratified, seeded split (scikit-learn); `save_split` / `load_split` keep it
next to a run (`.npz`, written atomically); `compute_class_weights` gives the weights `fit` uses.

Example:
    >>> s = split_indices(np.arange(100) % 10, val_fraction=0.1, test_fraction=0.1, seed=0)
    >>> s.sizes()
    {'train': 80, 'val': 10, 'test': 10}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from galaxy_core.config import CLASS_NAMES
from galaxy_core.errors import DatasetError
from galaxy_core.io import atomic_file


@dataclass(frozen=True)
class Split:
    """Disjoint int64 index arrays (sorted) into the dataset rows."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": int(self.train.size), "val": int(self.val.size), "test": int(self.test.size)}


def split_indices(labels, val_fraction: float, test_fraction: float, seed: int) -> Split:
    """Stratified, seeded train/val/test split of `range(len(labels))`.

    Two scikit-learn `train_test_split(..., stratify=)` calls: first test off the whole set, then
    val off the rest (with val_fraction rescaled so it is a fraction of the whole set). Each part
    keeps the class proportions to within about one image per class.

    Args:
        labels: int array `(N,)`.
        val_fraction, test_fraction: fractions of N in (0, 1), summing to < 1.
        seed: random state; the same seed gives the same split.

    Returns:
        Split with sorted int64 arrays that are disjoint and together cover 0..N-1.

    Raises:
        ValueError: bad fractions or labels.
        DatasetError: a class has too few images, or a part would have fewer images than there
            are classes, so it cannot be stratified.
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}.")
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction={val_fraction} and test_fraction={test_fraction} must each be "
                         f"in (0, 1) with a sum < 1.")
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < 3:
        small = ", ".join(f"{_class_text(c)}: {k}" for c, k in zip(classes, counts) if k < 3)
        raise DatasetError(f"Cannot make a stratified split: every class needs at least 3 images (one "
                           f"each for train, val and test); too few in {small}. Use more images or "
                           f"drop those classes.")
    all_idx = np.arange(labels.size, dtype=np.int64)
    val_of_rest = val_fraction / (1.0 - test_fraction)
    try:
        rest, test = train_test_split(all_idx, test_size=test_fraction, stratify=labels,
                                      random_state=seed)
        train, val = train_test_split(rest, test_size=val_of_rest, stratify=labels[rest],
                                      random_state=seed)
    except ValueError as err:  # e.g. a part smaller than the number of classes
        raise DatasetError(f"Cannot make a stratified split of {labels.size} images in "
                           f"{classes.size} classes with val_fraction={val_fraction}, "
                           f"test_fraction={test_fraction}: {err} Use more images or larger "
                           f"fractions.") from err
    return Split(np.sort(train).astype(np.int64), np.sort(val).astype(np.int64),
                 np.sort(test).astype(np.int64))


def save_split(split: Split, path: str | Path) -> Path:
    """Write the split to an `.npz` file (arrays `train`, `val`, `test`); returns the path."""
    path = Path(path)
    with atomic_file(path, "wb") as f:
        np.savez(f, train=split.train, val=split.val, test=split.test)
    return path


def load_split(path: str | Path) -> Split:
    """Read a split written by `save_split`.

    Raises:
        DatasetError: missing file, missing arrays, non-integer or overlapping indices.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("train", "val", "test") if k not in data.files]
            if missing:
                raise DatasetError(f"{path} is not a split file: missing {missing}.")
            parts = {k: np.asarray(data[k]) for k in ("train", "val", "test")}
    except (OSError, ValueError) as err:
        raise DatasetError(f"Cannot read the split file {path}: {err}") from err
    for key, arr in parts.items():
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise DatasetError(f"{path}: '{key}' must be a 1-D integer array, got {arr.dtype} "
                               f"{arr.shape}.")
    joined = np.concatenate(list(parts.values()))
    if np.unique(joined).size != joined.size:
        raise DatasetError(f"{path}: train, val and test indices overlap.")
    return Split(*(parts[k].astype(np.int64) for k in ("train", "val", "test")))


def min_images_per_class(val_fraction: float, test_fraction: float) -> int:
    """The fewest images a class may have for the split: 3 (one each for train, val and test), and
    enough that the smaller of the val and test fractions gets at least one of them on average
    (`ceil(1 / min(val_fraction, test_fraction))`: 10 at the default 0.1)."""
    return max(3, math.ceil(1.0 / min(val_fraction, test_fraction) - 1e-9))


def check_class_sizes(labels, class_names: Sequence[str], val_fraction: float, test_fraction: float) -> None:
    """Refuse classes too small for the split, naming them, the reason and the minimum.

    Raises:
        DatasetError: a class has fewer than `min_images_per_class(...)` images.
    """
    need = min_images_per_class(val_fraction, test_fraction)
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_names))
    small = [f"{class_names[c]!r}: {int(counts[c])}" for c in range(len(class_names)) if counts[c] < need]
    if small:
        raise DatasetError(f"Too few images for the train/val/test split in {', '.join(small)}. Every class "
                           f"needs at least {need} images, so that the validation ({val_fraction:g}) and test "
                           f"({test_fraction:g}) fractions each get one of them; add images to those classes, "
                           f"drop them, or raise --val-fraction/--test-fraction.")


def compute_class_weights(labels, num_classes: int,
                          class_names: Sequence[str] | None = None) -> dict[int, float]:
    """Balanced class weights `n / (num_classes * count_c)` (scikit-learn), as `{class: weight}`.

    Raises:
        DatasetError: a class in 0..num_classes-1 has no image, or a label is out of range.
    """
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels).reshape(-1)
    classes = np.arange(num_classes)
    outside = np.setdiff1d(np.unique(labels), classes)
    if outside.size:
        raise DatasetError(f"Labels {outside.tolist()} are outside 0..{num_classes - 1}.")
    absent = np.setdiff1d(classes, labels)
    if absent.size:
        names = ", ".join(_class_text(c, class_names) for c in absent)
        raise DatasetError(f"Cannot compute balanced class weights: no image of class {names}. "
                           f"Use a split that contains every class, or turn class weights off "
                           f"(--no-class-weights).")
    weights = compute_class_weight("balanced", classes=classes, y=labels)
    return {int(c): float(w) for c, w in zip(classes, weights)}


def _class_text(c, class_names: Sequence[str] | None = None) -> str:
    c, names = int(c), CLASS_NAMES if class_names is None else class_names
    return f"{c} ({names[c]})" if 0 <= c < len(names) else str(c)
