"""galaxy_core.evaluation.blend: the scores of a blended run (metrics.json `morphology`)."""

import numpy as np

from galaxy_core.evaluation.blend import blend_summary
from galaxy_core.evaluation.calibration import calibration_summary
from galaxy_core.evaluation.metrics import compute_metrics
from galaxy_core.morphology.classifier import blend_probs

NAMES = ("a", "b", "c")


def probs(labels, right, seed):
    """Probabilities that pick the true class where `right` is True (float32 (n, 3))."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1, (len(labels), 3))
    z[np.arange(len(labels))[right], labels[right]] += 3
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return p.astype(np.float32)


def test_blend_summary_scores_alone_blended_and_fits_the_blends_temperature():
    y_test, y_val = np.arange(30) % 3, np.arange(24) % 3
    cnn_t, morph_t = probs(y_test, np.arange(30) % 2 == 0, 0), probs(y_test, np.arange(30) % 3 != 0, 1)
    cnn_v, morph_v = probs(y_val, np.arange(24) % 2 == 0, 2), probs(y_val, np.arange(24) % 3 != 0, 3)
    summary, skipped = blend_summary(0.5, NAMES, y_test, cnn_t, morph_t, y_val, cnn_v, morph_v)
    assert skipped is None and summary["weight"] == 0.5
    assert summary["test"] == compute_metrics(y_test, morph_t, NAMES)
    assert summary["test_blend"] == compute_metrics(y_test, blend_probs(cnn_t, morph_t, 0.5), NAMES)
    assert summary["calibration"] == calibration_summary(y_val, blend_probs(cnn_v, morph_v, 0.5), y_test,
                                                         blend_probs(cnn_t, morph_t, 0.5))

    summary, skipped = blend_summary(0.5, NAMES, y_test, cnn_t, morph_t, y_val[:1], cnn_v[:1], morph_v[:1])
    assert "calibration" not in summary and skipped  # one validation image cannot fit a temperature
