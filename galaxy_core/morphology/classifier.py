"""A gradient-boosted classifier on the morphology statistics, and its blend with the CNN.

`galaxy_core.morphology.statistics` turns a cutout into numbers (concentration, asymmetry, axis ratios, Gini,
M20, Fourier amplitudes, ...); this module fits scikit-learn's `HistGradientBoostingClassifier` on
them, saves and loads it safely, and averages its probabilities with the CNN's:

    p = (1 - w) * p_cnn + w * p_morphology,   w = Config.morphology_weight

`w = 0` (the recipe's default) means no such model; the offline demo uses 0.5, the plain mean of the
two. Trained on synthetic galaxies, the two models make different mistakes on real ones, and the
mean beats both (BENCHMARKS.md, "Real images").

The file format is skops (`skops.io`), not pickle: loading accepts only the scikit-learn and numpy
types this classifier is made of (`TRUSTED_TYPES`) and refuses anything else, as the CNN is loaded
with Keras's safe mode.

Example:
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(60, N_FEATURES)).astype(np.float32); y = (x[:, 0] > 0).astype(int)
    >>> clf = MorphologyClassifier.fit(x, y, num_classes=3, seed=0)
    >>> clf.predict_features(x[:2]).shape                # (N, num_classes), a column per class
    (2, 3)
    >>> blend_probs(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), 0.25)
    array([[0.75, 0.25]], dtype=float32)
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from galaxy_core.errors import BundleError, ModelError
from galaxy_core.io import atomic_path
from galaxy_core.morphology.statistics import N_FEATURES

# Boosting settings: 300 trees of at most 31 leaves, learning rate 0.05, balanced class weights.
MAX_ITER = 300
LEARNING_RATE = 0.05
# Types a morphology.skops file may hold beyond those skops trusts by default (scikit-learn estimators,
# numpy arrays): the boosting model's trees.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)


class MorphologyClassifier:
    """The fitted boosting model over `morphology.FEATURE_NAMES`, for `num_classes` classes.

    Attributes:
        estimator: the fitted `HistGradientBoostingClassifier`.
        num_classes: width of the probability rows it returns (classes absent from the training
            labels get probability 0).
    """

    def __init__(self, estimator, num_classes: int):
        from sklearn.ensemble import HistGradientBoostingClassifier

        if not isinstance(estimator, HistGradientBoostingClassifier):
            raise ModelError(f"The morphology file holds a {type(estimator).__name__}, not a "
                             f"HistGradientBoostingClassifier; re-run training.")
        n_in = getattr(estimator, "n_features_in_", None)
        if n_in != N_FEATURES:
            raise ModelError(f"The morphology classifier takes {n_in} statistics but "
                             f"galaxy_core.morphology.statistics makes {N_FEATURES}: it was fitted by another "
                             f"version; re-run training.")
        classes = np.asarray(estimator.classes_)
        if classes.min() < 0 or classes.max() >= num_classes:
            raise ModelError(f"The morphology classifier knows classes {classes.tolist()}, outside "
                             f"0..{num_classes - 1}; re-run training.")
        self.estimator = estimator
        self.num_classes = int(num_classes)

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, num_classes: int, seed: int = 0):
        """Fit on float32 `(N, N_FEATURES)` statistics and int `(N,)` labels in `0..num_classes-1`."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        features, labels = np.asarray(features, np.float32), np.asarray(labels).astype(np.int64)
        if (features.ndim != 2 or features.shape[1] != N_FEATURES or len(features) != len(labels)
                or len(np.unique(labels)) < 2):
            raise ModelError(f"Fitting the morphology classifier needs (N, {N_FEATURES}) statistics "
                             f"and N labels of at least 2 classes; got {features.shape} and "
                             f"{len(np.unique(labels))} classes.")
        # early_stopping off: all MAX_ITER rounds on all the training images at any size (scikit-learn
        # would otherwise hold out 10% of them above 10,000 images).
        estimator = HistGradientBoostingClassifier(max_iter=MAX_ITER, learning_rate=LEARNING_RATE,
                                                   class_weight="balanced", early_stopping=False,
                                                   random_state=int(seed) % 2**32)
        estimator.fit(features, labels)
        return cls(estimator, num_classes)

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """Probabilities float32 `(N, num_classes)` of float32 `(N, N_FEATURES)` statistics."""
        features = np.asarray(features, np.float32)
        out = np.zeros((len(features), self.num_classes), np.float32)
        if len(features):
            out[:, np.asarray(self.estimator.classes_)] = self.estimator.predict_proba(features)
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write the classifier to `path` (skops format), atomically."""
        import skops.io as sio

        with atomic_path(path) as tmp:
            sio.dump(self.estimator, tmp, compression=zipfile.ZIP_DEFLATED)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike, num_classes: int):
        """Read a classifier written by `save`, trusting only `TRUSTED_TYPES`.

        Raises:
            BundleError: unreadable, or holding other types (the file is then not loaded at all).
        """
        import skops.io as sio

        path = Path(path)
        try:
            untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in TRUSTED_TYPES]
            if untrusted:
                raise BundleError(f"{path} holds types a morphology classifier does not need "
                                  f"({', '.join(untrusted[:5])}); it was not loaded. Re-run training.")
            estimator = sio.load(path, trusted=list(TRUSTED_TYPES))
        except BundleError:
            raise
        except Exception as err:  # skops raises zipfile, KeyError, TypeError, ... on damaged files
            raise BundleError(f"{path} is not a readable morphology classifier ({type(err).__name__}: "
                              f"{err}); re-run training (`python -m galaxy_core.predict --cnn-only` "
                              f"classifies with the run's CNN alone meanwhile).") from err
        try:
            return cls(estimator, num_classes)
        except ModelError as err:
            raise BundleError(str(err)) from err


def blend_probs(cnn: np.ndarray, morphology: np.ndarray, weight: float) -> np.ndarray:
    """`(1 - weight) * cnn + weight * morphology`: float32, same `(N, C)` shape.

    Args:
        cnn, morphology: probabilities `(N, C)` (rows summing to 1).
        weight: in [0, 1]; 0 returns the CNN's probabilities.
    """
    cnn, morphology = np.asarray(cnn, np.float32), np.asarray(morphology, np.float32)
    if cnn.shape != morphology.shape:
        raise ValueError(f"Probability arrays differ in shape: CNN {cnn.shape}, morphology {morphology.shape}.")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"Blend weight must be in [0, 1]; got {weight}.")
    return ((1.0 - weight) * cnn + weight * morphology).astype(np.float32)
