"""The run's morphology classifier, fitted on a dataset's split: statistics of the raw images, fit, predictions.

Statistics (`galaxy_core.morphology.statistics`) are measured on the dataset's raw images (not the
preprocessed cache), streamed in chunks. The classifier (`galaxy_core.morphology.classifier`) is
fitted on the training split; its probabilities on the validation and test splits are what
`galaxy_core.evaluation.blend.blend_summary` scores and calibrates against the CNN's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from galaxy_core.config import Config
from galaxy_core.data.galaxy10 import open_dataset
from galaxy_core.io import progress_bar
from galaxy_core.morphology.classifier import MorphologyClassifier
from galaxy_core.morphology.statistics import features_batch

CHUNK = 256  # images read from the dataset per step


@dataclass(frozen=True)
class MorphologyFit:
    """`fit_on_split`'s result: the classifier and its probabilities (float32 (n, C)) on val and test."""

    classifier: MorphologyClassifier
    val_probs: np.ndarray
    test_probs: np.ndarray
    seconds: float


def split_statistics(source, indices: np.ndarray, what: str, progress: bool = True) -> np.ndarray:
    """Morphology statistics float32 `(len(indices), N_FEATURES)` of rows of an open Galaxy10 file."""
    rows = []
    with progress_bar(len(indices), desc=f"morphology ({what})", unit="img", disable=not progress) as bar:
        for _, images in source.iter_chunks(indices, chunk_size=CHUNK):
            rows.append(features_batch(images))
            bar.update(len(images))
    return np.concatenate(rows) if rows else features_batch([])


def fit_on_split(data_path: str | Path, split, labels: np.ndarray, cfg: Config,
                 progress: bool = True) -> MorphologyFit:
    """Fit the morphology classifier on `split.train` and predict `split.val` and `split.test`.

    Args:
        data_path: the run's Galaxy10-format file.
        split: a `galaxy_core.data.split.Split` (int64 row indices `train`, `val`, `test`).
        labels: int `(N,)` labels of the whole dataset.
        cfg: the run's Config (`num_classes`, `seed`).
        progress: a tqdm bar per split on stderr.
    """
    started = time.perf_counter()
    with open_dataset(data_path) as source:
        train_stats = split_statistics(source, split.train, "train", progress)
        test_stats = split_statistics(source, split.test, "test", progress)
        val_stats = split_statistics(source, split.val, "val", progress)
    classifier = MorphologyClassifier.fit(train_stats, labels[split.train], cfg.num_classes, seed=cfg.seed)
    return MorphologyFit(classifier, classifier.predict_features(val_stats),
                         classifier.predict_features(test_stats), time.perf_counter() - started)
