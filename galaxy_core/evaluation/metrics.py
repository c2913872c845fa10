"""Metrics of a classifier: scikit-learn scores of one split, the metrics.json document, the text report.

- `compute_metrics(y_true, probs, class_names) -> METRICS` (scikit-learn metrics).
- `evaluate_split(model, images_uint8, labels, class_names, tta=...)`: predict one split
  (`galaxy_core.inference.probabilities.predict_probs`) and score it, plain and with TTA.
- `assemble_metrics(test, val, **extra)`: the metrics.json dict.
- `METRIC_KEYS`: the keys every METRICS dict has (checked by `galaxy_core.bundle.schema`).
- `best_epoch_of(history)`: the 1-based best epoch of a Keras history.
- `format_report(metrics, class_names, synthetic, best_epoch)`: the command line's text report.
- `row_normalised(confusion)`: a confusion matrix as the share of each true class (the project's one
  row-normaliser: the app's confusion views and `runs.compare`).

`metrics.json` schema (written by `galaxy_core.training.train` into the run bundle, rewritten by
`reevaluate_bundle`; build it with `assemble_metrics`):

```
{
  "format_version": 1,
  "test":      METRICS,          # plain predictions on the test split (required)
  "test_tta":  METRICS | null,   # mean over the 8 rotations/flips of each test image
  "val":       METRICS | null,   # plain predictions on the validation split
  "val_tta":   METRICS | null,
  ...                            # further sections: calibration, morphology (the blend), reevaluated_at
}
METRICS = {
  "n": int, "accuracy": float, "loss": float (categorical cross-entropy),
  "balanced_accuracy": float, "macro_f1": float,
  "per_class": {class_name: {"precision": float, "recall": float, "f1": float, "support": int}},
  "confusion_matrix": [[int]] (C x C, rows = true class, columns = predicted class),
  "classification_report": str (scikit-learn's text report)
}
```
Facts about the run (best epoch, epochs run, wall time, images/s) are run.json's, not metrics
(`galaxy_core.bundle.schema.RUN_FACTS`). All epochs in a bundle are 1-based.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from galaxy_core.inference.probabilities import predict_probs
from galaxy_core.io import to_jsonable

METRICS_FORMAT_VERSION = 1
# Keys every METRICS dict has (checked by galaxy_core.bundle.schema when a bundle is written or loaded).
METRIC_KEYS = ("n", "accuracy", "loss", "balanced_accuracy", "macro_f1", "per_class",
               "confusion_matrix", "classification_report")
# Probabilities are clipped to [EPS, 1] before the log of the cross-entropy.
EPS = 1e-7


def compute_metrics(y_true: Sequence[int], probs: np.ndarray, class_names: Sequence[str]) -> dict:
    """Classification metrics of probabilities against true labels (JSON-serialisable).

    Args:
        y_true: `(N,)` integer labels in `0..C-1`.
        probs: `(N, C)` class probabilities (rows sum to 1).
        class_names: C names, index = label.

    Returns:
        The METRICS dict of the module docstring: plain Python ints/floats/lists/str only.
        Classes absent from `y_true` get recall 0 and support 0; balanced accuracy is scikit-learn's
        (mean recall over the classes present in `y_true`).
    """
    from sklearn import metrics as skm

    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    class_names = [str(name) for name in class_names]
    num_classes = len(class_names)
    if y_true.ndim != 1 or probs.ndim != 2 or len(y_true) != len(probs):
        raise ValueError(f"y_true must be (N,) and probs (N, C) with the same N; got {y_true.shape} "
                         f"and {probs.shape}")
    if len(y_true) == 0:
        raise ValueError("Cannot compute metrics of zero examples")
    if probs.shape[1] != num_classes:
        raise ValueError(f"probs has {probs.shape[1]} columns but there are {num_classes} class names")
    if not np.issubdtype(y_true.dtype, np.integer):
        if not np.all(np.mod(y_true, 1) == 0):
            raise ValueError("y_true must hold integer class labels")
    y_true = y_true.astype(np.int64)
    if y_true.min() < 0 or y_true.max() >= num_classes:
        raise ValueError(f"labels must be in 0..{num_classes - 1}; got {y_true.min()}..{y_true.max()}")

    y_pred = probs.argmax(axis=1)
    labels = list(range(num_classes))
    p_true = np.clip(probs[np.arange(len(y_true)), y_true], EPS, 1.0)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    with warnings.catch_warnings():
        # "y_pred contains classes not in y_true": expected on small splits.
        warnings.simplefilter("ignore")
        balanced = skm.balanced_accuracy_score(y_true, y_pred)
    return {
        "n": int(len(y_true)),
        "accuracy": float(np.mean(y_pred == y_true)),
        "loss": float(-np.mean(np.log(p_true))),
        "balanced_accuracy": float(balanced),
        "macro_f1": float(skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).astype(int).tolist(),
        "classification_report": skm.classification_report(
            y_true, y_pred, labels=labels, target_names=class_names, digits=4, zero_division=0),
    }


def evaluate_split(model, images_uint8: np.ndarray, labels: Sequence[int], class_names: Sequence[str],
                   batch_size: int = 64, tta: bool = True, progress: bool = False) -> dict:
    """Predict one split and score it, without and (optionally) with TTA.

    Args:
        model: softmax Keras model on [0, 1] input.
        images_uint8: `(N, S, S, 3)` uint8 preprocessed images (memmap is fine).
        labels: `(N,)` int labels.
        class_names: C names.
        batch_size: images per model call.
        tta: also score the mean over the 8 rotations/flips.
        progress: progress bars on stderr.

    Returns:
        `{"plain": METRICS, "tta": METRICS or None, "probs": float32 (N, C),
        "probs_tta": float32 (N, C) or None}`; the arrays are not for JSON (see `assemble_metrics`).
    """
    probs = predict_probs(model, images_uint8, batch_size=batch_size, tta=False, progress=progress)
    probs_tta = (predict_probs(model, images_uint8, batch_size=batch_size, tta=True, progress=progress)
                 if tta else None)
    return {
        "plain": compute_metrics(labels, probs, class_names),
        "tta": compute_metrics(labels, probs_tta, class_names) if tta else None,
        "probs": probs,
        "probs_tta": probs_tta,
    }


def assemble_metrics(test: Mapping[str, Any], val: Mapping[str, Any] | None = None, **extra: Any) -> dict:
    """Build the metrics.json dict from `evaluate_split` results.

    Args:
        test: `evaluate_split` result on the test split.
        val: `evaluate_split` result on the validation split (optional).
        extra: further JSON-serialisable sections (e.g. `calibration`).

    Returns:
        The dict of the module docstring's schema.
    """
    doc = {
        "format_version": METRICS_FORMAT_VERSION,
        "test": test["plain"],
        "test_tta": test.get("tta"),
        "val": val["plain"] if val is not None else None,
        "val_tta": val.get("tta") if val is not None else None,
    }
    doc.update(extra)
    return to_jsonable(doc)  # plain Python; fails early if not serialisable


def best_epoch_of(history: Mapping[str, Sequence[float]]) -> int | None:
    """1-based epoch with the highest validation accuracy (else lowest validation loss), or None."""
    for key, pick in (("val_accuracy", np.nanargmax), ("val_loss", np.nanargmin)):
        values = np.asarray(history.get(key, []), dtype=np.float64)
        if values.size and not np.all(np.isnan(values)):
            return int(pick(values)) + 1
    return None


def format_report(metrics: Mapping[str, Any], class_names: Sequence[str], synthetic: bool,
                  best_epoch: int | None = None) -> str:
    """Human-readable text of a metrics.json dict for the command line.

    Args:
        metrics: metrics.json dict (module docstring schema).
        class_names: C names.
        synthetic: the run was trained on synthetic data (printed as a loud banner).
        best_epoch: the run's 1-based best epoch (run.json `best_epoch`), printed when given.
    """
    lines = []
    if synthetic:
        bar = "!" * 78
        lines += [bar, "!!  SYNTHETIC DATA: this model was trained and tested on generated images,",
                  "!!  not on Galaxy10 DECaLS. These numbers say nothing about real galaxies.", bar, ""]

    def summary(name: str, m: Mapping[str, Any] | None) -> None:
        if m:
            lines.append(f"{name:<10} n={m['n']:<6} accuracy={m['accuracy']:.4f}  loss={m['loss']:.4f}  "
                         f"balanced_acc={m['balanced_accuracy']:.4f}  macro_F1={m['macro_f1']:.4f}")

    for key, name in (("test", "test"), ("test_tta", "test (TTA)"), ("val", "val"), ("val_tta", "val (TTA)")):
        summary(name, metrics.get(key))
    if best_epoch is not None:
        lines.append(f"best epoch: {best_epoch}")
    test = metrics.get("test")
    if test:
        width = max(len(str(c)) for c in class_names)
        lines += ["", "Per class (test):", f"  {'class':<{width}}  precision  recall     f1  support"]
        for name in class_names:
            row = test["per_class"].get(str(name))
            if row:
                lines.append(f"  {name:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  "
                             f"{row['f1']:5.4f}  {row['support']:7d}")
        lines += ["", "Confusion matrix (test; rows = true, columns = predicted):"]
        cm = test["confusion_matrix"]
        cell = max(4, max(len(str(v)) for row in cm for v in row) + 1)
        lines.append("  " + " " * 3 + "".join(f"{j:>{cell}}" for j in range(len(cm))))
        for i, row in enumerate(cm):
            lines.append(f"  {i:>3}" + "".join(f"{v:>{cell}}" for v in row) + f"   {class_names[i]}")
    if synthetic:
        lines += ["", "(SYNTHETIC DATA: see the banner above.)"]
    return "\n".join(lines)


def row_normalised(confusion) -> np.ndarray:
    """A confusion matrix with each row divided by its sum (rows = true class); an empty row stays 0.

    Args:
        confusion: `(C, C)` counts, any numeric dtype (array or nested lists).

    Returns:
        float64 `(C, C)`: entry (i, j) = the fraction of true class i predicted as j; each row sums
        to 1, or to 0 for a class with no image.

    Raises:
        ValueError: not a square 2-D matrix.

    Example:
        >>> row_normalised([[1, 3], [0, 0]]).tolist()
        [[0.25, 0.75], [0.0, 0.0]]
    """
    cm = np.asarray(confusion, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"A confusion matrix must be square (C, C); got shape {cm.shape}.")
    totals = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
