"""pandas tables of the views: splits, class counts, per-class scores, confusion cells, errors,
classification results, runs side by side.

Plain Python / numpy / pandas (no streamlit), so each table is tested without a browser.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from galaxy_core.evaluation.metrics import row_normalised
from galaxy_core.inference.classify import top_k

SPLITS = ("train", "val", "test")


def split_sizes(sizes: Mapping[str, int] | None, num_test: int) -> dict[str, int | None]:
    """`{"train": n, "val": n, "test": n}` from `RunBundle.split_sizes` (None when not stored;
    the test size then comes from the predictions, `num_test`)."""
    sizes = sizes or {}
    out = {split: None if sizes.get(split) is None else int(sizes[split]) for split in SPLITS}
    if out["test"] is None:
        out["test"] = int(num_test)
    return out


def split_table(sizes: Mapping[str, int] | None, num_test: int) -> pd.DataFrame:
    """Split sizes and shares as a DataFrame (index train / validation / test)."""
    sizes = split_sizes(sizes, num_test)
    known = sum(v for v in sizes.values() if v is not None)
    return pd.DataFrame(
        {"images": [sizes[s] for s in sizes],
         "share": [None if sizes[s] is None or not known else f"{sizes[s] / known:.0%}" for s in sizes]},
        index=pd.Index(["train", "validation", "test"], name="split"))


def class_counts(test_labels: np.ndarray, num_classes: int, synthetic: bool = False,
                 galaxy10: bool = True) -> dict[str, list[int]]:
    """Images per class: the whole Galaxy10 DECaLS dataset (real runs on Galaxy10's 10 classes;
    `galaxy10=False` for a run on other labels), then the run's test split (from its predictions).

    Returns:
        `{split name: num_classes counts}`, e.g. `{"Galaxy10 DECaLS": [...], "test": [...]}`.
    """
    counts: dict[str, list[int]] = {}
    if galaxy10 and not synthetic:
        from galaxy_core.data.galaxy10 import CLASS_COUNTS

        if len(CLASS_COUNTS) == num_classes:
            counts["Galaxy10 DECaLS"] = [int(v) for v in CLASS_COUNTS]
    counts["test"] = np.bincount(np.asarray(test_labels, dtype=np.int64),
                                 minlength=num_classes)[:num_classes].tolist()
    return counts


def per_class_table(per_class: Mapping[str, Mapping[str, Any]], class_names: Sequence[str]) -> pd.DataFrame:
    """Per-class precision / recall / F1 / support as a DataFrame, one row per class.

    Args:
        per_class: `metrics["per_class"]`: `{class name: {"precision", "recall", "f1", "support"}}`
            (`galaxy_core.evaluation.metrics.compute_metrics`).
    """
    rows = [{"class": name, **{key: per_class.get(name, {}).get(key)
                               for key in ("precision", "recall", "f1", "support")}}
            for name in class_names]
    return pd.DataFrame(rows).set_index("class")


def cell_indices(y_true: np.ndarray, y_pred: np.ndarray, true_label: int, pred_label: int) -> np.ndarray:
    """Row indices (into the test arrays) of the images in one confusion-matrix cell. int64."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return np.flatnonzero((y_true == true_label) & (y_pred == pred_label)).astype(np.int64)


def cell_table(matrix: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """The non-empty cells of a confusion matrix as a list: errors first, then correct cells.

    Each group is sorted by image count (largest first), so the first row is the most frequent
    confusion. Columns: `true_index`, `pred_index` (ints), `true`, `predicted`, `images`, `share`
    (of the true class).
    """
    counts = np.asarray(matrix, dtype=np.int64)
    shares = row_normalised(counts)
    rows = [(i != j, int(counts[i, j]), i, j) for i in range(len(counts)) for j in range(len(counts))
            if counts[i, j] > 0]
    rows.sort(key=lambda r: (not r[0], -r[1], r[2], r[3]))
    return pd.DataFrame({
        "true_index": [r[2] for r in rows],
        "pred_index": [r[3] for r in rows],
        "true": [class_names[r[2]] for r in rows],
        "predicted": [class_names[r[3]] for r in rows],
        "images": [r[1] for r in rows],
        "share": [float(shares[r[2], r[3]]) for r in rows],
    })


def cell_position(cells: pd.DataFrame, true_index: int, pred_index: int) -> int:
    """Row position of the (true, predicted) cell in a `cell_table`, or 0 if it is not listed."""
    match = np.flatnonzero((cells["true_index"].to_numpy() == true_index)
                           & (cells["pred_index"].to_numpy() == pred_index))
    return int(match[0]) if match.size else 0


def error_table(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str],
                rows: Iterable[int] | None = None) -> pd.DataFrame:
    """Misclassified test images as a DataFrame: true/predicted class, confidence and margin.

    `confidence` is the predicted class's probability; `margin` = p(predicted) - p(true) (how far
    the model was from getting it right).

    Args:
        y_true: int `(N,)`; probs: float `(N, C)`.
        rows: optional subset of row indices to consider (default: all misclassified).

    Returns:
        DataFrame indexed by the test row, columns `true`, `predicted`, `confidence`, `margin`,
        `p_true`.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=float)
    y_pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != y_true) if rows is None else np.asarray(list(rows), dtype=np.int64)
    p_pred = probs[wrong, y_pred[wrong]]
    p_true = probs[wrong, y_true[wrong]]
    return pd.DataFrame({
        "true": [class_names[i] for i in y_true[wrong]],
        "predicted": [class_names[i] for i in y_pred[wrong]],
        "confidence": p_pred,
        "margin": p_pred - p_true,
        "p_true": p_true,
    }, index=pd.Index(wrong, name="test row"))


def error_pairs(errors: pd.DataFrame) -> dict[str, int]:
    """`{"true → predicted": number of errors}` of an `error_table`, most frequent pair first."""
    keys = errors["true"] + " → " + errors["predicted"]
    counts = keys.value_counts(sort=False)
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {key: int(n) for key, n in ordered}


def results_table(results: Sequence[Mapping[str, Any]], class_names: Sequence[str], k: int = 3) -> pd.DataFrame:
    """The Classify view's table: one row per uploaded file (errors included).

    Args:
        results: `pages.lib.uploads.classify_uploads` rows (`name`, `probs` float (C,) or None,
            `error`; for a blended run also `probs_cnn` and `probs_morphology`).

    Returns:
        Columns `file`, `predicted`, `confidence`, for a blended run `CNN alone` and `morphology
        alone` (each part's top class), then `class 2`, `p 2`, ... up to `k`, and `error`.
    """
    rows = []
    for r in results:
        row: dict[str, Any] = {"file": r["name"]}
        if r.get("probs") is not None:
            ranked = top_k(r["probs"], class_names, max(1, min(int(k), len(r["probs"]))))
            row["predicted"], row["confidence"] = ranked[0]
            for col, key in PART_COLUMNS.items():
                if r.get(key) is not None:
                    row[col] = class_names[int(np.argmax(r[key]))]
            for j, (name, p) in enumerate(ranked[1:], start=2):
                row[f"class {j}"], row[f"p {j}"] = name, p
        row["error"] = r.get("error") or ""
        rows.append(row)
    table = pd.DataFrame(rows)
    for col in ("predicted", "confidence"):
        if col not in table:
            table[col] = None
    first = ["file", "predicted", "confidence"] + [c for c in PART_COLUMNS if c in table]
    return table[first + [c for c in table.columns if c not in first + ["error"]] + ["error"]]


# results_table columns of a blended run: column -> the part's probabilities in a result row.
PART_COLUMNS = {"CNN alone": "probs_cnn", "morphology alone": "probs_morphology"}


COMPARE_COLUMNS = {  # compare_metrics key -> column of compare_table
    "backbone": "backbone",
    "n_test": "test images",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "macro_f1": "macro F1",
    "tta_accuracy": "TTA accuracy",
    "ece": "ECE",
    "best_epoch": "best epoch",
}


def compare_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Runs side by side: one row per run (index: its name), the headline test metrics as columns.

    Args:
        rows: `galaxy_core.runs.compare.compare_metrics` rows.

    Returns:
        Columns `backbone`, `test images`, `accuracy`, `balanced accuracy`, `macro F1`, `TTA
        accuracy` (None when the run stored no TTA), `ECE` (test, before temperature scaling; None
        when metrics.json has no calibration), `best epoch`, `synthetic`.
    """
    table = pd.DataFrame([{column: row.get(key) for key, column in COMPARE_COLUMNS.items()}
                          | {"synthetic": bool(row.get("synthetic"))} for row in rows],
                         index=pd.Index([row["name"] for row in rows], name="run"))
    for column in ("accuracy", "balanced accuracy", "macro F1", "TTA accuracy", "ECE"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    return table
