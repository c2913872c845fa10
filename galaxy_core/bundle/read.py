"""Reading run bundles: `load_bundle` validates one into a `RunBundle`; `list_bundles` lists a runs folder.

`load_bundle` validates every member (`galaxy_core.bundle.schema`) without building the model:
`model.keras` must be a zip whose `config.json` describes a model that safe mode will load
(`galaxy_core.models.archive.check_model_archive`: no `Lambda` layer, no pickled Python function).
`RunBundle` gives typed views of what the app and the CLIs read, each from the one place it is
stored (run facts from run.json; release 0.1 bundles that kept some in metrics.json still load).
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from galaxy_core.bundle.schema import (CONFIG_FILE, DEFAULT_EMBEDDING_METHOD, EMBEDDING_2D, EXPLANATIONS_FILE,
                                       FEATURES, HISTORY_FILE, LEGACY_METRICS_FACTS, METRICS_FILE, MODEL_FILE,
                                       MORPHOLOGY_FILE, OPTIONAL_PREDICTIONS, PNG_SIGNATURE, PREDICTION_ARRAYS,
                                       PREDICTIONS_FILE, REQUIRED_MEMBERS, RUN_FILE, SKY_COLUMNS, CURVES_FILE,
                                       BlendMetrics, check_metrics, check_predictions, check_run_info,
                                       optional_float, parse_time, positive_temperature)
from galaxy_core.config import Config, ConfigError
from galaxy_core.errors import BundleError, ModelError
from galaxy_core.io import default_runs_dir
from galaxy_core.models.archive import check_model_archive


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
            `features` float32 (N, D), `embedding_2d` float32 (N, 2) (see `galaxy_core.bundle.schema`).
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
        return parse_time(self.run_info["created"])

    @property
    def test_accuracy(self) -> float:
        return float(self.metrics["test"]["accuracy"])

    @property
    def backbone(self) -> str:
        return self.config.backbone

    @property
    def num_test(self) -> int:
        return int(len(self.predictions["labels"]))

    # Run facts: run.json (`schema.RUN_FACTS`); None when a bundle written by other code lacks them.
    def _run_fact(self, key: str) -> Any:
        """run.json's `key`, else (release 0.1 bundles) metrics.json's, else None."""
        value = self.run_info.get(key)
        if value is None and key in LEGACY_METRICS_FACTS:
            value = self.metrics.get(key)
        return value

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
        """1-based epoch of the best validation accuracy (run.json `best_epoch`), or None.

        The model holds its weights unless they were averaged (`averaged_epochs`)."""
        value = self._run_fact("best_epoch")
        return None if value is None else int(value)

    @property
    def averaged_epochs(self) -> tuple[int, int] | None:
        """`(first, last)` 1-based epochs whose mean weights the model holds (stochastic weight
        averaging, config `average_from_epoch`), or None when it holds the best epoch's."""
        first, last = self.config.average_from_epoch, self.epochs_run
        return (first, last) if 0 < first <= last else None

    @property
    def epochs_run(self) -> int:
        """Epochs trained (run.json `epochs_run`; without it the rows of history.csv)."""
        value = self._run_fact("epochs_run")
        return len(self.history.get("epoch", [])) if value is None else int(value)

    @property
    def wall_time_s(self) -> float | None:
        """Seconds from the start of training to the evaluated model (run.json `wall_time_s`), or None."""
        return optional_float(self._run_fact("wall_time_s"))

    @property
    def train_images_per_s(self) -> float | None:
        """Training speed, median over the epochs (run.json `train_images_per_s`), or None."""
        return optional_float(self._run_fact("train_images_per_s"))

    # Metrics (metrics.json).
    @property
    def val_accuracy(self) -> float | None:
        """Validation accuracy (metrics.json `val.accuracy`), or None without a validation split."""
        return optional_float((self.metrics.get("val") or {}).get("accuracy"))

    @property
    def test_tta_accuracy(self) -> float | None:
        """Test accuracy with the 8-fold TTA (metrics.json `test_tta.accuracy`), or None."""
        return optional_float((self.metrics.get("test_tta") or {}).get("accuracy"))

    @property
    def calibration(self) -> dict | None:
        """metrics.json `calibration` (`galaxy_core.evaluation.calibration.calibration_summary`), or None."""
        value = self.metrics.get("calibration")
        return dict(value) if isinstance(value, Mapping) else None

    @property
    def temperature(self) -> float | None:
        """The CNN's temperature, fitted on the validation split (metrics.json `calibration.temperature`)."""
        return positive_temperature(self.calibration)

    @property
    def has_morphology(self) -> bool:
        """Whether the run blends a morphology classifier into its probabilities (`config.blended`)."""
        return self.config.blended

    @property
    def blend_metrics(self) -> BlendMetrics | None:
        """The blend's scores (metrics.json `morphology`) for a blended run that has them, else None."""
        section = self.metrics.get("morphology") if self.has_morphology else None
        if not isinstance(section, Mapping) or not isinstance(section.get("test_blend"), Mapping):
            return None
        return BlendMetrics(weight=float(section.get("weight", self.config.morphology_weight)),
                            alone=dict(section.get("test") or {}), blended=dict(section["test_blend"]),
                            temperature=positive_temperature(section.get("calibration")))

    @property
    def effective_temperature(self) -> float | None:
        """The temperature that calibrates the probabilities this run gives (None: not calibrated).

        A blended run's temperature is the one fitted on its blended probabilities (the CNN's own
        would not fit them); a CNN-only run's is `temperature`."""
        if self.has_morphology:
            blend = self.blend_metrics
            return None if blend is None else blend.temperature
        return self.temperature

    # Stored arrays (predictions.h5).
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
        path = self.path / EXPLANATIONS_FILE
        return path if path.is_file() else None

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
        with h5py.File(self.path / PREDICTIONS_FILE, "r") as f:
            dset = f["images"]
            images = dset[unique] if unique.size else np.zeros((0,) + dset.shape[1:], np.uint8)
        images = images[inverse.reshape(-1)]
        return images[0] if single else images

    def load_morphology(self):
        """The run's `MorphologyClassifier` (skops, trusted types only), or None when it has none.

        Raises:
            BundleError: the file cannot be read or holds unexpected types.
        """
        if not self.has_morphology:
            return None
        from galaxy_core.morphology.classifier import MorphologyClassifier

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
            return load_model(self.path / MODEL_FILE)
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
    model.keras (a zip archive that safe mode loads; not loaded here), curves.png (a PNG),
    morphology.skops for a blended run (a zip), and explanations.h5 when present (an HDF5 file;
    its content is `galaxy_core.explain`'s to check).

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
        config = Config.from_json(path / CONFIG_FILE)
    except ConfigError as err:
        raise BundleError(f"{where}: config.json is invalid: {err}") from err
    run_info = _read_json(path / RUN_FILE, where)
    check_run_info(run_info, where)
    metrics = _read_json(path / METRICS_FILE, where)
    check_metrics(metrics, config, where=f"{where}: metrics.json")
    history = _read_history_csv(path / HISTORY_FILE, where)
    predictions = _read_predictions(path / PREDICTIONS_FILE, config, where)
    embedding_method = predictions.pop("embedding_method", None)
    _check_other_members(path, config, where)
    return RunBundle(path=path, name=path.name, config=config, run_info=run_info, metrics=metrics,
                     history=history, predictions=predictions, embedding_method=embedding_method)


def _check_other_members(path: Path, config: Config, where: str) -> None:
    """model.keras (safe mode would load it), morphology.skops, curves.png, explanations.h5."""
    try:
        check_model_archive(path / MODEL_FILE, where)
    except ModelError as err:
        raise BundleError(str(err)) from err
    if config.blended and not zipfile.is_zipfile(path / MORPHOLOGY_FILE):
        raise BundleError(f"{where}: config.json sets morphology_weight {config.morphology_weight} "
                          f"but {MORPHOLOGY_FILE} is missing or not a skops (zip) file; re-run training")
    with open(path / CURVES_FILE, "rb") as f:
        if f.read(8) != PNG_SIGNATURE:
            raise BundleError(f"{where}: curves.png is not a PNG image")
    if (path / EXPLANATIONS_FILE).exists():
        import h5py

        if not h5py.is_hdf5(path / EXPLANATIONS_FILE):
            raise BundleError(f"{where}: {EXPLANATIONS_FILE} is not an HDF5 file (delete it, or recompute "
                              f"the explanations)")


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
    """predictions.h5's arrays (images left on disk), validated against the config."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in PREDICTION_ARRAYS if k not in f]
            if missing:
                raise BundleError(f"{where}: predictions.h5 lacks dataset(s) {missing}")
            arrays = {key: f[key][()] for key in ("indices", "labels", "probs", *OPTIONAL_PREDICTIONS)
                      if key in f}
            if EMBEDDING_2D in f:
                method = f[EMBEDDING_2D].attrs.get("method", DEFAULT_EMBEDDING_METHOD)
                arrays["embedding_method"] = method.decode() if isinstance(method, bytes) else str(method)
            arrays["images"] = _Shape(f["images"].shape, f["images"].dtype)
            names = f.attrs.get("class_names")
            names = None if names is None else [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    except BundleError:
        raise
    except (OSError, KeyError, ValueError) as err:
        raise BundleError(f"{where}: predictions.h5 cannot be read: {err}") from err
    arrays = check_predictions(arrays, cfg, where=f"{where}: predictions.h5")
    del arrays["images"]
    if names is not None and tuple(names) != cfg.class_names:
        raise BundleError(f"{where}: predictions.h5 class_names {names} differ from config.json's")
    return arrays


@dataclass(frozen=True)
class _Shape:
    """Shape and dtype of an HDF5 dataset, for validating without reading it."""

    shape: tuple
    dtype: np.dtype
