"""Scores of a blended run: the morphology classifier alone, its blend with the CNN, the blend's temperature.

`blend_summary` makes metrics.json `morphology` (read back by `galaxy_core.bundle.read.RunBundle.blend_metrics`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from galaxy_core.evaluation.calibration import CalibrationError, calibration_summary
from galaxy_core.evaluation.metrics import compute_metrics
from galaxy_core.morphology.classifier import blend_probs


def blend_summary(weight: float, class_names: Sequence[str], test_labels: np.ndarray, cnn_test: np.ndarray,
                  morphology_test: np.ndarray, val_labels: np.ndarray, cnn_val: np.ndarray,
                  morphology_val: np.ndarray) -> tuple[dict[str, Any], str | None]:
    """metrics.json `morphology` of a run that blends the CNN with the morphology classifier.

    Args:
        weight: the classifier's weight in the blend (`config.morphology_weight`).
        class_names: C names.
        test_labels, val_labels: int `(n_test,)`, `(n_val,)`.
        cnn_test, cnn_val: the CNN's plain probabilities float32 `(n, C)`.
        morphology_test, morphology_val: the classifier's probabilities float32 `(n, C)`.

    Returns:
        `({"weight", "test": METRICS of the classifier alone, "test_blend": METRICS of the blend,
        "calibration": calibration_summary of the blend (fitted on val)}, None)`; without
        `calibration` and with the reason as second item when the validation split cannot fit a
        temperature.
    """
    blended = blend_probs(cnn_test, morphology_test, weight)
    summary = {"weight": weight, "test": compute_metrics(test_labels, morphology_test, class_names),
               "test_blend": compute_metrics(test_labels, blended, class_names)}
    try:
        summary["calibration"] = calibration_summary(val_labels, blend_probs(cnn_val, morphology_val, weight),
                                                     test_labels, blended)
    except CalibrationError as err:
        return summary, str(err)
    return summary, None
