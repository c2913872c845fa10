"""The run bundle format: member names, version, run facts, and the checks shared by write and read.

A run bundle is the folder `runs/<name>/` with:

- `config.json`: `Config.to_json()`.
- `run.json`: run information + `format_version` (`RUN_FORMAT_VERSION`). Keys always present:
  `format_version` (int), `created` (ISO 8601 UTC, filled in by `write_bundle` if missing),
  `synthetic` (bool: trained on generated images). Usually also: dataset path and checksum, split
  sizes, devices, and the other `RUN_FACTS` (best epoch, epochs run, wall time, images/s), which
  are stored here only (bundles of release 0.1 also kept four of them in metrics.json; `RunBundle`
  reads them from there when run.json lacks them).
- `model.keras`: the trained model (Keras 3 format, loaded in safe mode; checked without building
  it by `galaxy_core.models.archive.check_model_archive`).
- `history.csv`: one row per epoch; column `epoch` (1-based) then every key of the history.
- `metrics.json`: see `galaxy_core.evaluation.metrics` (required key `test`; optional `test_tta`,
  `val`, `calibration`: `galaxy_core.evaluation.calibration.calibration_summary`, the temperature
  fitted on the validation split; `morphology`: the blend's scores, see `galaxy_core.morphology.fit`).
- `predictions.h5`: the test split: `indices` int64 (N,), `labels` int64 (N,), `probs` float32
  (N, C), optional `probs_tta` float32 (N, C), `images` uint8 (N, S, S, 3) gzip-compressed, one
  image per chunk; attribute `class_names`. Optional (bundles without them still load):
  - `ra`, `dec`, `redshift`, `pxscale` float32 (N,): the dataset's catalogue columns of the test
    images (`galaxy_core.data.properties.sky_columns`); `ra` and `dec` come together.
  - `features` float32 (N, D): penultimate-layer features of the test images
    (`galaxy_core.evaluation.embedding.penultimate_features`).
  - `embedding_2d` float32 (N, 2): their 2-D map (`galaxy_core.evaluation.embedding.project_2d`),
    with the attribute `method` ("tsne" or "pca"; "tsne" when absent).
  `galaxy_core.bundle.write` is its one writer (whole, or some datasets replaced).
- `run.json` may hold `split` (how the data was split: `split_by` "sky"/"random", `groups_merged`, ...).
- `curves.png`: `galaxy_core.evaluation.curves.plot_curves` of the history.
- `explanations.h5` (optional): `galaxy_core.explain.save_explanations`.
- `tensorboard/` (optional, the one subfolder): TensorBoard event files of the training run
  (`galaxy_core.training.callbacks.TensorBoardLog`); `tensorboard --logdir runs` shows every run.
- `morphology.skops` (present exactly when `config.blended`, e.g. the offline demo): the classifier
  on morphology statistics whose probabilities are blended with the CNN's
  (`galaxy_core.morphology.classifier`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from galaxy_core.config import Config
from galaxy_core.data.galaxy10 import METADATA_KEYS
from galaxy_core.errors import BundleError
from galaxy_core.evaluation.embedding import PROJECTION_METHODS
from galaxy_core.evaluation.metrics import METRIC_KEYS

RUN_FORMAT_VERSION = 1
# Member names: written here once; `training.checkpoint` and the app derive theirs from these.
CONFIG_FILE, RUN_FILE, MODEL_FILE = "config.json", "run.json", "model.keras"
HISTORY_FILE, METRICS_FILE, PREDICTIONS_FILE, CURVES_FILE = ("history.csv", "metrics.json", "predictions.h5",
                                                             "curves.png")
EXPLANATIONS_FILE, MORPHOLOGY_FILE = "explanations.h5", "morphology.skops"
TENSORBOARD_DIR = "tensorboard"  # optional subfolder: the TensorBoard logs written while training
REQUIRED_MEMBERS = (CONFIG_FILE, RUN_FILE, MODEL_FILE, HISTORY_FILE, METRICS_FILE, PREDICTIONS_FILE, CURVES_FILE)
OPTIONAL_MEMBERS = (EXPLANATIONS_FILE, MORPHOLOGY_FILE)
# What a folder holds at least to be taken for a bundle (a run only ever replaces such a folder).
MARKER_MEMBERS = (CONFIG_FILE, RUN_FILE, MODEL_FILE)
# Facts about the run, stored in run.json only (never in metrics.json).
RUN_FACTS = ("created", "best_epoch", "epochs_run", "wall_time_s", "train_images_per_s")
# Facts that release 0.1 bundles also stored in metrics.json (read from there when run.json lacks them).
LEGACY_METRICS_FACTS = ("best_epoch", "epochs_run", "wall_time_s", "train_images_per_s")

# predictions.h5 datasets: required, then optional (catalogue columns float32 (N,) each, the
# penultimate-layer features float32 (N, D) and their 2-D map float32 (N, 2)).
PREDICTION_ARRAYS = ("indices", "labels", "probs", "images")
SKY_COLUMNS: tuple[str, ...] = METADATA_KEYS  # ("ra", "dec", "redshift", "pxscale")
FEATURES, EMBEDDING_2D = "features", "embedding_2d"
EMBEDDING_METHODS = PROJECTION_METHODS  # ("tsne", "pca")
DEFAULT_EMBEDDING_METHOD = "tsne"  # the map's method when its `method` attribute is missing
OPTIONAL_PREDICTIONS: tuple[str, ...] = ("probs_tta", *SKY_COLUMNS, FEATURES, EMBEDDING_2D)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_bundle_name(out_dir: str | Path) -> Path:
    """`out_dir` as a Path, if its name can be a bundle (hidden names are the writers' temporaries).

    Raises:
        BundleError: an empty name or one that starts with '.'.
    """
    out_dir = Path(out_dir)
    if not out_dir.name or out_dir.name.startswith("."):
        raise BundleError(f"Bundle folder name {out_dir.name!r} must be non-empty and not start with "
                          f"'.' (such names are kept for temporary folders); choose e.g. runs/my-run.")
    return out_dir


def check_run_info(run_info: Mapping[str, Any], where: str) -> None:
    """run.json as read: an integer `format_version` this code knows, `synthetic`, an ISO `created`."""
    version = run_info.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{where}: run.json lacks an integer format_version")
    if version > RUN_FORMAT_VERSION:
        raise BundleError(f"{where}: format_version {version} is newer than this code supports "
                          f"({RUN_FORMAT_VERSION}); update galaxy_core")
    if version < 1:
        raise BundleError(f"{where}: unknown format_version {version}")
    if not isinstance(run_info.get("synthetic"), bool):
        raise BundleError(f"{where}: run.json lacks the boolean 'synthetic' flag")
    try:
        parse_time(run_info.get("created"))
    except (TypeError, ValueError) as err:
        raise BundleError(f"{where}: run.json 'created' is not an ISO time: {run_info.get('created')!r}") from err


def check_predictions(predictions: Mapping[str, Any], cfg: Config, where: str) -> dict[str, Any]:
    """Validate the predictions arrays; return them with the bundle's dtypes (images untouched).

    `predictions["images"]` only needs `.shape` and `.dtype` (an HDF5 dataset is not read).
    """
    missing = [k for k in PREDICTION_ARRAYS if k not in predictions]
    if missing:
        raise BundleError(f"{where}: predictions lack {missing}")
    out = {
        "indices": np.asarray(predictions["indices"]).astype(np.int64),
        "labels": np.asarray(predictions["labels"]).astype(np.int64),
        "probs": np.asarray(predictions["probs"]).astype(np.float32),
    }
    for key in OPTIONAL_PREDICTIONS:
        if predictions.get(key) is not None:
            out[key] = np.asarray(predictions[key]).astype(np.float32)
    images = predictions["images"]
    n, s = len(out["labels"]), cfg.image_size
    problems = _array_problems(out, n, cfg.num_classes)
    method = predictions.get("embedding_method")
    if method is not None:
        if EMBEDDING_2D not in out:
            problems.append("embedding_method is given without embedding_2d")
        elif method not in EMBEDDING_METHODS:
            problems.append(f"embedding_method must be one of {EMBEDDING_METHODS}, got {method!r}")
        else:
            out["embedding_method"] = str(method)
    if tuple(images.shape) != (n, s, s, 3):
        problems.append(f"images have shape {tuple(images.shape)}, expected ({n}, {s}, {s}, 3) "
                        f"(config.image_size = {s})")
    if images.dtype != np.uint8:
        problems.append(f"images must be uint8, got {images.dtype}")
    if problems:
        raise BundleError(f"{where}: predictions invalid: " + "; ".join(problems))
    out["images"] = images
    return out


def _array_problems(out: Mapping[str, np.ndarray], n: int, c: int) -> list[str]:
    """What is wrong with the shapes and values of the (non-image) predictions arrays."""
    problems = []
    if out["indices"].shape != (n,) or out["labels"].shape != (n,):
        problems.append(f"indices {out['indices'].shape} and labels {out['labels'].shape} must both be (N,)")
    for key in ("probs", "probs_tta"):
        if key in out and out[key].shape != (n, c):
            problems.append(f"{key} has shape {out[key].shape}, expected ({n}, {c}) "
                            f"(N test images x config.num_classes)")
    for key in SKY_COLUMNS:
        if key in out and out[key].shape != (n,):
            problems.append(f"{key} has shape {out[key].shape}, expected ({n},) (one per test image)")
    if ("ra" in out) != ("dec" in out):
        problems.append("ra and dec must be stored together (a sky position needs both)")
    if FEATURES in out and (out[FEATURES].ndim != 2 or out[FEATURES].shape[0] != n
                            or out[FEATURES].shape[1] < 1):
        problems.append(f"features has shape {out[FEATURES].shape}, expected ({n}, D) (one feature "
                        f"vector per test image)")
    if EMBEDDING_2D in out and out[EMBEDDING_2D].shape != (n, 2):
        problems.append(f"embedding_2d has shape {out[EMBEDDING_2D].shape}, expected ({n}, 2)")
    for key in (FEATURES, EMBEDDING_2D):
        if key in out and not np.all(np.isfinite(out[key])):
            problems.append(f"{key} holds NaN or infinite values")
    if n and (out["labels"].min() < 0 or out["labels"].max() >= c):
        problems.append(f"labels must be in 0..{c - 1}")
    return problems


def check_metrics(metrics: Any, cfg: Config, where: str) -> None:
    """metrics.json: a `test` object, every metrics object complete with a C x C confusion matrix,
    and a positive `calibration.temperature` when calibrated."""
    if not isinstance(metrics, Mapping):
        raise BundleError(f"{where}: metrics must be a JSON object")
    if not isinstance(metrics.get("test"), Mapping):
        raise BundleError(f"{where}: metrics lack the 'test' metrics object")
    c = cfg.num_classes
    for key in ("test", "test_tta", "val", "val_tta"):
        m = metrics.get(key)
        if m is None:
            continue
        if not isinstance(m, Mapping):
            raise BundleError(f"{where}: metrics[{key!r}] must be an object or null")
        check_metrics_object(m, c, f"{where}: metrics[{key!r}]")
    blend = metrics.get("morphology")
    if blend is not None:
        if not isinstance(blend, Mapping) or not _is_number(blend.get("weight")):
            raise BundleError(f"{where}: metrics['morphology'] must be an object with a numeric 'weight' "
                              f"(galaxy_core.evaluation.blend.blend_summary)")
        for key in ("test", "test_blend"):
            check_metrics_object(blend.get(key), c, f"{where}: metrics['morphology'][{key!r}]")
    calib = metrics.get("calibration")
    if calib is not None and positive_temperature(calib) is None:
        raise BundleError(f"{where}: metrics['calibration'] must be an object with a positive "
                          f"'temperature' (galaxy_core.evaluation.calibration.calibration_summary), got "
                          f"{calib!r:.200}")


# metrics objects' scalar keys: (low, high) inclusive; NaN is allowed (shown as "n/a").
_METRIC_RANGES = {"accuracy": (0.0, 1.0), "balanced_accuracy": (0.0, 1.0), "macro_f1": (0.0, 1.0),
                  "loss": (0.0, float("inf"))}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}"


def check_metrics_object(m: Any, c: int, where: str) -> None:
    """One METRICS object (`galaxy_core.evaluation.metrics.compute_metrics`): every key present and
    of its type: `n` a count, accuracy / balanced accuracy / macro F1 numbers in [0, 1] (or NaN),
    `loss` a number >= 0, `per_class` an object, `confusion_matrix` C x C counts,
    `classification_report` text. Raises BundleError naming the key and what was expected."""
    if not isinstance(m, Mapping):
        raise BundleError(f"{where} must be a metrics object, got {_shown(m)}")
    missing = [k for k in METRIC_KEYS if k not in m]
    if missing:
        raise BundleError(f"{where} lacks {missing}")
    if not (_is_number(m["n"]) and float(m["n"]).is_integer() and m["n"] >= 0):
        raise BundleError(f"{where}['n'] must be a count of images (an integer >= 0), got {_shown(m['n'])}")
    for key, (low, high) in _METRIC_RANGES.items():
        value = m[key]
        if not _is_number(value) or not (np.isnan(value) or low <= value <= high):
            raise BundleError(f"{where}[{key!r}] must be a number in [{low:g}, {high:g}], got {_shown(value)}")
    if not isinstance(m["per_class"], Mapping):
        raise BundleError(f"{where}['per_class'] must be an object, got {_shown(m['per_class'])}")
    if not isinstance(m["classification_report"], str):
        raise BundleError(f"{where}['classification_report'] must be text, got {_shown(m['classification_report'])}")
    cm = m["confusion_matrix"]
    rows_ok = isinstance(cm, list) and len(cm) == c and all(
        isinstance(row, list) and len(row) == c and all(_is_number(v) and v >= 0 and float(v).is_integer() for v in row)
        for row in cm)
    if not rows_ok:
        raise BundleError(f"{where}['confusion_matrix'] must be {c} x {c} counts (integers >= 0), got "
                          f"{_shown(cm)}")


def positive_temperature(calibration: Any) -> float | None:
    """`calibration["temperature"]` as a float when it is a finite number > 0, else None."""
    value = calibration.get("temperature") if isinstance(calibration, Mapping) else None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value) or value <= 0:
        return None
    return float(value)


@dataclass(frozen=True)
class BlendMetrics:
    """metrics.json `morphology` of a blended run (`galaxy_core.morphology.fit.fit_blend`).

    Attributes:
        weight: the morphology classifier's weight in the blend (`config.morphology_weight`).
        alone: `galaxy_core.evaluation.metrics.compute_metrics` of the classifier alone (test split).
        blended: the same of the blend of the CNN and the classifier.
        temperature: the blend's temperature, fitted on the validation split, or None.
    """

    weight: float
    alone: dict
    blended: dict
    temperature: float | None


def optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def parse_time(text: Any) -> datetime:
    """An ISO 8601 time (UTC when it names no zone)."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def now_iso() -> str:
    """The current UTC time as run.json `created` spells it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
