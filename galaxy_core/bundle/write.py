"""Writing run bundles: `write_bundle` (the whole folder, atomically) and `replace_predictions`.

This module is the one writer of `predictions.h5`: `write_bundle` writes it whole, and
`replace_predictions` swaps some of its datasets (re-evaluated probabilities, features computed on
demand) in a copy that is renamed into place. The format is in `galaxy_core.bundle.schema`.

`write_bundle` builds the folder with `galaxy_core.io.atomic_dir` (a hidden sibling folder
`.<name>.partial-<host>-<pid>-<token>` renamed into place at the end, every file with the umask's
mode), so a crash never leaves a half bundle under the run's name; `list_bundles` skips hidden folders.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from galaxy_core.bundle.schema import (TENSORBOARD_DIR, CONFIG_FILE, CURVES_FILE, DEFAULT_EMBEDDING_METHOD, EMBEDDING_2D,
                                       EXPLANATIONS_FILE, HISTORY_FILE, METRICS_FILE, MODEL_FILE,
                                       MORPHOLOGY_FILE, OPTIONAL_PREDICTIONS, PREDICTIONS_FILE, RUN_FACTS,
                                       RUN_FILE, RUN_FORMAT_VERSION, check_bundle_name, check_metrics,
                                       check_predictions, now_iso)
from galaxy_core.config import Config
from galaxy_core.errors import BundleError
from galaxy_core.evaluation.curves import plot_curves
from galaxy_core.io import atomic_dir, atomic_path, write_bytes, write_json

# Rows of images written per HDF5 call (bounds memory when images is a large memmap).
_WRITE_BLOCK = 256


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
        metrics: metrics.json dict (`galaxy_core.evaluation.metrics.assemble_metrics`); needs `test`
            and holds no run fact (`schema.RUN_FACTS`: those go into `run_info`).
        run_info: run.json content; needs `synthetic` (bool). `format_version` is set here and
            `created` (UTC ISO time) is filled in when missing.
        predictions: `indices` (N,), `labels` (N,), `probs` (N, C), `images` uint8 (N, S, S, 3)
            with C = config.num_classes and S = config.image_size; optional `probs_tta` (N, C),
            `ra`/`dec` (together), `redshift`, `pxscale` (N,), `features` (N, D), `embedding_2d`
            (N, 2) with `embedding_method` ("tsne" or "pca"; default "tsne").
        explanations: optional dict for `galaxy_core.explain.save_explanations`.
        morphology: a fitted `galaxy_core.morphology.classifier.MorphologyClassifier`; required when
            `config.blended`, refused otherwise.

    Returns:
        The bundle path.

    Raises:
        BundleError: an argument does not fit the bundle format (nothing is written).
    """
    out_dir = check_bundle_name(out_dir)
    if not isinstance(config, Config):
        raise BundleError(f"config must be a galaxy_core.config.Config, got {type(config).__name__}")
    arrays = check_predictions(predictions, config, where=f"write_bundle({out_dir})")
    columns = _history_columns(history)
    run = _run_json(run_info)
    check_metrics(metrics, config, where="write_bundle")
    if facts := [key for key in RUN_FACTS if key in metrics]:
        raise BundleError(f"write_bundle: metrics hold run facts {facts}; pass them in run_info (run.json "
                          f"keeps each run fact once)")
    if (morphology is not None) != config.blended:
        raise BundleError(f"write_bundle: config.morphology_weight is {config.morphology_weight} but "
                          f"{'a' if morphology is not None else 'no'} morphology classifier was given; "
                          "pass one exactly when the weight is > 0")

    with atomic_dir(out_dir) as tmp:
        config.to_json(tmp / CONFIG_FILE)
        write_json(tmp / RUN_FILE, run)
        write_json(tmp / METRICS_FILE, dict(metrics))
        _write_history_csv(tmp / HISTORY_FILE, columns)
        _save_model(model, tmp / MODEL_FILE)
        write_predictions(tmp / PREDICTIONS_FILE, arrays, config.class_names)
        plot_curves(columns, tmp / CURVES_FILE, best_epoch=run.get("best_epoch"),
                    title=f"{out_dir.name}" + ("  (SYNTHETIC DATA)" if run["synthetic"] else ""))
        if explanations is not None:
            from galaxy_core.explain import save_explanations
            save_explanations(tmp / EXPLANATIONS_FILE, explanations)
        if morphology is not None:
            morphology.save(tmp / MORPHOLOGY_FILE)
        if tensorboard is not None:
            shutil.copytree(tensorboard, tmp / TENSORBOARD_DIR)
    return out_dir


def _run_json(run_info: Mapping[str, Any]) -> dict[str, Any]:
    """run.json: `run_info` with a plain `synthetic` bool, `format_version`, and `created` if missing."""
    run = dict(run_info)
    if not isinstance(run.get("synthetic"), (bool, np.bool_)):
        raise BundleError("run_info needs 'synthetic': True/False (whether the data was generated)")
    run["synthetic"] = bool(run["synthetic"])  # numpy bool (e.g. read from an HDF5 attribute) -> bool
    run["format_version"] = RUN_FORMAT_VERSION
    run.setdefault("created", now_iso())
    return run


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


def write_predictions(path: Path, arrays: Mapping[str, Any], class_names: Sequence[str]) -> None:
    """Write a whole predictions.h5 from `schema.check_predictions`' result (the file at `path` is new)."""
    import h5py

    images = arrays["images"]
    with h5py.File(path, "w") as f:
        for key in ("indices", "labels", "probs", *OPTIONAL_PREDICTIONS):
            if key in arrays:
                f.create_dataset(key, data=arrays[key])
        if EMBEDDING_2D in arrays:
            f[EMBEDDING_2D].attrs["method"] = arrays.get("embedding_method") or DEFAULT_EMBEDDING_METHOD
        n, s = images.shape[0], images.shape[1]
        dset = f.create_dataset("images", shape=images.shape, dtype=np.uint8,
                                chunks=(1, s, s, 3) if n else None,
                                compression="gzip" if n else None)
        for start in range(0, n, _WRITE_BLOCK):
            dset[start:start + _WRITE_BLOCK] = np.asarray(images[start:start + _WRITE_BLOCK], np.uint8)
        f.attrs["class_names"] = [str(c) for c in class_names]


class PredictionsReplaced(BundleError):
    """predictions.h5 is no longer the file its new arrays were computed from."""


def replace_predictions(path: str | Path, arrays: Mapping[str, np.ndarray | None], *,
                        embedding_method: str | None = None, expected_probs: np.ndarray | None = None) -> None:
    """Replace some float datasets of a bundle's predictions.h5, atomically; keep every other one.

    A raw copy of the file (compressed image chunks are not re-encoded) is edited and renamed into
    place (`galaxy_core.io.atomic_path`), so a crash leaves the old file.

    Args:
        path: the bundle's predictions.h5.
        arrays: `{dataset: float array}` among `probs` and `schema.OPTIONAL_PREDICTIONS` (stored
            float32, first axis one row per test image); None deletes that dataset.
        embedding_method: the `method` attribute of a new `embedding_2d` (default "tsne").
        expected_probs: when given, the file's `probs` must still equal it (else nothing is written).

    Raises:
        BundleError: an unknown dataset name, or arrays whose rows are not the test images'.
        PredictionsReplaced: the file's `probs` differ from `expected_probs` (a new bundle was
            written there meanwhile).
        OSError: the file cannot be written (read-only folder, disk full).
    """
    import h5py

    path = Path(path)
    unknown = sorted(set(arrays) - {"probs", *OPTIONAL_PREDICTIONS})
    if unknown:
        raise BundleError(f"replace_predictions: {unknown} are not float datasets of predictions.h5")
    with atomic_path(path) as tmp:
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "r+") as f:
            if expected_probs is not None and not np.array_equal(f["probs"][()], expected_probs):
                raise PredictionsReplaced(f"{path} was replaced since its arrays were read")
            n = f["labels"].shape[0]
            for key, value in arrays.items():
                if key in f:
                    del f[key]
                if value is None:
                    continue
                value = np.asarray(value, np.float32)
                if value.shape[:1] != (n,):
                    raise BundleError(f"replace_predictions: {key} has shape {value.shape}; its first "
                                      f"axis must be the {n} test images")
                f.create_dataset(key, data=value)
            if arrays.get(EMBEDDING_2D) is not None:
                f[EMBEDDING_2D].attrs["method"] = embedding_method or DEFAULT_EMBEDDING_METHOD
