"""Several runs side by side (Compare runs): metrics, confusion difference, disagreements."""

from __future__ import annotations

import numpy as np

from galaxy_core.runs import compare
from pages.lib.state import load_runs


def compare_runs(paths) -> list[dict]:
    """`galaxy_core.runs.compare.compare_metrics` of the runs at `paths` (raises `CompareError` when
    their test sets differ)."""
    return compare.compare_metrics(load_runs(paths))


def confusion_difference(path_a: str, path_b: str, tta: bool = False) -> np.ndarray:
    """float64 `(C, C)`: row-normalised confusion of run A minus run B (`compare.confusion_difference`)."""
    a, b = load_runs([path_a, path_b])
    return compare.confusion_difference(a, b, tta=tta)


def disagreements(path_a: str, path_b: str, tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """`(rows A gets right and B wrong, rows B gets right and A wrong)`, int64 test rows."""
    a, b = load_runs([path_a, path_b])
    return compare.disagreements(a, b, tta=tta)
