"""Re-evaluation of a saved run bundle (`python train.py --evaluate runs/NAME`), and its embedding on demand.

`reevaluate_bundle(run_dir)` loads the bundle's own model and the test images stored in its
`predictions.h5`, recomputes the test metrics (plain and TTA, `galaxy_core.evaluation.metrics.evaluate_split`)
and rewrites `metrics.json` and the probabilities in `predictions.h5`, each atomically with
`galaxy_core.io` (so both keep the umask's mode, like every other bundle file; predictions.h5 through
its one writer, `galaxy_core.bundle.write.replace_predictions`). The metrics.json
schema is in `galaxy_core.evaluation.metrics`.

`bundle_embedding(run)` returns the penultimate-layer features of a bundle's test images and their
2-D map: the stored ones, or (for bundles written before training stored them) computed from the
bundle's model and cached back into its `predictions.h5` where the folder is writable.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from galaxy_core.bundle.read import RunBundle, load_bundle
from galaxy_core.bundle.schema import EMBEDDING_2D, FEATURES, METRICS_FILE, PREDICTIONS_FILE
from galaxy_core.bundle.write import PredictionsReplaced, replace_predictions
from galaxy_core.io import to_jsonable, write_json
from galaxy_core.evaluation.metrics import evaluate_split


def reevaluate_bundle(run_dir: str | Path, tta: bool = True, batch_size: int = 64,
                      progress: bool = True) -> dict:
    """Recompute the test metrics of a run bundle from its own model and test images.

    Loads `model.keras` and the test images/labels stored in `predictions.h5`, predicts (plain and,
    if `tta`, with the 8 rotations/flips), then atomically rewrites `metrics.json` (keys `test`,
    `test_tta`, `reevaluated_at`; other keys such as `val` and `best_epoch` are kept; a stored
    `calibration` keeps its temperature and validation scores, fitted on the validation split that
    the bundle does not hold, and its `test` scores are recomputed with that temperature) and the
    probabilities in `predictions.h5` (`probs`, and `probs_tta` when computed; the other datasets,
    such as features and the sky columns, are kept: the model is the same).

    Returns:
        The new metrics.json dict.

    Raises:
        BundleError: the bundle does not validate.
        ModelError: its model cannot be loaded (the message names the run).
    """
    import h5py

    bundle = load_bundle(run_dir)
    model = bundle.load_model()
    labels = bundle.predictions["labels"]
    names = bundle.config.class_names
    with h5py.File(bundle.path / PREDICTIONS_FILE, "r") as f:
        # The h5py dataset is read one batch at a time by predict_probs' slicing.
        result = evaluate_split(model, f["images"], labels, names, batch_size=batch_size,
                                tta=tta, progress=progress)

    metrics = dict(bundle.metrics)
    metrics["test"] = result["plain"]
    metrics["test_tta"] = result["tta"]
    calib = bundle.calibration
    if calib is not None:
        # The temperature stays (same model; the validation split is not in the bundle); the test
        # scores are recomputed from the new probabilities with it.
        from galaxy_core.evaluation.calibration import DEFAULT_BINS, calibration_scores

        n_bins = int(calib.get("n_bins") or DEFAULT_BINS)
        metrics["calibration"] = {**calib, "test": calibration_scores(
            labels, result["probs"], float(calib["temperature"]), n_bins)}
    metrics["reevaluated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    metrics = to_jsonable(metrics)

    # predictions.h5 (its one writer, `galaxy_core.bundle.write`) and metrics.json, each swapped in atomically.
    replace_predictions(bundle.path / PREDICTIONS_FILE, {"probs": result["probs"], "probs_tta": result["probs_tta"]})
    write_json(bundle.path / METRICS_FILE, metrics)
    return metrics


def bundle_embedding(run: RunBundle | str | Path, model=None, progress: bool = False,
                     on_progress: Callable[[int, int], Any] | None = None, batch_size: int = 64,
                     cache: bool = True) -> dict[str, Any]:
    """Penultimate-layer features of a bundle's test images and their 2-D map; computed if not stored.

    Stored `features` and `embedding_2d` are returned as they are (no model is loaded). Otherwise
    the missing ones are computed by `galaxy_core.evaluation.embedding.embed_test_set`, as training
    computes them (features of the test images of `predictions.h5`, read one batch at a time; the
    map with `auto_method(N)`: t-SNE up to 5,000 images, PCA above; seed = the run's `config.seed`).
    Computed arrays are then cached into `predictions.h5` (`galaxy_core.bundle.write.replace_predictions`),
    so the next call is instant; where the bundle folder or file is read-only, or its predictions.h5
    was replaced since `run` was loaded (its `probs` differ), nothing is cached and no error is
    raised (`cached` is False).

    Args:
        run: a loaded `RunBundle` or the bundle folder.
        model: the bundle's Keras model if already loaded (or its `embedding.feature_model`);
            default `run.load_model()` when features must be computed.
        progress: draw a tqdm bar on stderr while computing features.
        on_progress: optional callback `(done_images, total_images)` (the app's progress bar).
        batch_size: images per model call.
        cache: write computed arrays back into the bundle (default True).

    Returns:
        `{"features": float32 (N, D), "embedding_2d": float32 (N, 2) or None (N < 2),
        "method": "tsne" | "pca" | None, "computed": bool (anything computed now),
        "cached": bool (computed arrays written into predictions.h5)}`.

    Raises:
        BundleError: the bundle does not validate; ModelError: its model cannot be loaded or has
            no penultimate layer.

    Example (not run: needs a bundle):
        emb = bundle_embedding("runs/demo", on_progress=lambda done, total: print(done, total))
        emb["embedding_2d"].shape   # (N, 2)
    """
    from galaxy_core.evaluation.embedding import embed_test_set

    bundle = run if isinstance(run, RunBundle) else load_bundle(run)
    features, embedding, method = bundle.features, bundle.embedding_2d, bundle.embedding_method
    if features is not None and (embedding is not None or len(features) < 2):
        if on_progress is not None:
            on_progress(len(features), len(features))
        return {"features": features, "embedding_2d": embedding, "method": method if embedding is not None
                else None, "computed": False, "cached": False}
    if features is None:
        import h5py

        model = model if model is not None else bundle.load_model()
        with h5py.File(bundle.path / PREDICTIONS_FILE, "r") as f:
            emb = embed_test_set(model, f["images"], bundle.config.seed, batch_size=batch_size,
                                 progress=progress, on_progress=on_progress)
        new = {FEATURES: emb.features}
    else:
        emb, new = embed_test_set(None, None, bundle.config.seed, features=features, on_progress=on_progress), {}
    if emb.embedding_2d is not None:
        new[EMBEDDING_2D] = emb.embedding_2d
    cached = cache and _cache(bundle, new, emb.method)
    return {"features": emb.features, "embedding_2d": emb.embedding_2d, "method": emb.method,
            "computed": True, "cached": cached}


def _cache(bundle: RunBundle, arrays: dict[str, np.ndarray], method: str | None) -> bool:
    """Write computed arrays into the bundle's predictions.h5; False where it cannot be written or
    was replaced (e.g. by a new run under the same name) while they were computed."""
    path = bundle.path / PREDICTIONS_FILE
    if not (os.access(path.parent, os.W_OK) and os.access(path, os.W_OK)):
        return False
    try:
        replace_predictions(path, arrays, embedding_method=method, expected_probs=bundle.predictions["probs"])
    except (OSError, PredictionsReplaced):  # read-only file system, disk full, a new bundle: not cached
        return False
    return True
