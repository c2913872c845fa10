"""Error analysis on labels and probabilities (pure numpy; rows index the arrays given)."""

from __future__ import annotations

import numpy as np

from galaxy_core.errors import ExplainError

TARGETS = ("predicted", "true")


def _check(labels, probs) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, np.float32)
    if probs.ndim != 2:
        raise ExplainError(f"probs must be (N, num_classes); got shape {probs.shape}.")
    if labels is None:
        return None, probs
    labels = np.asarray(labels).astype(np.int64)
    if labels.shape != (len(probs),):
        raise ExplainError(f"labels must be ({len(probs)},) to match probs; got shape {labels.shape}.")
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ExplainError(f"labels must be in [0, {probs.shape[1]}).")
    return labels, probs


def target_classes(probs, labels=None, target: str = "predicted") -> np.ndarray:
    """The class to explain for each row: the predicted (argmax) or the true class. int64 (N,)."""
    if target not in TARGETS:
        raise ExplainError(f"target must be one of {TARGETS}; got {target!r}.")
    labels, probs = _check(labels, probs)
    if target == "true":
        if labels is None:
            raise ExplainError("target='true' needs labels.")
        return labels
    return probs.argmax(axis=1).astype(np.int64)


def misclassified(labels, probs) -> np.ndarray:
    """Rows whose argmax differs from the label, most confident errors first. int64 (E,)."""
    labels, probs = _check(labels, probs)
    pred = probs.argmax(axis=1)
    rows = np.flatnonzero(pred != labels)
    confidence = probs[rows, pred[rows]]
    return rows[np.argsort(-confidence, kind="stable")].astype(np.int64)


def margins(probs) -> np.ndarray:
    """Top-1 minus top-2 probability per row. float32 (N,)."""
    _, probs = _check(None, probs)
    top2 = np.sort(probs, axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]).astype(np.float32)


def most_ambiguous(probs, k: int) -> np.ndarray:
    """The k rows with the smallest top-1 minus top-2 margin, smallest first. int64 (min(k, N),)."""
    if k < 0:
        raise ExplainError(f"k must be >= 0; got {k}.")
    return np.argsort(margins(probs), kind="stable")[:k].astype(np.int64)


def errors_by_pair(labels, probs) -> dict[tuple[int, int], np.ndarray]:
    """Misclassified rows grouped by (true, predicted) class, each most confident first.

    Returns:
        dict (true, pred) -> int64 rows, pairs ordered by number of errors (most first).
    """
    labels, probs = _check(labels, probs)
    pred = probs.argmax(axis=1)
    groups: dict[tuple[int, int], list[int]] = {}
    for row in misclassified(labels, probs):
        groups.setdefault((int(labels[row]), int(pred[row])), []).append(int(row))
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return {pair: np.asarray(rows, np.int64) for pair, rows in ordered}
