"""Calibration: reliability bins, ECE, temperature scaling and the metrics.json summary."""

import doctest
import json

import numpy as np
import pytest

from galaxy_core.evaluation import calibration
from galaxy_core.evaluation.calibration import (CalibrationError, apply_temperature, calibration_summary,
                                     expected_calibration_error, fit_temperature,
                                     negative_log_likelihood, reliability_bins)
from galaxy_core.errors import GalaxyError


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def calibrated_set(n, num_classes=4, seed=0):
    """Synthetic logits z and labels drawn from softmax(z): calibrated at T = 1 by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.0, (n, num_classes))
    p = softmax(z)
    y = np.array([rng.choice(num_classes, p=row) for row in p])
    return z, y


def test_docstring_examples():
    assert doctest.testmod(calibration).failed == 0


def test_reliability_bins_by_hand():
    y = np.array([0, 1, 1, 0, 0])
    p = np.array([[0.95, 0.05], [0.15, 0.85], [0.55, 0.45], [0.65, 0.35], [0.5, 0.5]])
    bins = reliability_bins(y, p, n_bins=4)  # edges 0, .25, .5, .75, 1
    np.testing.assert_allclose(bins["edges"], [0, 0.25, 0.5, 0.75, 1])
    assert bins["counts"].dtype == np.int64
    assert bins["counts"].tolist() == [0, 1, 2, 2]  # 0.5 -> (0.25, 0.5]; 0.55, 0.65; 0.85, 0.95
    np.testing.assert_allclose(bins["confidence"][1:], [0.5, 0.6, 0.9])
    np.testing.assert_allclose(bins["accuracy"][1:], [1.0, 0.5, 1.0])  # 0.55 is wrong
    assert np.isnan(bins["confidence"][0]) and np.isnan(bins["accuracy"][0])
    ece = expected_calibration_error(y, p, n_bins=4)
    assert ece == pytest.approx((1 * 0.5 + 2 * 0.1 + 2 * 0.1) / 5)


def test_ece_is_zero_when_accuracy_matches_confidence():
    # 10 images at confidence 0.7 of which 7 are right: one bin, gap 0.
    p = np.tile([0.7, 0.3], (10, 1))
    y = np.array([0] * 7 + [1] * 3)
    assert expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error(np.zeros(10, int), p) == pytest.approx(0.3)


def test_fit_temperature_recovers_a_planted_temperature():
    z, y = calibrated_set(6000, seed=1)
    assert fit_temperature(z, y, kind="logits") == pytest.approx(1.0, rel=0.1)
    t = fit_temperature(3.0 * z, y, kind="logits")  # over-confident by 3
    assert t == pytest.approx(3.0, rel=0.1)
    t_probs = fit_temperature(softmax(3.0 * z), y)  # auto: probabilities -> log p as logits
    assert t_probs == pytest.approx(t, rel=1e-3)
    assert fit_temperature(0.5 * z, y, kind="logits") == pytest.approx(0.5, rel=0.1)


def test_temperature_lowers_nll_and_ece_of_an_overconfident_model():
    z, y = calibrated_set(4000, seed=2)
    p = softmax(4.0 * z)
    val, test = slice(0, 2000), slice(2000, None)
    summary = calibration_summary(y[val], p[val], y[test], p[test])
    assert summary["temperature"] == pytest.approx(4.0, rel=0.15)
    for part in ("val", "test"):
        s = summary[part]
        assert s["n"] == 2000
        assert s["nll_after"] < s["nll_before"] - 0.05
        assert s["ece_after"] < s["ece_before"] / 2
    assert summary["test"]["nll_before"] == pytest.approx(negative_log_likelihood(y[test], p[test]))
    assert summary["method"] == "temperature" and summary["fitted_on"] == "val"
    assert summary["n_bins"] == 15
    assert json.loads(json.dumps(summary)) == summary  # plain JSON types only


def test_apply_temperature_keeps_argmax_and_normalisation():
    z, _ = calibrated_set(200, seed=3)
    p = softmax(z).astype(np.float32)
    for t in (0.3, 1.0, 2.5):
        q = apply_temperature(p, t)
        assert q.dtype == np.float32 and q.shape == p.shape
        np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-5)
        assert (q.argmax(axis=1) == p.argmax(axis=1)).all()
    np.testing.assert_allclose(apply_temperature(p, 1.0), p, atol=1e-6)
    assert (apply_temperature(p, 3.0).max(axis=1) <= p.max(axis=1) + 1e-6).all()  # softer
    single = apply_temperature(p[0], 2.0)
    assert single.shape == (4,)
    np.testing.assert_allclose(single, apply_temperature(p[:1], 2.0)[0])


@pytest.mark.parametrize("call, words", [
    (lambda: reliability_bins([0, 1], [0.5, 0.5]), "(N, C)"),
    (lambda: reliability_bins([0, 2], [[0.5, 0.5], [0.5, 0.5]]), "0..1"),
    (lambda: reliability_bins([0], [[0.5, 0.5], [0.5, 0.5]]), "one label per row"),
    (lambda: reliability_bins([0], [[0.9, 0.9]]), "rows sum to 1"),
    (lambda: reliability_bins([0], [[0.5, 0.5]], n_bins=0), "positive integer"),
    (lambda: expected_calibration_error(np.zeros(0, int), np.zeros((0, 2))), "zero images"),
    (lambda: apply_temperature([[0.5, 0.5]], 0.0), "positive number"),
    (lambda: apply_temperature([[0.5, 0.5]], float("nan")), "positive number"),
    (lambda: fit_temperature([[0.5, 0.5]], [0]), "at least 2"),
    (lambda: fit_temperature([[np.nan, 1.0], [0.0, 1.0]], [0, 1]), "NaN"),
    (lambda: fit_temperature([[0.5, 0.5], [0.5, 0.5]], [0, 1], kind="soft"), "kind"),
    (lambda: calibration_summary([0, 1], [[0.6, 0.4], [0.3, 0.7]], [0], [[0.2, 0.3, 0.5]]),
     "same model"),
])
def test_errors_say_what_is_wrong(call, words):
    with pytest.raises(CalibrationError, match=None) as info:
        call()
    assert words in str(info.value)
    assert isinstance(info.value, GalaxyError) and isinstance(info.value, ValueError)
