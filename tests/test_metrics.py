"""Tests of galaxy_core.evaluation.metrics: metrics against hand-computed values and scikit-learn, the metrics.json
document, the best epoch and the text report."""

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from galaxy_core.evaluation.metrics import (METRIC_KEYS, assemble_metrics, best_epoch_of, compute_metrics, evaluate_split,
                                 format_report)

NAMES = ("a", "b", "c")


def one_hot_probs(pred, num_classes=3, confidence=0.8):
    """Probabilities whose argmax is `pred`: `confidence` on it, the rest spread evenly."""
    probs = np.full((len(pred), num_classes), (1 - confidence) / (num_classes - 1), np.float32)
    probs[np.arange(len(pred)), pred] = confidence
    return probs


def test_metrics_hand_computed():
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    m = compute_metrics(y_true, one_hot_probs(y_pred), NAMES)
    # 6 of 8 right.
    assert m["n"] == 8
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["confusion_matrix"] == [[3, 1, 0], [0, 1, 1], [0, 0, 2]]
    # Recalls 3/4, 1/2, 2/2 -> balanced accuracy = mean.
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    # Precisions: a 3/3, b 1/2, c 2/3. F1 = 2PR/(P+R).
    f1 = [2 * 1 * 0.75 / 1.75, 2 * 0.5 * 0.5 / 1.0, 2 * (2 / 3) * 1 / (2 / 3 + 1)]
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 0.75, "f1": f1[0], "support": 4})
    assert m["per_class"]["b"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["c"]["support"] == 2
    # Cross-entropy: -log(0.8) for right rows, -log(0.1) for wrong ones.
    assert m["loss"] == pytest.approx(-(6 * np.log(0.8) + 2 * np.log(0.1)) / 8, rel=1e-5)
    assert "precision" in m["classification_report"] and "a" in m["classification_report"]
    # Plain Python types only.
    assert json.loads(json.dumps(m)) == m


def test_metrics_equal_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 10, 300)
    logits = rng.normal(size=(300, 10)) + 2.0 * np.eye(10)[y_true]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y_pred = probs.argmax(1)
    names = [f"class {i}" for i in range(10)]
    m = compute_metrics(y_true, probs, names)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert m["loss"] == pytest.approx(skm.log_loss(y_true, probs, labels=range(10)), rel=1e-6)
    assert m["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred).tolist()


def test_metrics_missing_class_and_clipped_loss():
    # Class "c" never appears in y_true; a zero probability on the true class is clipped, not inf.
    y_true = np.array([0, 1, 1])
    probs = np.array([[0.0, 0.0, 1.0], [0.1, 0.9, 0.0], [0.2, 0.8, 0.0]], np.float32)
    m = compute_metrics(y_true, probs, NAMES)
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["balanced_accuracy"] == pytest.approx(0.5)  # mean recall over classes a (0) and b (1)
    assert np.isfinite(m["loss"]) and m["loss"] == pytest.approx(-(np.log(1e-7) + np.log(0.9) + np.log(0.8)) / 3)


@pytest.mark.parametrize("y_true, probs, match", [
    (np.array([0, 1]), np.ones((3, 3)) / 3, "same N"),
    (np.array([0, 3]), np.ones((2, 3)) / 3, "0..2"),
    (np.array([0, 1]), np.ones((2, 4)) / 4, "4 columns"),
    (np.array([], int), np.ones((0, 3)), "zero examples"),
])
def test_metrics_reject_bad_input(y_true, probs, match):
    with pytest.raises(ValueError, match=match):
        compute_metrics(y_true, probs, NAMES)


def test_metric_keys_are_the_keys_compute_metrics_writes():
    m = compute_metrics(np.array([0, 1, 2]), one_hot_probs(np.array([0, 1, 1])), NAMES)
    assert tuple(m) == METRIC_KEYS


def test_evaluate_split_and_assemble_metrics(orientation_model):
    OrientationModel = orientation_model
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, 12)
    names = ["w", "x", "y", "z"]
    result = evaluate_split(OrientationModel(), images, labels, names, batch_size=5, tta=True)
    assert result["probs"].shape == (12, 4) and result["probs_tta"].shape == (12, 4)
    assert result["plain"] == compute_metrics(labels, result["probs"], names)
    assert result["tta"] == compute_metrics(labels, result["probs_tta"], names)
    no_tta = evaluate_split(OrientationModel(), images, labels, names, tta=False)
    assert no_tta["tta"] is None and no_tta["probs_tta"] is None

    doc = assemble_metrics(result, val=no_tta, calibration={"temperature": np.float32(1.5)})
    assert doc["test"] == result["plain"] and doc["test_tta"] == result["tta"]
    assert doc["val"] == no_tta["plain"] and doc["val_tta"] is None
    assert doc["calibration"] == {"temperature": 1.5} and "best_epoch" not in doc
    json.dumps(doc)  # serialisable
    text = format_report(doc, names, synthetic=True, best_epoch=3)
    assert "SYNTHETIC DATA" in text and "test (TTA)" in text and "Confusion matrix" in text
    assert "best epoch: 3" in text and "best epoch" not in format_report(doc, names, synthetic=True)
    assert "SYNTHETIC" not in format_report(doc, names, synthetic=False)


def test_best_epoch_of_history():
    history = {"loss": [1.2, 0.9, 0.8], "val_loss": [1.3, 1.0, 1.1],
               "accuracy": [0.4, 0.6, 0.7], "val_accuracy": [0.35, 0.55, 0.5]}
    assert best_epoch_of(history) == 2  # 1-based, highest validation accuracy
    assert best_epoch_of({"val_loss": [1.0, 0.5, 0.7]}) == 2  # no accuracy: lowest validation loss
    assert best_epoch_of({"loss": [1.0]}) is None and best_epoch_of({"val_accuracy": [np.nan]}) is None


def test_row_normalised_gives_each_true_class_its_shares():
    from galaxy_core.evaluation.metrics import row_normalised

    shares = row_normalised(np.array([[5, 1, 0], [4, 2, 0], [0, 0, 0]], np.int64))
    assert shares.dtype == np.float64 and shares.shape == (3, 3)
    np.testing.assert_allclose(shares.sum(axis=1), [1, 1, 0])  # an empty class stays 0, no NaN
    np.testing.assert_allclose(shares[1], [4 / 6, 2 / 6, 0])
    assert row_normalised([[0, 0], [1, 3]]).tolist() == [[0, 0], [0.25, 0.75]]
    with pytest.raises(ValueError, match="square"):
        row_normalised(np.ones((2, 3)))
