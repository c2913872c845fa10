"""Run bundles: write one atomically, load and validate one, list the bundles of a runs folder.

A run bundle is the folder `runs/<name>/` with:

- `config.json`: `Config.to_json()`.
- `run.json`: run information + `format_version` (see `RUN_FORMAT_VERSION`). Keys always present:
  `format_version` (int), `created` (ISO 8601 UTC, filled in by `write_bundle` if missing),
  `synthetic` (bool: trained on generated images). Usually also: dataset path and checksum, split
  sizes, best epoch, wall time, images/s.
- `model.keras`: the trained model (Keras 3 format, loaded in safe mode).
- `history.csv`: one row per epoch; column `epoch` (1-based) then every key of the history.
- `metrics.json`: see `galaxy_core.evaluation.metrics` (required key `test`; optional `test_tta`, `val`, ...).
- `predictions.h5`: the test split: `indices` int64 (N,), `labels` int64 (N,), `probs` float32
  (N, C), optional `probs_tta` float32 (N, C), `images` uint8 (N, S, S, 3) gzip-compressed, one
  image per chunk; attribute `class_names`. Optional (bundles without them still load):
  - `ra`, `dec`, `redshift`, `pxscale` float32 (N,): the dataset's catalogue columns of the test
    images (`galaxy_core.data.properties.sky_columns`); `ra` and `dec` come together.
  - `features` float32 (N, D): penultimate-layer features of the test images
    (`galaxy_core.evaluation.embedding.penultimate_features`).
  - `embedding_2d` float32 (N, 2): their 2-D map (`galaxy_core.evaluation.embedding.project_2d`), with the
    attribute `method` ("tsne" or "pca").
- `metrics.json` may hold `calibration` (`galaxy_core.evaluation.calibration.calibration_summary`: the
  temperature fitted on the validation split, ECE/NLL before and after); `run.json` may hold
  `split` (how the data was split: `split_by` "sky"/"random", `groups_merged`, ...).
- `curves.png`: `galaxy_core.evaluation.curves.plot_curves` of the history.
- `explanations.h5` (optional): `galaxy_core.explain.save_explanations`.
- `morphology.skops` (present exactly when `config.morphology_weight > 0`, e.g. the offline demo):
  the classifier on morphology statistics whose probabilities are blended with the CNN's
  (`galaxy_core.morphology.classifier`; metrics.json `morphology` holds its test scores).
- `tensorboard/` (optional, the one subfolder): TensorBoard event files of the training run
  (`galaxy_core.training.callbacks.TensorBoardLog`); `tensorboard --logdir runs` shows every run.

`write_bundle` builds all of it with `galaxy_core.io.atomic_dir` (a hidden sibling folder
`.<name>.partial-<random>` renamed into place at the end, every file with the umask's mode), so a
crash never leaves a half bundle under the run's name; `list_bundles` skips hidden folders.

`load_bundle` validates every member without building the model: `model.keras` must be a zip
whose `config.json` describes a model that safe mode will load (no `Lambda` layer, no pickled
Python function).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from galaxy_core.config import Config, ConfigError
from galaxy_core.evaluation.curves import plot_curves
from galaxy_core.data.galaxy10 import METADATA_KEYS
from galaxy_core.errors import BundleError, ModelError
from galaxy_core.io import atomic_dir, default_runs_dir, write_bytes, write_json
from galaxy_core.evaluation.metrics import METRIC_KEYS
from galaxy_core.morphology.classifier import MORPHOLOGY_FILE, MorphologyClassifier

RUN_FORMAT_VERSION = 1
REQUIRED_MEMBERS = ("config.json", "run.json", "model.keras", "history.csv", "metrics.json",
                    "predictions.h5", "curves.png")
EXPLANATIONS = "explanations.h5"
TENSORBOARD_DIR = "tensorboard"  # optional subfolder: the TensorBoard logs written while training
# Optional predictions.h5 datasets: the test images' catalogue columns (float32 (N,) each), their
# penultimate-layer features (float32 (N, D)) and 2-D map (float32 (N, 2)).
SKY_COLUMNS: tuple[str, ...] = METADATA_KEYS  # ("ra", "dec", "redshift", "pxscale")
FEATURES, EMBEDDING_2D = "features", "embedding_2d"
EMBEDDING_METHODS = ("tsne", "pca")
OPTIONAL_PREDICTIONS: tuple[str, ...] = ("probs_tta", *SKY_COLUMNS, FEATURES, EMBEDDING_2D)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Rows of images written per HDF5 call (bounds memory when images is a large memmap).
_WRITE_BLOCK = 256


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
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


def write_bundle(out_dir: str | Path, *, config: Config, model, history: Mapping[str, Sequence[float]],
                 metrics: Mapping[str, Any], run_info: Mapping[str, Any], predictions: Mapping[str, Any],
                 explanations: Mapping[str, Any] | None = None, morphology=None,
                 tensorboard: str | Path | None = None) -> Path:
    """Write a complete run bundle atomically.

    Args:
        out_dir: the bundle folder (`runs/<name>`); replaced if it exists.
        config: the run's Config.
        model: a Keras model (saved as `model.keras`), or the path of a `.keras` file to copy.
        history: per-epoch lists (`loss`, `accuracy`, `val_loss`, ...), all the same length; an
            `epoch` list (1-based) is optional.
        metrics: metrics.json dict (`galaxy_core.evaluation.metrics.assemble_metrics`); needs `test`.
        run_info: run.json content; needs `synthetic` (bool). `format_version` is set here and
            `created` (UTC ISO time) is filled in when missing.
        predictions: `indices` (N,), `labels` (N,), `probs` (N, C), `images` uint8 (N, S, S, 3)
            with C = config.num_classes and S = config.image_size; optional `probs_tta` (N, C),
            `ra`/`dec` (together), `redshift`, `pxscale` (N,), `features` (N, D), `embedding_2d`
            (N, 2) with `embedding_method` ("tsne" or "pca"; default "tsne").
        explanations: optional dict for `galaxy_core.explain.save_explanations`.
        morphology: a fitted `galaxy_core.morphology.classifier.MorphologyClassifier`; required when
            `config.morphology_weight > 0`, refused otherwise.
        tensorboard: a folder of TensorBoard logs written during training, copied into the bundle
            as `tensorboard/` (inside the temporary folder, so it arrives with the rest).

    Returns:
        The bundle path.

    Raises:
        BundleError: an argument does not fit the bundle format (nothing is written).
    """
    out_dir = check_bundle_name(out_dir)
    if not isinstance(config, Config):
        raise BundleError(f"config must be a galaxy_core.config.Config, got {type(config).__name__}")
    arrays = _check_predictions(predictions, config, where=f"write_bundle({out_dir})")
    columns = _history_columns(history)
    run = dict(run_info)
    if not isinstance(run.get("synthetic"), (bool, np.bool_)):
        raise BundleError("run_info needs 'synthetic': True/False (whether the data was generated)")
    run["synthetic"] = bool(run["synthetic"])  # numpy bool (e.g. read from an HDF5 attribute) -> bool
    run["format_version"] = RUN_FORMAT_VERSION
    run.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    _check_metrics(metrics, config, where="write_bundle")
    if (morphology is not None) != (config.morphology_weight > 0):
        raise BundleError(f"write_bundle: config.morphology_weight is {config.morphology_weight} but "
                          f"{'a' if morphology is not None else 'no'} morphology classifier was given; "
                          "pass one exactly when the weight is > 0")

    with atomic_dir(out_dir) as tmp:
        config.to_json(tmp / "config.json")
        write_json(tmp / "run.json", run)
        write_json(tmp / "metrics.json", dict(metrics))
        _write_history_csv(tmp / "history.csv", columns)
        _save_model(model, tmp / "model.keras")
        _write_predictions(tmp / "predictions.h5", arrays, config.class_names)
        best = metrics.get("best_epoch") or run.get("best_epoch")
        plot_curves(columns, tmp / "curves.png", best_epoch=best,
                    title=f"{out_dir.name}" + ("  (SYNTHETIC DATA)" if run["synthetic"] else ""))
        if explanations is not None:
            from galaxy_core.explain import save_explanations
            save_explanations(tmp / EXPLANATIONS, explanations)
        if morphology is not None:
            morphology.save(tmp / MORPHOLOGY_FILE)
        if tensorboard is not None:
            shutil.copytree(tensorboard, tmp / TENSORBOARD_DIR)
    return out_dir


def _save_model(model, path: Path) -> None:
    if isinstance(model, (str, os.PathLike)):
        src = Path(model)
        if not zipfile.is_zipfile(src):
            raise BundleError(f"Model file {src} is not a .keras archive")
        shutil.copyfile(src, path)
    else:
        model.save(str(path))


def _history_columns(history: Mapping[str, Sequence[float]]) -> dict[str, list]:
    lengths = {key: len(values) for key, values in history.items()}
    if len(set(lengths.values())) > 1:
        raise BundleError(f"history lists must all have the same length; got {lengths}")
    n = next(iter(lengths.values()), 0)
    columns = {"epoch": [int(e) for e in history.get("epoch", range(1, n + 1))]}
    for key, values in history.items():
        if key != "epoch":
            columns[key] = [float(v) for v in values]
    return columns


def _write_history_csv(path: Path, columns: Mapping[str, list]) -> None:
    keys = list(columns)
    text = io.StringIO(newline="")
    writer = csv.writer(text)  # csv's own line ends ("\r\n"), byte for byte as before
    writer.writerow(keys)
    for row in zip(*(columns[k] for k in keys)):
        writer.writerow([repr(v) if isinstance(v, float) else v for v in row])
    write_bytes(path, text.getvalue().encode("utf-8"))


def _write_predictions(path: Path, arrays: Mapping[str, np.ndarray], class_names: Sequence[str]) -> None:
    import h5py

    images = arrays["images"]
    with h5py.File(path, "w") as f:
        for key in ("indices", "labels", "probs", *OPTIONAL_PREDICTIONS):
            if key in arrays:
                f.create_dataset(key, data=arrays[key])
        if EMBEDDING_2D in arrays:
            f[EMBEDDING_2D].attrs["method"] = arrays.get("embedding_method") or "tsne"
        n, s = images.shape[0], images.shape[1]
        dset = f.create_dataset("images", shape=images.shape, dtype=np.uint8,
                                chunks=(1, s, s, 3) if n else None,
                                compression="gzip" if n else None)
        for start in range(0, n, _WRITE_BLOCK):
            dset[start:start + _WRITE_BLOCK] = np.asarray(images[start:start + _WRITE_BLOCK], np.uint8)
        f.attrs["class_names"] = [str(c) for c in class_names]


# --------------------------------------------------------------------------------------------
# Validation helpers (shared by write and load)
# --------------------------------------------------------------------------------------------
def _check_predictions(predictions: Mapping[str, Any], cfg: Config, where: str) -> dict[str, Any]:
    """Validate the predictions arrays; return them with the bundle's dtypes (images untouched)."""
    missing = [k for k in ("indices", "labels", "probs", "images") if k not in predictions]
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
    method = predictions.get("embedding_method")
    images = predictions["images"]
    n, c, s = len(out["labels"]), cfg.num_classes, cfg.image_size
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
    if n and (out["labels"].min() < 0 or out["labels"].max() >= c):
        problems.append(f"labels must be in 0..{c - 1}")
    if problems:
        raise BundleError(f"{where}: predictions invalid: " + "; ".join(problems))
    out["images"] = images
    return out


def _check_metrics(metrics: Any, cfg: Config, where: str) -> None:
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
        missing = [k for k in METRIC_KEYS if k not in m]
        if missing:
            raise BundleError(f"{where}: metrics[{key!r}] lacks {missing}")
        cm = np.asarray(m["confusion_matrix"])
        if cm.shape != (c, c):
            raise BundleError(f"{where}: metrics[{key!r}] confusion matrix has shape {cm.shape}, "
                              f"expected ({c}, {c})")
    calib = metrics.get("calibration")
    if calib is not None:
        temperature = calib.get("temperature") if isinstance(calib, Mapping) else None
        if (not isinstance(temperature, (int, float)) or isinstance(temperature, bool)
                or not np.isfinite(temperature) or temperature <= 0):
            raise BundleError(f"{where}: metrics['calibration'] must be an object with a positive "
                              f"'temperature' (galaxy_core.evaluation.calibration.calibration_summary), got "
                              f"{calib!r:.200}")


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class RunBundle:
    """A validated run bundle (small members in memory; model and images read on demand).

    Attributes:
        path: bundle folder.
        name: folder name.
        config: the run's Config.
        run_info: run.json dict.
        metrics: metrics.json dict.
        history: `{column: list}` from history.csv (`epoch` ints, the rest floats).
        predictions: `indices` int64 (N,), `labels` int64 (N,), `probs` float32 (N, C), and when
            stored: `probs_tta` float32 (N, C), `ra`, `dec`, `redshift`, `pxscale` float32 (N,),
            `features` float32 (N, D), `embedding_2d` float32 (N, 2) (see the module docstring).
            Test images: `read_test_images`. Typed views: `sky`, `features`, `embedding_2d`.
        embedding_method: "tsne" or "pca" (predictions.h5 `embedding_2d.attrs["method"]`), or
            None without a stored map.
    """

    path: Path
    name: str
    config: Config
    run_info: dict
    metrics: dict
    history: dict
    predictions: dict
    embedding_method: str | None = None

    @property
    def is_synthetic(self) -> bool:
        return bool(self.run_info["synthetic"])

    @property
    def created(self) -> datetime:
        return _parse_time(self.run_info["created"])

    @property
    def test_accuracy(self) -> float:
        return float(self.metrics["test"]["accuracy"])

    @property
    def backbone(self) -> str:
        return self.config.backbone

    @property
    def num_test(self) -> int:
        return int(len(self.predictions["labels"]))

    # Typed fields of run.json, metrics.json and history.csv, each read from the one key
    # `galaxy_core.training.train` writes; None when a bundle written by other code lacks it.
    @property
    def dataset_path(self) -> Path | None:
        """The dataset file the run was trained on (run.json `dataset_path`), or None."""
        value = self.run_info.get("dataset_path")
        return Path(value) if value else None

    @property
    def split_sizes(self) -> dict[str, int] | None:
        """`{"train": n, "val": n, "test": n}` images per split (run.json `split_sizes`), or None."""
        sizes = self.run_info.get("split_sizes")
        if not isinstance(sizes, Mapping):
            return None
        return {str(k): int(v) for k, v in sizes.items() if v is not None}

    @property
    def best_epoch(self) -> int | None:
        """1-based epoch of the best validation accuracy (metrics.json `best_epoch`), or None.

        The model holds its weights unless they were averaged (`averaged_epochs`)."""
        value = self.metrics.get("best_epoch")
        return None if value is None else int(value)

    @property
    def averaged_epochs(self) -> tuple[int, int] | None:
        """`(first, last)` 1-based epochs whose mean weights the model holds (stochastic weight
        averaging, config `average_from_epoch`), or None when it holds the best epoch's."""
        first, last = self.config.average_from_epoch, self.epochs_run
        return (first, last) if 0 < first <= last else None

    @property
    def epochs_run(self) -> int:
        """Epochs trained: the rows of history.csv (its `epoch` column counts from 1)."""
        return len(self.history.get("epoch", []))

    @property
    def wall_time_s(self) -> float | None:
        """Seconds from the start of training to the bundle (run.json `wall_time_s`), or None."""
        return _optional_float(self.run_info.get("wall_time_s"))

    @property
    def train_images_per_s(self) -> float | None:
        """Training speed, median over the epochs (run.json `train_images_per_s`), or None."""
        return _optional_float(self.run_info.get("train_images_per_s"))

    @property
    def val_accuracy(self) -> float | None:
        """Validation accuracy (metrics.json `val.accuracy`), or None without a validation split."""
        return _optional_float((self.metrics.get("val") or {}).get("accuracy"))

    @property
    def test_tta_accuracy(self) -> float | None:
        """Test accuracy with the 8-fold TTA (metrics.json `test_tta.accuracy`), or None."""
        return _optional_float((self.metrics.get("test_tta") or {}).get("accuracy"))

    # Optional members of issue 13 (None in bundles written before them).
    @property
    def sky(self) -> dict[str, np.ndarray] | None:
        """The stored catalogue columns of the test images, float32 (N,) each, or None.

        Keys: those of `SKY_COLUMNS` (`ra`, `dec` in degrees, `redshift`, `pxscale` arcsec/pixel)
        that predictions.h5 holds; None when it holds none of them.
        """
        columns = {key: self.predictions[key] for key in SKY_COLUMNS if key in self.predictions}
        return columns or None

    @property
    def features(self) -> np.ndarray | None:
        """Penultimate-layer features of the test images, float32 (N, D), or None.

        For a bundle without them use `galaxy_core.runs.reevaluate.bundle_embedding` (computes and caches).
        """
        return self.predictions.get(FEATURES)

    @property
    def embedding_2d(self) -> np.ndarray | None:
        """2-D map of the test features, float32 (N, 2) (method: `embedding_method`), or None."""
        return self.predictions.get(EMBEDDING_2D)

    @property
    def calibration(self) -> dict | None:
        """metrics.json `calibration` (`galaxy_core.evaluation.calibration.calibration_summary`), or None."""
        value = self.metrics.get("calibration")
        return dict(value) if isinstance(value, Mapping) else None

    @property
    def temperature(self) -> float | None:
        """The temperature fitted on the validation split (metrics.json `calibration.temperature`)."""
        calib = self.calibration
        return None if calib is None else _optional_float(calib.get("temperature"))

    @property
    def split_info(self) -> dict | None:
        """run.json `split`: `split_by` ("sky"/"random"), `groups_merged`, ... or None."""
        value = self.run_info.get("split")
        return dict(value) if isinstance(value, Mapping) else None

    @property
    def split_by(self) -> str | None:
        """"sky" or "random" (run.json `split.split_by`), or None for bundles that do not say."""
        value = (self.split_info or {}).get("split_by")
        return None if value is None else str(value)

    @property
    def explanations_path(self) -> Path | None:
        path = self.path / EXPLANATIONS
        return path if path.is_file() else None

    @property
    def has_explanations(self) -> bool:
        return self.explanations_path is not None

    def read_test_images(self, rows) -> np.ndarray:
        """Test images by row of `predictions` (any order, repeats allowed).

        Args:
            rows: int or sequence of ints in `0..N-1` (rows of `predictions`, not dataset indices).

        Returns:
            uint8 `(k, S, S, 3)` (`(S, S, 3)` for a single int).
        """
        import h5py

        single = np.ndim(rows) == 0
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        n = self.num_test
        if rows.size and (rows.min() < -n or rows.max() >= n):
            raise IndexError(f"rows must be in 0..{n - 1} (bundle {self.name} has {n} test images)")
        rows = np.where(rows < 0, rows + n, rows)
        unique, inverse = np.unique(rows, return_inverse=True)  # h5py needs increasing indices
        with h5py.File(self.path / "predictions.h5", "r") as f:
            dset = f["images"]
            images = dset[unique] if unique.size else np.zeros((0,) + dset.shape[1:], np.uint8)
        images = images[inverse.reshape(-1)]
        return images[0] if single else images

    @property
    def has_morphology(self) -> bool:
        """Whether the run blends a morphology classifier into its probabilities."""
        return self.config.morphology_weight > 0

    @property
    def blend_temperature(self) -> float | None:
        """For a run with a morphology classifier: the temperature of its blended probabilities,
        fitted on the validation split (metrics.json `morphology.calibration.temperature`)."""
        calib = (self.metrics.get("morphology") or {}).get("calibration") if self.has_morphology else None
        return _optional_float(calib.get("temperature")) if isinstance(calib, Mapping) else None

    def load_morphology(self):
        """The run's `MorphologyClassifier` (skops, trusted types only), or None when it has none.

        Raises:
            BundleError: the file cannot be read or holds unexpected types.
        """
        if not self.has_morphology:
            return None
        return MorphologyClassifier.load(self.path / MORPHOLOGY_FILE, self.config.num_classes)

    def load_model(self):
        """The bundle's Keras model (`galaxy_core.models.network.load_model`, safe mode).

        Raises:
            ModelError: the model cannot be loaded; the message names the run and the reason.
        """
        from galaxy_core.tf_quiet import import_tensorflow_quietly

        import_tensorflow_quietly()  # before Keras: no CUDA probing lines on a CPU user's terminal
        from galaxy_core.models.network import load_model

        try:
            return load_model(self.path / "model.keras")
        except ModelError as err:
            raise ModelError(f"Run {self.name!r}: its model cannot be loaded ({err}). Re-run training, "
                             f"or delete the folder {str(self.path)!r}.") from err


@dataclass(frozen=True)
class BundleEntry:
    """One subfolder of a runs folder: a valid `bundle`, or `error` saying why it is not one."""

    path: Path
    bundle: RunBundle | None
    error: str | None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def ok(self) -> bool:
        return self.bundle is not None


def load_bundle(path: str | Path) -> RunBundle:
    """Load and validate a run bundle.

    Checks that every required member exists and parses: config.json (Config.from_json), run.json
    (format_version, created, synthetic), metrics.json (test metrics, confusion matrix C x C),
    history.csv, predictions.h5 (shapes consistent with the config's num_classes and image_size),
    model.keras (a zip archive; not loaded here), curves.png (a PNG), and explanations.h5 when
    present (an HDF5 file; its content is `galaxy_core.explain`'s to check).

    Raises:
        BundleError: naming the bundle and the problem.
    """
    path = Path(path)
    where = f"Run bundle {str(path)!r}"
    if not path.is_dir():
        raise BundleError(f"{where} does not exist or is not a folder")
    missing = [m for m in REQUIRED_MEMBERS if not (path / m).is_file()]
    if missing:
        raise BundleError(f"{where} is incomplete: missing {', '.join(missing)} "
                          f"(re-run training, or delete the folder)")
    try:
        config = Config.from_json(path / "config.json")
    except ConfigError as err:
        raise BundleError(f"{where}: config.json is invalid: {err}") from err
    run_info = _read_json(path / "run.json", where)
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
        _parse_time(run_info.get("created"))
    except (TypeError, ValueError) as err:
        raise BundleError(f"{where}: run.json 'created' is not an ISO time: {run_info.get('created')!r}") from err
    metrics = _read_json(path / "metrics.json", where)
    _check_metrics(metrics, config, where=f"{where}: metrics.json")
    history = _read_history_csv(path / "history.csv", where)
    predictions = _read_predictions(path / "predictions.h5", config, where)
    embedding_method = predictions.pop("embedding_method", None)
    check_model_archive(path / "model.keras", where)
    if config.morphology_weight > 0 and not zipfile.is_zipfile(path / MORPHOLOGY_FILE):
        raise BundleError(f"{where}: config.json sets morphology_weight {config.morphology_weight} "
                          f"but {MORPHOLOGY_FILE} is missing or not a skops (zip) file; re-run training")
    with open(path / "curves.png", "rb") as f:
        if f.read(8) != PNG_SIGNATURE:
            raise BundleError(f"{where}: curves.png is not a PNG image")
    if (path / EXPLANATIONS).exists():
        import h5py

        if not h5py.is_hdf5(path / EXPLANATIONS):
            raise BundleError(f"{where}: {EXPLANATIONS} is not an HDF5 file (delete it, or recompute "
                              f"the explanations)")
    return RunBundle(path=path, name=path.name, config=config, run_info=run_info, metrics=metrics,
                     history=history, predictions=predictions, embedding_method=embedding_method)


def list_bundles(runs_dir: str | Path | None = None) -> list[BundleEntry]:
    """Every (non-hidden) subfolder of the runs folder, loaded.

    Args:
        runs_dir: default `$GALAXY_RUNS_DIR`, else `./runs`. A missing folder gives `[]`.

    Returns:
        Valid bundles newest first (run.json `created`; equal times by name), then invalid ones by
        name with the reason, so the first entry is never an invalid bundle.
        Hidden folders (bundles being written, `.x.partial-*`, `.x.work`) are skipped.
    """
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    if not runs_dir.is_dir():
        return []
    valid, invalid = [], []
    for sub in sorted(runs_dir.iterdir()):
        if sub.name.startswith(".") or not sub.is_dir():
            continue
        try:
            valid.append(BundleEntry(sub, load_bundle(sub), None))
        except BundleError as err:
            invalid.append(BundleEntry(sub, None, str(err)))
        except Exception as err:  # noqa: BLE001 - a broken folder must never break the listing
            invalid.append(BundleEntry(sub, None, f"Run bundle {str(sub)!r} cannot be read: "
                                                  f"{type(err).__name__}: {err}"))
    # Newest first; ties on `created` by name (a stable, readable order). Invalid ones always after.
    valid.sort(key=lambda e: (-e.bundle.created.timestamp(), e.name))
    return valid + invalid


# Keras classes that safe mode refuses to deserialise (they carry Python code): a Lambda layer and
# a pickled lambda function anywhere in the config.
UNSAFE_CLASSES = ("Lambda", "__lambda__")


def check_model_archive(path: str | Path, where: str = "Model") -> dict:
    """Check a `.keras` archive without building the model; return its model config (dict).

    The archive must be a zip holding a `config.json` that is a JSON object, and the model it
    describes must hold nothing that safe mode refuses (`UNSAFE_CLASSES`).

    Raises:
        BundleError: naming `where` and the problem.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise BundleError(f"{where}: {path.name} is not a Keras archive (zip)")
    try:
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise BundleError(f"{where}: {path.name} has no config.json (not a model saved by Keras 3 "
                                  f"model.save); re-run training, or delete the run")
            config = json.loads(archive.read("config.json").decode("utf-8"))
    except BundleError:
        raise
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{where}: {path.name}'s config.json cannot be read: {err}") from err
    if not isinstance(config, dict) or "class_name" not in config:
        raise BundleError(f"{where}: {path.name}'s config.json is not a Keras model config")
    unsafe = _find_unsafe(config)
    if unsafe:
        raise BundleError(f"{where}: {path.name} contains {unsafe}, which Keras safe mode refuses to load "
                          f"(it would run arbitrary Python code). Models of this project never do; "
                          f"re-run training, or delete the run")
    return config


def _find_unsafe(node: Any) -> str | None:
    """Description of the first unsafe object in a Keras config tree, or None."""
    if isinstance(node, dict):
        if node.get("class_name") in UNSAFE_CLASSES:
            name = (node.get("config") or {}).get("name") if isinstance(node.get("config"), dict) else None
            kind = "a Lambda layer" if node["class_name"] == "Lambda" else "a pickled Python lambda"
            return kind + (f" ({name!r})" if name else "")
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _find_unsafe(child)
        if found:
            return found
    return None


def _read_json(path: Path, where: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{where}: {path.name} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise BundleError(f"{where}: {path.name} must hold a JSON object")
    return data


def _read_history_csv(path: Path, where: str) -> dict[str, list]:
    try:
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise BundleError(f"{where}: history.csv cannot be read: {err}") from err
    if not rows or not rows[0]:
        raise BundleError(f"{where}: history.csv has no header row")
    header, body = rows[0], [r for r in rows[1:] if r]
    history: dict[str, list] = {key: [] for key in header}
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise BundleError(f"{where}: history.csv line {line} has {len(row)} fields, expected {len(header)}")
        for key, value in zip(header, row):
            try:
                history[key].append(int(value) if key == "epoch" else float(value))
            except ValueError as err:
                raise BundleError(f"{where}: history.csv line {line}, column {key!r}: {value!r} "
                                  f"is not a number") from err
    return history


def _read_predictions(path: Path, cfg: Config, where: str) -> dict[str, np.ndarray]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("indices", "labels", "probs", "images") if k not in f]
            if missing:
                raise BundleError(f"{where}: predictions.h5 lacks dataset(s) {missing}")
            arrays = {key: f[key][()] for key in ("indices", "labels", "probs", *OPTIONAL_PREDICTIONS)
                      if key in f}
            if EMBEDDING_2D in f:
                method = f[EMBEDDING_2D].attrs.get("method", "tsne")
                arrays["embedding_method"] = method.decode() if isinstance(method, bytes) else str(method)
            arrays["images"] = _Shape(f["images"].shape, f["images"].dtype)
            names = f.attrs.get("class_names")
            names = None if names is None else [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    except BundleError:
        raise
    except (OSError, KeyError, ValueError) as err:
        raise BundleError(f"{where}: predictions.h5 cannot be read: {err}") from err
    arrays = _check_predictions(arrays, cfg, where=f"{where}: predictions.h5")
    del arrays["images"]
    if names is not None and tuple(names) != cfg.class_names:
        raise BundleError(f"{where}: predictions.h5 class_names {names} differ from config.json's")
    return arrays


@dataclass(frozen=True)
class _Shape:
    """Shape and dtype of an HDF5 dataset, for validating without reading it."""

    shape: tuple
    dtype: np.dtype


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _parse_time(text: Any) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
