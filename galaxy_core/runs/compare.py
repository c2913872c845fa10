"""Comparing 2-4 run bundles on the same test set: metrics side by side, confusion difference, disagreements.

Pure numpy on the fields of `galaxy_core.bundle.read.RunBundle` (`config`, `run_info`, `metrics`,
`predictions`); no display code. Layer: above `bundle` (it reads loaded bundles).

Metrics come from `metrics.json` as `galaxy_core.evaluation.metrics.assemble_metrics` writes it: `test` and
`test_tta` METRICS dicts (`accuracy`, `balanced_accuracy`, `macro_f1`, `loss`, `per_class`
{name: {precision, recall, f1, support}}, `confusion_matrix`) and, when present, `calibration`
(`galaxy_core.evaluation.calibration.calibration_summary`); the best epoch is `RunBundle.best_epoch`. Per-image results come from
`predictions.h5`: `indices`, `labels`, `probs`, optional `probs_tta`.

Two runs are comparable only when they were tested on the same images: `check_same_test_set`
refuses runs whose class names, data source or test indices/labels differ.

Example:
    >>> import numpy as np
    >>> a = np.array([[8, 2], [1, 9]]); b = np.array([[10, 0], [5, 5]])
    >>> confusion_difference(a, b).round(3).tolist()
    [[-0.2, 0.2], [-0.4, 0.4]]
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from galaxy_core.bundle.read import RunBundle
from galaxy_core.errors import GalaxyError
from galaxy_core.evaluation.metrics import row_normalised

MIN_RUNS, MAX_RUNS = 2, 4


class CompareError(GalaxyError, ValueError):
    """Runs that cannot be compared (different test sets, classes or data), or a missing member."""


def _name(bundle: RunBundle) -> str:
    return str(getattr(bundle, "name", "?"))


def check_same_test_set(bundles: Sequence[RunBundle]) -> None:
    """Refuse runs that were not tested on the same images with the same labels and classes.

    Checks, against the first bundle: the number of runs (2-4), the class names, the `synthetic`
    flag and the dataset checksum in run.json (when both record one), and the test split's
    `indices` and `labels` in predictions.h5 (same images in the same order).

    Args:
        bundles: 2-4 loaded bundles (`galaxy_core.bundle.read.load_bundle`).

    Raises:
        CompareError: naming the two runs and what differs, and how to get comparable runs
            (train them on the same file with the same split settings: seed, fractions, split-by).
    """
    bundles = list(bundles)
    if not MIN_RUNS <= len(bundles) <= MAX_RUNS:
        raise CompareError(f"Pick {MIN_RUNS} to {MAX_RUNS} runs to compare, got {len(bundles)}.")
    names = [_name(b) for b in bundles]
    if len(set(names)) != len(names):
        raise CompareError(f"The same run was picked twice ({names}); pick different runs.")
    ref = bundles[0]
    fix = ("Compare runs trained on the same dataset file with the same split settings (seed, "
           "val/test fractions and split-by).")
    for other in bundles[1:]:
        pair = f"Runs {_name(ref)!r} and {_name(other)!r}"
        if tuple(ref.config.class_names) != tuple(other.config.class_names):
            raise CompareError(f"{pair} were trained on different classes ({list(ref.config.class_names)} "
                               f"against {list(other.config.class_names)}): their per-class metrics and "
                               f"confusion matrices do not line up. Compare runs trained on the same classes.")
        if bool(ref.run_info.get("synthetic")) != bool(other.run_info.get("synthetic")):
            raise CompareError(f"{pair} were tested on different data: one on synthetic images, one "
                               f"on survey images. {fix}")
        sha_a, sha_b = ref.run_info.get("dataset_sha256"), other.run_info.get("dataset_sha256")
        if sha_a and sha_b and sha_a != sha_b:
            raise CompareError(f"{pair} were trained on different dataset files (checksums "
                               f"{str(sha_a)[:12]}... and {str(sha_b)[:12]}...). {fix}")
        ia, ib = ref.predictions["indices"], other.predictions["indices"]
        if ia.shape != ib.shape:
            raise CompareError(f"{pair} have different test sets ({ia.size} and {ib.size} images). "
                               f"{fix}")
        if not np.array_equal(ia, ib):
            same_set = np.array_equal(np.sort(ia), np.sort(ib))
            what = ("the same test images in a different order" if same_set else
                    f"different test images ({int((~np.isin(ib, ia)).sum())} of {ib.size} differ)")
            raise CompareError(f"{pair} have {what}. {fix}")
        if not np.array_equal(ref.predictions["labels"], other.predictions["labels"]):
            raise CompareError(f"{pair} have the same test images but different labels: the dataset "
                               f"files differ. {fix}")


def _metrics(bundle: RunBundle, tta: bool) -> dict:
    key = "test_tta" if tta else "test"
    m = bundle.metrics.get(key)
    if not isinstance(m, dict):
        raise CompareError(f"Run {_name(bundle)!r} has no {key!r} metrics in metrics.json"
                           + ("; re-evaluate it with `python train.py --evaluate` to add TTA."
                              if tta else "."))
    return m


def compare_metrics(bundles: Sequence[RunBundle], check: bool = True) -> list[dict[str, Any]]:
    """One row per run of the headline test metrics, for a side-by-side table and per-class bars.

    Args:
        bundles: 2-4 loaded bundles.
        check: first `check_same_test_set` (default; set False only for a table of unrelated runs).

    Returns:
        A list (same order as `bundles`) of dicts: `name` str, `backbone` str, `synthetic` bool,
        `n_test` int, `accuracy`, `balanced_accuracy`, `macro_f1`, `loss` floats (plain test
        predictions), `tta_accuracy`, `tta_macro_f1` float or None (no TTA stored), `per_class_f1`
        {class_name: float} (class order of the config), `best_epoch` int or None, `temperature`,
        `ece`, `ece_calibrated` float or None (test ECE before/after temperature scaling, when
        metrics.json has "calibration").

    Raises:
        CompareError: see `check_same_test_set`.
    """
    bundles = list(bundles)
    if check:
        check_same_test_set(bundles)
    rows = []
    for b in bundles:
        test = _metrics(b, tta=False)
        tta = b.metrics.get("test_tta") if isinstance(b.metrics.get("test_tta"), dict) else None
        calib = b.metrics.get("calibration") if isinstance(b.metrics.get("calibration"), dict) else None
        calib_test = (calib or {}).get("test") or {}
        per_class = test.get("per_class", {})
        rows.append({
            "name": _name(b),
            "backbone": b.config.backbone,
            "synthetic": bool(b.run_info.get("synthetic")),
            "n_test": int(test["n"]),
            "accuracy": float(test["accuracy"]),
            "balanced_accuracy": float(test["balanced_accuracy"]),
            "macro_f1": float(test["macro_f1"]),
            "loss": float(test["loss"]),
            "tta_accuracy": None if tta is None else float(tta["accuracy"]),
            "tta_macro_f1": None if tta is None else float(tta["macro_f1"]),
            "per_class_f1": {name: float(per_class[name]["f1"]) if name in per_class else float("nan")
                             for name in b.config.class_names},
            "best_epoch": b.best_epoch,
            "temperature": None if calib is None else float(calib["temperature"]),
            "ece": None if "ece_before" not in calib_test else float(calib_test["ece_before"]),
            "ece_calibrated": None if "ece_after" not in calib_test else float(calib_test["ece_after"]),
        })
    return rows


def _confusion(x, tta: bool) -> np.ndarray:
    cm = np.asarray(_metrics(x, tta)["confusion_matrix"] if isinstance(x, RunBundle) else x)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise CompareError(f"A confusion matrix must be square (C, C), got shape {cm.shape}.")
    return cm


def confusion_difference(a, b, tta: bool = False) -> np.ndarray:
    """Row-normalised confusion of run `a` minus that of run `b`.

    Positive diagonal entries: classes `a` recalls better; positive off-diagonal (i, j): `a`
    mistakes class i for j more often than `b`. Each row sums to 0.

    Args:
        a, b: loaded bundles (their test confusion matrix from metrics.json; the TTA one with
            `tta=True`), or `(C, C)` count matrices. Bundles are checked with `check_same_test_set`.
        tta: use the `test_tta` matrices.

    Returns:
        float64 `(C, C)` in [-1, 1].

    Raises:
        CompareError: different test sets, shapes, or no TTA metrics when asked.
    """
    if isinstance(a, RunBundle) and isinstance(b, RunBundle):
        check_same_test_set([a, b])
    ca, cb = row_normalised(_confusion(a, tta)), row_normalised(_confusion(b, tta))
    if ca.shape != cb.shape:
        raise CompareError(f"Confusion matrices differ in shape ({ca.shape} and {cb.shape}); the runs "
                           f"have different classes.")
    return ca - cb


def _predicted(bundle: RunBundle, tta: bool) -> np.ndarray:
    key = "probs_tta" if tta else "probs"
    probs = bundle.predictions.get(key)
    if probs is None:
        raise CompareError(f"Run {_name(bundle)!r} has no {key!r} in predictions.h5"
                           + ("; re-evaluate it with `python train.py --evaluate` to add TTA."
                              if tta else "."))
    return np.asarray(probs).argmax(axis=1)


def disagreements(a: RunBundle, b: RunBundle, tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Test images one run gets right and the other wrong.

    Args:
        a, b: loaded bundles with the same test set (checked).
        tta: compare the TTA predictions (`probs_tta`) instead of the plain ones.

    Returns:
        `(a_right_b_wrong, b_right_a_wrong)`: int64 rows of `predictions` (not dataset indices;
        `bundle.read_test_images(rows)` shows them, `bundle.predictions["indices"][rows]` gives
        the dataset rows), ascending.

    Raises:
        CompareError: different test sets, or no TTA probabilities when asked.

    Example (not run: needs bundles):
        right_a, right_b = disagreements(load_bundle("runs/densenet"), load_bundle("runs/vgg"))
    """
    check_same_test_set([a, b])
    labels = a.predictions["labels"]
    ok_a, ok_b = _predicted(a, tta) == labels, _predicted(b, tta) == labels
    return (np.flatnonzero(ok_a & ~ok_b).astype(np.int64),
            np.flatnonzero(ok_b & ~ok_a).astype(np.int64))
