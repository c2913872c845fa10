"""Re-evaluation of a saved run bundle (`python train.py --evaluate runs/NAME`).

`reevaluate_bundle(run_dir)` loads the bundle's own model and the test images stored in its
`predictions.h5`, recomputes the test metrics (plain and TTA, `galaxy_core.metrics.evaluate_split`)
and rewrites `metrics.json` and the probabilities in `predictions.h5`, each atomically with
`galaxy_core.io` (so both keep the umask's mode, like every other bundle file). The metrics.json
schema is in `galaxy_core.metrics`.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from galaxy_core.bundle import load_bundle
from galaxy_core.io import atomic_path, to_jsonable, write_json
from galaxy_core.metrics import evaluate_split


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
        ModelError: its model cannot be loaded (the message names the run).
    """
    import h5py

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
    metrics = to_jsonable(metrics)

    # predictions.h5: edit a copy, then swap it in; metrics.json likewise.
    pred_path = bundle.path / "predictions.h5"
    with atomic_path(pred_path) as tmp:
        _rewrite_probs(pred_path, tmp, result)
    write_json(bundle.path / "metrics.json", metrics)
    return metrics


def _rewrite_probs(src: Path, tmp: Path, result: dict) -> None:
    """Copy `src` to `tmp` and replace its `probs` / `probs_tta` datasets with `result`'s."""
    import h5py

    shutil.copyfile(src, tmp)  # raw copy: compressed image chunks are not re-encoded
    with h5py.File(tmp, "r+") as f:
        for key in ("probs", "probs_tta"):
            if key in f:
                del f[key]
            if result.get(key) is not None:
                f.create_dataset(key, data=np.asarray(result[key], np.float32))
