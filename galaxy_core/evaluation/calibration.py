"""Calibration of class probabilities: reliability diagram, expected calibration error, temperature scaling.

A classifier is calibrated when, among the images it labels with confidence p, a fraction p is
right. The reliability diagram bins the test images by confidence (the top probability) and plots
each bin's accuracy against its mean confidence; the expected calibration error (ECE) is the
count-weighted mean gap between the two.

Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks") divides the
logits by one scalar T > 0 fitted on the validation split by minimising the negative log-likelihood
(NLL). It never changes the predicted class (argmax), so accuracy and the confusion matrix stay
the same; only the confidence moves (T > 1 softens an over-confident model). The bundles store
softmax probabilities, not logits; `log(p)` differs from the logits by a per-row constant, which
the softmax ignores, so temperature scaling on `log(p)` is exact.

Everything here is numpy + scipy (`minimize_scalar`); no Keras, no display code.

Example:
    >>> import numpy as np
    >>> y = np.array([0, 1, 1, 0])
    >>> p = np.array([[0.9, 0.1], [0.3, 0.7], [0.55, 0.45], [0.65, 0.35]])
    >>> round(expected_calibration_error(y, p, n_bins=5), 3)   # bins 0.8-1, 0.6-0.8, 0.4-0.6
    0.325
    >>> apply_temperature(p, 2.0)[0].round(3).tolist()        # T > 1 softens
    [0.75, 0.25]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from galaxy_core.errors import GalaxyError

# Probabilities are clipped to [EPS, 1] in the NLL (the same EPS as galaxy_core.runs.reevaluate's loss).
EPS = 1e-7
# Floor of p before log(p) is used as logits: the smallest normal float32, so that tiny but real
# probabilities keep their logit (a 1e-7 floor would flatten them); exact zeros (underflow) get -87.
LOG_FLOOR = float(np.finfo(np.float32).tiny)
DEFAULT_BINS = 15
# Search range of log(T): T in [exp(-5), exp(5)] = [0.0067, 148], far beyond any useful value.
LOG_T_BOUNDS = (-5.0, 5.0)


class CalibrationError(GalaxyError, ValueError):
    """Labels or probabilities that cannot be calibrated (wrong shape, range or size)."""


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------
def _check_probs(probs: Any, what: str = "probs") -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise CalibrationError(f"{what} must be a 2-D array (N, C) with C >= 2 classes, got shape "
                               f"{p.shape}. Pass the softmax output, one row per image.")
    if not np.all(np.isfinite(p)):
        raise CalibrationError(f"{what} holds NaN or infinite values; check the model's output.")
    if p.size and (p.min() < -1e-6 or p.max() > 1 + 1e-6
                   or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3)):
        raise CalibrationError(f"{what} must be probabilities in [0, 1] whose rows sum to 1 (got values "
                               f"{p.min():.3g}..{p.max():.3g}, row sums {p.sum(axis=1).min():.3g}.."
                               f"{p.sum(axis=1).max():.3g}). Pass softmax outputs, or logits to "
                               f"fit_temperature(..., kind='logits').")
    return p


def _check_labels(y_true: Any, n: int, num_classes: int) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1 or y.shape[0] != n:
        raise CalibrationError(f"labels must be a 1-D array with one label per row of probabilities "
                               f"({n}), got shape {y.shape}.")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.mod(y, 1) == 0):
            raise CalibrationError("labels must be integer class indices 0..C-1.")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise CalibrationError(f"labels must be in 0..{num_classes - 1} (one per probability column), "
                               f"got {y.min()}..{y.max()}.")
    return y


def _check_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
        raise CalibrationError(f"n_bins must be a positive integer, got {n_bins!r} (15 is usual).")
    return int(n_bins)


# --------------------------------------------------------------------------------------------
# Reliability and ECE
# --------------------------------------------------------------------------------------------
def reliability_bins(y_true, probs, n_bins: int = DEFAULT_BINS) -> dict[str, np.ndarray]:
    """Reliability-diagram bins of the top-class confidence.

    Bins are equal-width on [0, 1]: bin i holds the images whose confidence is in
    `(edges[i], edges[i+1]]` (the first bin also holds confidence 0).

    Args:
        y_true: int `(N,)` labels in `0..C-1`.
        probs: float `(N, C)` probabilities (rows sum to 1).
        n_bins: number of bins (default 15).

    Returns:
        `{"edges": float64 (n_bins+1,), "confidence": float64 (n_bins,) mean top probability,
        "accuracy": float64 (n_bins,) fraction right, "counts": int64 (n_bins,)}`; confidence and
        accuracy are NaN in empty bins.

    Raises:
        CalibrationError: shapes, label range or probabilities are wrong.

    Example:
        >>> bins = reliability_bins([0, 1], [[0.95, 0.05], [0.7, 0.3]], n_bins=2)
        >>> bins["counts"].tolist(), bins["accuracy"].tolist()
        ([0, 2], [nan, 0.5])
    """
    p = _check_probs(probs)
    y = _check_labels(y_true, p.shape[0], p.shape[1])
    n_bins = _check_bins(n_bins)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right=True: x in (edges[i-1], edges[i]] -> i; confidence 0 -> 0 (kept in the first bin).
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=confidence, minlength=n_bins) / counts
        accuracy = np.bincount(which, weights=correct, minlength=n_bins) / counts
    mean_conf[counts == 0] = np.nan
    accuracy[counts == 0] = np.nan
    return {"edges": edges, "confidence": mean_conf, "accuracy": accuracy, "counts": counts}


def expected_calibration_error(y_true, probs, n_bins: int = DEFAULT_BINS) -> float:
    """ECE: `sum_i counts_i / N * |accuracy_i - confidence_i|` over the `reliability_bins`.

    Args:
        y_true: int `(N,)` labels; probs: float `(N, C)`; n_bins: equal-width bins (default 15).

    Returns:
        A float in [0, 1] (0 = perfectly calibrated on these bins).

    Raises:
        CalibrationError: bad input, or N = 0.

    Example:
        >>> expected_calibration_error([0, 0], [[0.8, 0.2], [0.8, 0.2]], n_bins=10)  # doctest: +ELLIPSIS
        0.19999...
    """
    bins = reliability_bins(y_true, probs, n_bins)
    total = int(bins["counts"].sum())
    if total == 0:
        raise CalibrationError("Cannot compute the calibration error of zero images.")
    full = bins["counts"] > 0
    gaps = np.abs(bins["accuracy"][full] - bins["confidence"][full])
    return float(np.sum(bins["counts"][full] * gaps) / total)


def negative_log_likelihood(y_true, probs) -> float:
    """Mean `-log p[true class]` (probabilities clipped to [1e-7, 1]); the categorical cross-entropy.

    Example:
        >>> round(negative_log_likelihood([0], [[0.5, 0.5]]), 4)
        0.6931
    """
    p = _check_probs(probs)
    y = _check_labels(y_true, p.shape[0], p.shape[1])
    if y.size == 0:
        raise CalibrationError("Cannot compute the log-likelihood of zero images.")
    return float(-np.mean(np.log(np.clip(p[np.arange(y.size), y], EPS, 1.0))))


# --------------------------------------------------------------------------------------------
# Temperature scaling
# --------------------------------------------------------------------------------------------
def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _as_logits(values: Any, kind: str) -> np.ndarray:
    """float64 `(N, C)` logits from probabilities (`log p`) or logits, per `kind`."""
    if kind not in ("auto", "probs", "logits"):
        raise CalibrationError(f"kind must be 'auto', 'probs' or 'logits', got {kind!r}.")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] < 2:
        raise CalibrationError(f"logits/probabilities must be a 2-D array (N, C) with C >= 2, got "
                               f"shape {v.shape}.")
    if not np.all(np.isfinite(v)):
        raise CalibrationError("logits/probabilities hold NaN or infinite values; check the model.")
    looks_like_probs = bool(v.size) and v.min() >= 0 and v.max() <= 1 and np.allclose(
        v.sum(axis=1), 1.0, atol=1e-3)
    if kind == "probs" or (kind == "auto" and looks_like_probs):
        return np.log(np.clip(_check_probs(v), LOG_FLOOR, 1.0))
    return v


def fit_temperature(val_logits_or_probs, val_labels, kind: str = "auto") -> float:
    """The temperature T > 0 that minimises the validation NLL of `softmax(logits / T)`.

    Bounded 1-D search (scipy `minimize_scalar`, method "bounded") over log T in [-5, 5]; the NLL
    is smooth and convex in 1/T, so the minimum is unique.

    Args:
        val_logits_or_probs: float `(N, C)` validation logits, or softmax probabilities (then
            `log p` is used as the logits: exact up to a per-row constant).
        val_labels: int `(N,)` labels in `0..C-1`.
        kind: "auto" (probabilities when every row is in [0, 1] and sums to 1, else logits),
            "probs" or "logits".

    Returns:
        T as a Python float (1.0 = no change; > 1 softens, < 1 sharpens).

    Raises:
        CalibrationError: bad shapes or labels, or fewer than 2 validation images.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 500)
        >>> logits = 3.0 * np.eye(3)[y] + rng.normal(0, 1.5, (500, 3))
        >>> fit_temperature(logits * 4, y, kind="logits") > 2   # over-confident -> T > 1
        True
    """
    from scipy.optimize import minimize_scalar

    logits = _as_logits(val_logits_or_probs, kind)
    y = _check_labels(val_labels, logits.shape[0], logits.shape[1])
    if y.size < 2:
        raise CalibrationError(f"Temperature scaling needs at least 2 validation images, got {y.size}. "
                               f"Use a larger validation split.")
    rows = np.arange(y.size)

    def nll(log_t: float) -> float:
        return float(-np.mean(_log_softmax(logits / np.exp(log_t))[rows, y]))

    result = minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded",
                             options={"xatol": 1e-5})
    return float(np.exp(result.x))


def apply_temperature(probs, temperature: float) -> np.ndarray:
    """Probabilities after temperature scaling: `softmax(log(p) / T)`.

    Args:
        probs: float `(N, C)` softmax probabilities (or a single `(C,)` row).
        temperature: T > 0 (from `fit_temperature` or metrics.json `calibration.temperature`).

    Returns:
        float32 of the same shape; rows sum to 1 and the argmax is unchanged.

    Raises:
        CalibrationError: T is not a positive finite number, or probs are not probabilities.

    Example:
        >>> apply_temperature([[0.9, 0.1]], 2.0).round(3).tolist()
        [[0.75, 0.25]]
    """
    t = float(temperature)
    if not np.isfinite(t) or t <= 0:
        raise CalibrationError(f"temperature must be a positive number, got {temperature!r}; fit it "
                               f"with fit_temperature on the validation split.")
    p = np.asarray(probs, dtype=np.float64)
    single = p.ndim == 1
    p = _check_probs(p[None] if single else p)
    out = np.exp(_log_softmax(np.log(np.clip(p, LOG_FLOOR, 1.0)) / t)).astype(np.float32)
    return out[0] if single else out


def calibration_summary(val_y, val_probs, test_y, test_probs, n_bins: int = DEFAULT_BINS) -> dict:
    """Temperature fitted on the validation split, with ECE and NLL before/after on val and test.

    The dict is JSON-ready (plain floats/ints) and goes into `metrics.json` under "calibration".

    Args:
        val_y, test_y: int `(N_val,)`, `(N_test,)` labels.
        val_probs, test_probs: float `(N_val, C)`, `(N_test, C)` softmax probabilities (plain,
            not TTA: the temperature belongs to the probabilities it was fitted on).
        n_bins: bins of the ECE (default 15).

    Returns:
        `{"method": "temperature", "fitted_on": "val", "temperature": float, "n_bins": int,
        "val": PART, "test": PART}` with PART = `{"n": int, "ece_before": float, "ece_after": float,
        "nll_before": float, "nll_after": float}`.

    Raises:
        CalibrationError: bad input (see `fit_temperature`); val and test need the same C.

    Example:
        >>> rng = np.random.default_rng(1)
        >>> y = rng.integers(0, 3, 300)
        >>> z = 8.0 * np.eye(3)[y] + rng.normal(0, 4, (300, 3))
        >>> p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        >>> s = calibration_summary(y[:150], p[:150], y[150:], p[150:])
        >>> s["test"]["nll_after"] < s["test"]["nll_before"]
        True
    """
    n_bins = _check_bins(n_bins)
    val_p, test_p = _check_probs(val_probs, "val_probs"), _check_probs(test_probs, "test_probs")
    if val_p.shape[1] != test_p.shape[1]:
        raise CalibrationError(f"val_probs has {val_p.shape[1]} classes but test_probs has "
                               f"{test_p.shape[1]}; pass both splits of the same model.")
    temperature = fit_temperature(val_p, val_y, kind="probs")
    return {"method": "temperature", "fitted_on": "val", "temperature": temperature,
            "n_bins": n_bins, "val": calibration_scores(val_y, val_p, temperature, n_bins),
            "test": calibration_scores(test_y, test_p, temperature, n_bins)}


def calibration_scores(y_true, probs, temperature: float, n_bins: int = DEFAULT_BINS) -> dict:
    """ECE and NLL of one split before and after a given temperature (a `calibration_summary` PART).

    Used by `calibration_summary`, and by `galaxy_core.runs.reevaluate.reevaluate_bundle` to rescore the
    test split with the temperature stored in metrics.json (the validation split is not in a bundle).

    Args:
        y_true: int `(N,)` labels; probs: float `(N, C)` softmax probabilities; temperature: T > 0;
        n_bins: bins of the ECE.

    Returns:
        `{"n": int, "ece_before": float, "ece_after": float, "nll_before": float, "nll_after": float}`.

    Raises:
        CalibrationError: bad input, N = 0, or T not positive.

    Example:
        >>> s = calibration_scores([0, 1], [[0.9, 0.1], [0.2, 0.8]], temperature=2.0)
        >>> s["n"], round(s["ece_before"], 3), s["ece_after"] > s["ece_before"]  # T > 1 under-confident
        (2, 0.15, True)
    """
    after = apply_temperature(probs, temperature)
    return {"n": int(len(after)),
            "ece_before": expected_calibration_error(y_true, probs, n_bins),
            "ece_after": expected_calibration_error(y_true, after, n_bins),
            "nll_before": negative_log_likelihood(y_true, probs),
            "nll_after": negative_log_likelihood(y_true, after)}
