"""Comparing runs: same-test-set check, metric rows, confusion difference and disagreements."""

import doctest
from pathlib import Path

import numpy as np
import pytest

from galaxy_core.runs import compare
from galaxy_core.bundle.read import RunBundle, load_bundle
from galaxy_core.bundle.write import write_bundle
from galaxy_core.evaluation.calibration import calibration_summary
from galaxy_core.runs.compare import (CompareError, check_same_test_set, compare_metrics,
                                 confusion_difference, disagreements)
from galaxy_core.config import Config
from galaxy_core.evaluation.metrics import assemble_metrics, compute_metrics

CFG = Config(image_size=32, weights="none")
N = 40


def one_hot_probs(pred, num_classes=10, confidence=0.8):
    p = np.full((len(pred), num_classes), (1 - confidence) / (num_classes - 1), np.float32)
    p[np.arange(len(pred)), pred] = confidence
    return p


def make_bundle(name, pred, labels=None, indices=None, pred_tta=None, run_info=None, calib=False):
    """A RunBundle in memory whose metrics are computed from `pred` (synthetic predictions)."""
    labels = np.arange(N) % 10 if labels is None else np.asarray(labels)
    indices = np.arange(100, 100 + N) if indices is None else np.asarray(indices)
    probs = one_hot_probs(pred)
    test = {"plain": compute_metrics(labels, probs, CFG.class_names), "tta": None}
    predictions = {"indices": indices.astype(np.int64), "labels": labels.astype(np.int64),
                   "probs": probs}
    if pred_tta is not None:
        predictions["probs_tta"] = one_hot_probs(pred_tta)
        test["tta"] = compute_metrics(labels, predictions["probs_tta"], CFG.class_names)
    extra = {}
    if calib:
        extra["calibration"] = calibration_summary(labels, probs, labels, probs)
    metrics = assemble_metrics(test, **extra)
    info = {"synthetic": True, "dataset_sha256": "ab" * 32, "best_epoch": 2, **(run_info or {})}
    return RunBundle(path=Path(name), name=name, config=CFG, run_info=info, metrics=metrics,
                     history={"epoch": [1, 2], "loss": [2.0, 1.5]}, predictions=predictions)


LABELS = np.arange(N) % 10


def wrong(rows):
    pred = LABELS.copy()
    pred[list(rows)] = (pred[list(rows)] + 1) % 10
    return pred


def test_docstring_examples():
    assert doctest.testmod(compare).failed == 0


def test_compare_metrics_rows_read_metrics_json():
    a = make_bundle("a", wrong(range(0, 10)), pred_tta=wrong(range(0, 4)), calib=True)
    b = make_bundle("b", wrong(range(5, 25)))
    rows = compare_metrics([a, b])
    assert [r["name"] for r in rows] == ["a", "b"]
    assert rows[0]["accuracy"] == pytest.approx(0.75) and rows[1]["accuracy"] == pytest.approx(0.5)
    assert rows[0]["tta_accuracy"] == pytest.approx(0.9) and rows[1]["tta_accuracy"] is None
    assert rows[0]["balanced_accuracy"] == pytest.approx(a.metrics["test"]["balanced_accuracy"])
    assert rows[1]["macro_f1"] == pytest.approx(b.metrics["test"]["macro_f1"])
    assert list(rows[0]["per_class_f1"]) == list(CFG.class_names)
    assert rows[0]["per_class_f1"][CFG.class_names[0]] == pytest.approx(
        a.metrics["test"]["per_class"][CFG.class_names[0]]["f1"])
    assert rows[0]["temperature"] == pytest.approx(a.metrics["calibration"]["temperature"])
    assert rows[0]["ece"] is not None and rows[1]["ece"] is None
    assert rows[0]["n_test"] == N and rows[0]["best_epoch"] == 2 and rows[0]["synthetic"] is True


def test_confusion_difference_rows_sum_to_zero():
    a = make_bundle("a", LABELS)          # perfect
    b = make_bundle("b", wrong([0, 10]))  # two class-0 images called class 1
    diff = confusion_difference(a, b)
    assert diff.shape == (10, 10) and diff.dtype == np.float64
    np.testing.assert_allclose(diff.sum(axis=1), 0, atol=1e-12)
    assert diff[0, 0] == pytest.approx(0.5) and diff[0, 1] == pytest.approx(-0.5)  # 4 class-0 images
    assert np.abs(np.delete(diff, 0, axis=0)).max() == 0
    np.testing.assert_allclose(confusion_difference(b, a), -diff)
    with pytest.raises(CompareError, match="square"):
        confusion_difference(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(CompareError, match="no 'test_tta'"):
        confusion_difference(a, b, tta=True)


def test_disagreements_are_the_right_rows():
    a = make_bundle("a", wrong([1, 2, 3]), pred_tta=wrong([1]))
    b = make_bundle("b", wrong([3, 4]), pred_tta=wrong([4]))
    a_only, b_only = disagreements(a, b)
    assert a_only.dtype == np.int64
    assert a_only.tolist() == [4] and b_only.tolist() == [1, 2]
    a_tta, b_tta = disagreements(a, b, tta=True)
    assert a_tta.tolist() == [4] and b_tta.tolist() == [1]
    with pytest.raises(CompareError, match="probs_tta"):
        disagreements(a, make_bundle("c", LABELS), tta=True)


@pytest.mark.parametrize("other, words", [
    (lambda: make_bundle("b", LABELS, indices=np.arange(200, 200 + N)), "different test images"),
    (lambda: make_bundle("b", LABELS, indices=np.arange(100, 100 + N)[::-1]), "different order"),
    (lambda: make_bundle("b", LABELS[:30], labels=LABELS[:30], indices=np.arange(100, 130)),
     "40 and 30 images"),
    (lambda: make_bundle("b", LABELS, labels=(LABELS + 1) % 10), "different labels"),
    (lambda: make_bundle("b", LABELS, run_info={"synthetic": False}), "synthetic"),
    (lambda: make_bundle("b", LABELS, run_info={"dataset_sha256": "cd" * 32}), "different dataset files"),
    (lambda: make_bundle("a", LABELS), "picked twice"),
])
def test_different_test_sets_are_refused(other, words):
    a = make_bundle("a", LABELS)
    with pytest.raises(CompareError) as info:
        check_same_test_set([a, other()])
    assert words in str(info.value)
    with pytest.raises(CompareError):
        compare_metrics([a, other()])


def test_two_to_four_runs():
    runs = [make_bundle(str(i), LABELS) for i in range(5)]
    check_same_test_set(runs[:4])
    for bad in (runs[:1], runs):
        with pytest.raises(CompareError, match="2 to 4 runs"):
            check_same_test_set(bad)
    # A missing checksum (older bundle) is not a difference.
    check_same_test_set([runs[0], make_bundle("x", LABELS, run_info={"dataset_sha256": None})])


def test_written_bundles_compare(tmp_path):
    """Round trip through write_bundle/load_bundle: the real metrics.json and predictions.h5 keys."""
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    images = np.zeros((N, 32, 32, 3), np.uint8)
    paths = []
    for name, pred in (("one", wrong([0, 1])), ("two", wrong([1, 2, 3]))):
        mem = make_bundle(name, pred, pred_tta=pred)
        paths.append(write_bundle(tmp_path / name, config=CFG, model=model, history=mem.history,
                                  metrics=mem.metrics, run_info=mem.run_info,
                                  predictions={**mem.predictions, "images": images}))
    one, two = (load_bundle(p) for p in paths)
    rows = compare_metrics([one, two])
    assert [r["accuracy"] for r in rows] == [pytest.approx(0.95), pytest.approx(0.925)]
    assert rows[1]["tta_accuracy"] == pytest.approx(0.925)
    first, second = disagreements(one, two)
    assert first.tolist() == [2, 3] and second.tolist() == [0]
    assert one.read_test_images(first).shape == (2, 32, 32, 3)
