"""Tests of galaxy_core.inference.classify: items -> probabilities (decode, preprocess, predict, blend) and top-k."""

import numpy as np
import pytest

from galaxy_core.config import Config
from galaxy_core.inference.classify import ItemResult, blend_with_morphology, classify_each, top_k
from galaxy_core.inference.probabilities import to_model_input


def test_classify_each_preprocesses_like_training(orientation_model):
    from galaxy_core.preprocessing.preprocess import preprocess_batch

    cfg = Config(image_size=32, weights="none")
    rng = np.random.default_rng(4)
    raw = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), rng.integers(0, 256, (32, 32), dtype=np.uint8)]
    expected = orientation_model().predict_on_batch(to_model_input(preprocess_batch(raw, cfg)))
    got = classify_each(orientation_model(), cfg, raw)
    assert [error for _, error in got] == [None, None]
    np.testing.assert_allclose(np.stack([probs for probs, _ in got]), expected, rtol=1e-6)
    assert classify_each(orientation_model(), cfg, []) == []


def test_top_k_order_and_ties():
    assert top_k([0.1, 0.7, 0.2], ["a", "b", "c"], 2) == [("b", pytest.approx(0.7)), ("c", pytest.approx(0.2))]
    assert [name for name, _ in top_k([0.25, 0.25, 0.5], ["a", "b", "c"], 3)] == ["c", "a", "b"]  # stable


class FixedMorphology:
    """A stand-in morphology classifier: the same probabilities for every image; records the statistics."""

    def __init__(self, row):
        self.row, self.seen = np.asarray(row, np.float32), []

    def predict_features(self, statistics):
        self.seen.extend(statistics)
        return np.tile(self.row, (len(statistics), 1))


def test_classify_each_blends_the_morphology_classifier_on_the_raw_images(orientation_model):
    from galaxy_core.morphology.statistics import morphology_features
    from galaxy_core.preprocessing.preprocess import preprocess_image

    cfg = Config(image_size=32, weights="none", class_names=("a", "b", "c", "d"), morphology_weight=0.25)
    rng = np.random.default_rng(5)
    raw = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
           rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), rng.integers(0, 256, (20, 20), dtype=np.uint8)]
    morph = FixedMorphology([1.0, 0.0, 0.0, 0.0])
    cnn = [p for p, _ in classify_each(orientation_model(), cfg, raw)]
    items = [raw[0], b"not an image", raw[1], np.zeros((9, 9, 2), np.uint8), raw[2], raw[3]]
    got = classify_each(orientation_model(), cfg, items, morphology=morph)
    # Bad items keep their own error; tiny and grayscale images are classified like the others.
    assert [probs is None for probs, _ in got] == [False, True, False, True, False, False]
    for (probs, _), expected in zip([got[0], got[2], got[4], got[5]], cnn):
        np.testing.assert_allclose(probs, 0.75 * expected + 0.25 * morph.row, rtol=1e-6)
    # The statistics are measured on the decoded images as they are, not on the 32 px model input.
    np.testing.assert_array_equal(np.stack(morph.seen), np.stack([morphology_features(im) for im in raw]))
    assert not np.allclose(morph.seen[0], morphology_features(preprocess_image(raw[0], cfg)))
    # Weight 0 (or no classifier): the CNN alone.
    plain = Config(image_size=32, weights="none", class_names=("a", "b", "c", "d"))
    stats = np.stack(morph.seen)
    np.testing.assert_array_equal(blend_with_morphology(np.stack(cnn), morph, plain, stats), np.stack(cnn))
    np.testing.assert_array_equal(blend_with_morphology(np.stack(cnn), None, cfg, stats), np.stack(cnn))


def test_classify_each_parts_keep_the_inputs_and_both_halves_of_the_blend(orientation_model):
    from galaxy_core.preprocessing.preprocess import preprocess_image

    cfg = Config(image_size=32, weights="none", class_names=("a", "b", "c", "d"), morphology_weight=0.25)
    rng = np.random.default_rng(6)
    raw = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)]
    morph = FixedMorphology([0.0, 0.0, 1.0, 0.0])
    got = classify_each(orientation_model(), cfg, [raw[0], b"junk", raw[1]], morphology=morph, parts=True)
    assert all(isinstance(r, ItemResult) for r in got)
    assert got[1].error and got[1].probs is None and got[1].input is None and got[1].probs_cnn is None
    plain = classify_each(orientation_model(), cfg, raw, morphology=morph)  # the tuple form, same blend
    for r, image, (probs, _) in zip([got[0], got[2]], raw, plain):
        np.testing.assert_array_equal(r.input, preprocess_image(image, cfg))  # what the model saw
        np.testing.assert_allclose(r.probs_morphology, morph.row)
        np.testing.assert_allclose(r.probs, 0.75 * r.probs_cnn + 0.25 * r.probs_morphology, rtol=1e-6)
        np.testing.assert_allclose(r.probs, probs, rtol=1e-6)
    # The CNN alone (no classifier, or weight 0): no parts, and probs are the CNN's.
    alone = classify_each(orientation_model(), cfg.replace(morphology_weight=0.0), raw, morphology=morph, parts=True)
    assert all(r.probs_cnn is None and r.probs_morphology is None for r in alone)
    np.testing.assert_allclose(alone[0].probs, got[0].probs_cnn, rtol=1e-6)
