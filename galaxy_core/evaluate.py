"""Evaluation: batched prediction with test-time augmentation, metrics, training curves.

Everything here is plain numpy / scikit-learn / matplotlib on top of a Keras model's
`predict_on_batch`; the module never imports TensorFlow itself.

`metrics.json` schema (written by `galaxy_core.train` into the run bundle, rewritten by
`reevaluate_bundle`; build it with `assemble_metrics`):

```
{
  "format_version": 1,
  "test":      METRICS,          # plain predictions on the test split (required)
  "test_tta":  METRICS | null,   # mean over the 8 rotations/flips of each test image
  "val":       METRICS | null,   # plain predictions on the validation split
  "val_tta":   METRICS | null,
  "best_epoch": int | null,      # 1-based epoch whose weights the bundle's model holds
  ...                            # any further keys the trainer adds (wall_time_s, images_per_s, ...)
}
METRICS = {
  "n": int, "accuracy": float, "loss": float (categorical cross-entropy),
  "balanced_accuracy": float, "macro_f1": float,
  "per_class": {class_name: {"precision": float, "recall": float, "f1": float, "support": int}},
  "confusion_matrix": [[int]] (C x C, rows = true class, columns = predicted class),
  "classification_report": str (scikit-learn's text report)
}
```
All epochs in a bundle are 1-based.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

METRICS_FORMAT_VERSION = 1
# Keys every METRICS dict has (checked by galaxy_core.bundle when a bundle is loaded).
METRIC_KEYS = ("n", "accuracy", "loss", "balanced_accuracy", "macro_f1", "per_class",
               "confusion_matrix", "classification_report")
# Probabilities are clipped to [EPS, 1] before the log of the cross-entropy.
EPS = 1e-7


# --------------------------------------------------------------------------------------------
# Prediction
# --------------------------------------------------------------------------------------------
def rescale(images: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 in [0, 1] (float input is passed through as float32).

    uint8 goes through `galaxy_core.preprocess.rescale`, the one uint8 -> [0, 1] mapping.
    """
    from galaxy_core.preprocess import rescale as rescale_uint8

    images = np.asarray(images)
    if images.dtype != np.uint8:
        return images.astype(np.float32, copy=False)
    return rescale_uint8(images)


def dihedral_transforms(images: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations/flips of a batch: rot90 by k = 0..3, each without and with a left-right flip.

    Args:
        images: `(N, H, W, ...)` array with H == W.

    Returns:
        8 arrays of the same shape and dtype; the first one is the input itself.
    """
    out = []
    for k in range(4):
        rotated = np.rot90(images, k, axes=(1, 2))
        out.append(np.ascontiguousarray(rotated))
        out.append(np.ascontiguousarray(rotated[:, :, ::-1]))
    return out


def predict_probs(model, images: np.ndarray, batch_size: int = 64, tta: bool = False,
                  progress: bool = False, on_progress=None) -> np.ndarray:
    """Class probabilities of a softmax model, in batches.

    Args:
        model: Keras model taking float32 `(B, S, S, 3)` in [0, 1] and returning softmax `(B, C)`.
        images: `(N, S, S, 3)` uint8 (rescaled by /255) or float32 already in [0, 1]; a numpy
            memmap works (it is read one batch at a time).
        batch_size: images per model call.
        tta: if True, return the mean of the probabilities over the 8 dihedral transforms
            (4 rotations x optional flip) of every image; costs 8 model calls per batch.
        progress: draw a progress bar on stderr.
        on_progress: optional callback `(done_images, total_images)` (for the app).

    Returns:
        float32 `(N, C)`.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, S, S, 3); got {images.shape}")
    if tta and images.shape[1] != images.shape[2]:
        raise ValueError(f"TTA needs square images; got {images.shape[1]}x{images.shape[2]}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    n = len(images)
    starts = range(0, n, batch_size)
    if progress:
        from galaxy_core.progress import progress as _progress
        starts = _progress(starts, desc="predict (TTA x8)" if tta else "predict", unit="batch")
    chunks = []
    for start in starts:
        batch = np.asarray(images[start:start + batch_size])
        if tta:
            # Transform before rescaling (cheaper on uint8); average the 8 probability maps.
            probs = np.mean([_predict_batch(model, rescale(view)) for view in dihedral_transforms(batch)],
                            axis=0)
        else:
            probs = _predict_batch(model, rescale(batch))
        chunks.append(probs.astype(np.float32, copy=False))
        if on_progress is not None:
            on_progress(min(start + batch_size, n), n)
    if not chunks:
        num_classes = int(model.output_shape[-1])
        return np.zeros((0, num_classes), np.float32)
    return np.concatenate(chunks, axis=0)


def _predict_batch(model, batch: np.ndarray) -> np.ndarray:
    # predict_on_batch runs the compiled inference function (no per-call Python graph walk).
    out = model.predict_on_batch(batch)
    return np.asarray(out, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------
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


def assemble_metrics(test: Mapping[str, Any], val: Mapping[str, Any] | None = None,
                     best_epoch: int | None = None, **extra: Any) -> dict:
    """Build the metrics.json dict from `evaluate_split` results.

    Args:
        test: `evaluate_split` result on the test split.
        val: `evaluate_split` result on the validation split (optional).
        best_epoch: 1-based epoch whose weights were kept.
        extra: further JSON-serialisable keys (e.g. `wall_time_s`, `images_per_s`).

    Returns:
        The dict of the module docstring's schema.
    """
    doc = {
        "format_version": METRICS_FORMAT_VERSION,
        "test": test["plain"],
        "test_tta": test.get("tta"),
        "val": val["plain"] if val is not None else None,
        "val_tta": val.get("tta") if val is not None else None,
        "best_epoch": None if best_epoch is None else int(best_epoch),
    }
    doc.update(extra)
    return json.loads(json.dumps(doc, default=_json_default))  # fail early if not serialisable


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps_json(data: Any) -> str:
    """JSON text of bundle metadata (numpy scalars/arrays and paths converted)."""
    return json.dumps(data, indent=2, default=_json_default, allow_nan=True)


# --------------------------------------------------------------------------------------------
# Curves
# --------------------------------------------------------------------------------------------
def best_epoch_of(history: Mapping[str, Sequence[float]]) -> int | None:
    """1-based epoch with the highest validation accuracy (else lowest validation loss), or None."""
    for key, pick in (("val_accuracy", np.nanargmax), ("val_loss", np.nanargmin)):
        values = np.asarray(history.get(key, []), dtype=np.float64)
        if values.size and not np.all(np.isnan(values)):
            return int(pick(values)) + 1
    return None


def plot_curves(history: Mapping[str, Sequence[float]], path: str | Path,
                best_epoch: int | None = None, title: str | None = None) -> Path:
    """Accuracy and loss per epoch, train vs validation, as a PNG.

    Args:
        history: Keras-style history, e.g. `{"accuracy": [...], "val_accuracy": [...], "loss": [...],
            "val_loss": [...]}`; an optional `"epoch"` list gives the (1-based) epoch numbers.
        path: output PNG path.
        best_epoch: 1-based epoch to mark (default: `best_epoch_of(history)`).
        title: figure title.

    Returns:
        The path written.
    """
    # Figure + Agg canvas directly (no pyplot): no global backend state, safe in the app's threads.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    n = max((len(v) for k, v in history.items() if k != "epoch"), default=0)
    epochs = list(history.get("epoch", range(1, n + 1)))[:n] if n else []
    if best_epoch is None:
        best_epoch = best_epoch_of(history)

    fig = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, metric, label in ((axes[0], "accuracy", "Accuracy"), (axes[1], "loss", "Loss")):
        drawn = False
        for key, name, style in ((metric, "train", "-"), (f"val_{metric}", "validation", "--")):
            values = history.get(key)
            if values is not None and len(values):
                ax.plot(epochs[:len(values)], values, style, marker="o", markersize=3, label=name)
                drawn = True
        if best_epoch is not None and drawn:
            ax.axvline(best_epoch, color="tab:red", linestyle=":", linewidth=1.5,
                       label=f"best epoch ({best_epoch})")
        if not drawn:
            ax.text(0.5, 0.5, f"no {metric} recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{label} per epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label.lower())
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend(loc="best")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    # Fixed margins: tight_layout costs about as much as the rest of the plot.
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.85 if title else 0.9, wspace=0.22)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


# --------------------------------------------------------------------------------------------
# Re-evaluation of a saved bundle and the CLI report
# --------------------------------------------------------------------------------------------
def reevaluate_bundle(run_dir: str | Path, tta: bool = True, batch_size: int = 64,
                      progress: bool = True) -> dict:
    """Recompute the test metrics of a run bundle from its own model and test images.

    Loads `model.keras` and the test images/labels stored in `predictions.h5`, predicts (plain and,
    if `tta`, with the 8 rotations/flips), then atomically rewrites `metrics.json` (keys `test`,
    `test_tta`, `reevaluated_at`; other keys such as `val` and `best_epoch` are kept) and the
    probabilities in `predictions.h5` (`probs`, and `probs_tta` when computed).

    Returns:
        The new metrics.json dict.

    Raises:
        BundleError: the bundle does not validate.
    """
    import h5py

    from galaxy_core.bundle import load_bundle

    bundle = load_bundle(run_dir)
    model = bundle.load_model()
    labels = bundle.predictions["labels"]
    names = bundle.config.class_names
    with h5py.File(bundle.path / "predictions.h5", "r") as f:
        # The h5py dataset is read one batch at a time by predict_probs' slicing.
        result = evaluate_split(model, f["images"], labels, names, batch_size=batch_size,
                                tta=tta, progress=progress)

    metrics = dict(bundle.metrics)
    metrics["test"] = result["plain"]
    metrics["test_tta"] = result["tta"]
    metrics["reevaluated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    metrics = json.loads(dumps_json(metrics))

    # predictions.h5: edit a copy, then swap it in; metrics.json likewise.
    pred_path = bundle.path / "predictions.h5"
    _replace_atomically(pred_path, lambda tmp: _rewrite_probs(pred_path, tmp, result))
    _replace_atomically(bundle.path / "metrics.json",
                        lambda tmp: Path(tmp).write_text(dumps_json(metrics) + "\n", encoding="utf-8"))
    return metrics


def _rewrite_probs(src: Path, tmp: str, result: dict) -> None:
    import shutil

    import h5py

    shutil.copyfile(src, tmp)  # raw copy: compressed image chunks are not re-encoded
    with h5py.File(tmp, "r+") as f:
        for key in ("probs", "probs_tta"):
            if key in f:
                del f[key]
            if result.get(key) is not None:
                f.create_dataset(key, data=np.asarray(result[key], np.float32))


def _replace_atomically(path: Path, write) -> None:
    """Call `write(tmp_path)` for a temp file next to `path`, then `os.replace` it onto `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def format_report(metrics: Mapping[str, Any], class_names: Sequence[str], synthetic: bool) -> str:
    """Human-readable text of a metrics.json dict for the command line.

    Args:
        metrics: metrics.json dict (module docstring schema).
        class_names: C names.
        synthetic: the run was trained on synthetic data (printed as a loud banner).
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
    if metrics.get("best_epoch") is not None:
        lines.append(f"best epoch: {metrics['best_epoch']}")
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
