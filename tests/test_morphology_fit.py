"""galaxy_core.morphology.fit: the run's morphology classifier fitted on a dataset's training split."""

import numpy as np

from conftest import write_galaxy10_like
from galaxy_core.config import Config
from galaxy_core.data.galaxy10 import open_dataset
from galaxy_core.data.split import Split
from galaxy_core.morphology.classifier import MorphologyClassifier
from galaxy_core.morphology.fit import fit_on_split, split_statistics
from galaxy_core.morphology.statistics import features_batch


def discs(n, size=48, seed=0):
    """Images of one bright disc each; the label is the disc's radius bin (class 0 small, 1 large)."""
    import cv2

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 10, (n, size, size, 3)).astype(np.uint8)
    for image, label in zip(images, labels):
        cv2.circle(image, (size // 2, size // 2), 5 + 12 * int(label), (220, 200, 180), -1)
    return images, labels


def test_fit_on_split_fits_on_train_and_predicts_val_and_test(tmp_path):
    images, labels = discs(40)
    path = write_galaxy10_like(tmp_path / "d.h5", n=40, size=48, labels=labels, images=images)
    split = Split(np.arange(0, 24), np.arange(24, 32), np.arange(32, 40))
    cfg = Config(class_names=("small", "large"), seed=1)
    fit = fit_on_split(path, split, labels, cfg, progress=False)
    assert fit.val_probs.shape == (8, 2) and fit.test_probs.shape == (8, 2) and fit.seconds > 0
    same = MorphologyClassifier.fit(features_batch(images[split.train]), labels[split.train], 2, seed=1)
    np.testing.assert_array_equal(fit.test_probs, same.predict_features(features_batch(images[split.test])))

    with open_dataset(path) as source:  # rows in the order asked, streamed in chunks
        stats = split_statistics(source, np.array([5, 1, 3]), "x", progress=False)
        assert split_statistics(source, np.array([], np.int64), "none", progress=False).shape == (0, stats.shape[1])
    np.testing.assert_array_equal(stats, features_batch(images[[5, 1, 3]]))
