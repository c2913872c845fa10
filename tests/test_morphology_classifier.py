"""galaxy_core.morphology.classifier: fit, probabilities per class, safe save/load, the blend."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from galaxy_core.errors import BundleError, ModelError
from galaxy_core.morphology.statistics import N_FEATURES
from galaxy_core.morphology.classifier import MorphologyClassifier, blend_probs


def separable(n=120, classes=(0, 1, 2), seed=0):
    """Statistics whose first entry encodes the class: a boosting model learns it exactly."""
    rng = np.random.default_rng(seed)
    y = rng.choice(classes, n)
    x = rng.normal(0, 0.1, (n, N_FEATURES)).astype(np.float32)
    x[:, 0] += 3 * y
    return x, y


@pytest.fixture(scope="module")
def fitted():
    x, y = separable(classes=(0, 2, 3))
    return MorphologyClassifier.fit(x, y, num_classes=5, seed=0), x, y


def test_learns_and_returns_a_column_per_class(fitted):
    clf, x, y = fitted
    probs = clf.predict_features(x)
    assert probs.shape == (len(x), 5) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs.argmax(axis=1) == y).mean() > 0.95
    # Classes the training labels lack (1 and 4) get probability 0, in their own columns.
    assert np.all(probs[:, [1, 4]] == 0)
    assert clf.predict_features(np.zeros((0, N_FEATURES))).shape == (0, 5)


def test_save_and_load_give_the_same_probabilities(fitted, tmp_path):
    clf, x, _ = fitted
    path = clf.save(tmp_path / "m.skops")
    assert zipfile.is_zipfile(path)
    again = MorphologyClassifier.load(path, num_classes=5)
    np.testing.assert_array_equal(again.predict_features(x), clf.predict_features(x))
    assert not list(tmp_path.glob(".*tmp"))  # written atomically: no temporary file left


def test_load_refuses_a_damaged_file(tmp_path):
    bad = tmp_path / "m.skops"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(BundleError, match="not a readable morphology classifier"):
        MorphologyClassifier.load(bad, num_classes=5)


def test_load_refuses_types_it_does_not_trust(tmp_path):
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    path = tmp_path / "m.skops"
    sio.dump(FunctionTransformer(eval), path)  # would call eval on whatever it is given
    with pytest.raises(BundleError, match=r"holds types a morphology classifier does not need \(builtins.eval\)"):
        MorphologyClassifier.load(path, num_classes=5)
    sio.dump(FunctionTransformer(), path)  # trusted by skops, but not a boosting classifier
    with pytest.raises(BundleError, match="holds a FunctionTransformer, not a HistGradientBoostingClassifier"):
        MorphologyClassifier.load(path, num_classes=5)


def test_a_classifier_for_other_statistics_or_classes_is_refused(tmp_path):
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = separable()
    narrow = HistGradientBoostingClassifier(max_iter=5).fit(x[:, :4], y)
    with pytest.raises(ModelError, match="takes 4 statistics"):
        MorphologyClassifier(narrow, num_classes=3)
    with pytest.raises(ModelError, match="outside 0..1"):
        MorphologyClassifier(HistGradientBoostingClassifier(max_iter=5).fit(x, y), num_classes=2)
    with pytest.raises(ModelError, match="at least 2 classes"):
        MorphologyClassifier.fit(x, np.zeros(len(x), int), num_classes=3)
    with pytest.raises(ModelError, match=rf"needs \(N, {N_FEATURES}\) statistics"):  # before any fitting
        MorphologyClassifier.fit(x[:, :4], y, num_classes=3)


def test_blend_is_the_weighted_mean():
    cnn, morph = np.array([[0.8, 0.2, 0.0]]), np.array([[0.0, 0.4, 0.6]])
    np.testing.assert_allclose(blend_probs(cnn, morph, 0.5), [[0.4, 0.3, 0.3]], atol=1e-7)
    np.testing.assert_array_equal(blend_probs(cnn, morph, 0.0), cnn.astype(np.float32))
    with pytest.raises(ValueError, match="differ in shape"):
        blend_probs(cnn, morph[:, :2], 0.5)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        blend_probs(cnn, morph, 1.5)
