"""Tests of galaxy_core.inference.classify: the uint8 -> model input mapping, TTA views, batched prediction,
classification of raw images and top-k."""

import numpy as np
import pytest

from galaxy_core.config import Config
from galaxy_core.errors import PreprocessError
from galaxy_core.inference.classify import classify_images, dihedral_transforms, predict_probs, to_model_input, top_k


def test_to_model_input_maps_uint8_to_unit_float32():
    out = to_model_input(np.array([[0, 51, 255]], dtype=np.uint8))
    assert out.dtype == np.float32 and out.shape == (1, 3)
    np.testing.assert_allclose(out, [[0.0, 0.2, 1.0]], rtol=1e-6)
    every = to_model_input(np.arange(256, dtype=np.uint8).reshape(16, 16))
    assert every.shape == (16, 16) and every.min() == 0.0 and every.max() == 1.0  # exactly 1.0 for 255
    np.testing.assert_array_equal(np.rint(every * 255).astype(int).ravel(), np.arange(256))
    # The same bits as the tf.data pipeline's float32(x) * float32(1/255) (and as the old rescale).
    np.testing.assert_array_equal(every, np.arange(256, dtype=np.float32).reshape(16, 16) * np.float32(1 / 255))


def test_to_model_input_float_passes_and_other_dtypes_are_refused():
    x = np.random.default_rng(0).random((2, 4, 4, 3))
    out = to_model_input(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x.astype(np.float32))
    with pytest.raises(PreprocessError, match="uint8"):
        to_model_input(np.zeros((2, 4, 4, 3), np.int64))  # 0..255 ints would silently be 255x too big


def test_dihedral_transforms_are_the_8_distinct_symmetries():
    x = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
    views = dihedral_transforms(x)
    assert len(views) == 8 and np.array_equal(views[0], x)
    assert len({v.tobytes() for v in views}) == 8
    assert np.array_equal(views[1][0, :, :, 0], np.fliplr(x[0, :, :, 0]))
    assert np.array_equal(views[2][0, :, :, 0], np.rot90(x[0, :, :, 0]))


def test_predict_probs_plain_and_tta_equal_manual_computation(orientation_model):
    OrientationModel = orientation_model
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    model = OrientationModel()
    plain = predict_probs(model, images, batch_size=2)
    expected = OrientationModel().predict_on_batch(images.astype(np.float32) / 255)
    assert plain.dtype == np.float32 and plain.shape == (5, 4)
    np.testing.assert_allclose(plain, expected, rtol=1e-6)
    assert [len(c) for c in model.calls] == [2, 2, 1]  # batched
    assert all(c.dtype == np.float32 and c.max() <= 1.0 for c in model.calls)

    tta = predict_probs(OrientationModel(), images, batch_size=3, tta=True)
    views = [np.rot90(images, k, axes=(1, 2)) for k in range(4)]
    views += [v[:, :, ::-1] for v in views]
    manual = np.mean([OrientationModel().predict_on_batch(v.astype(np.float32) / 255) for v in views], axis=0)
    np.testing.assert_allclose(tta, manual, rtol=1e-5, atol=1e-7)
    assert not np.allclose(tta, plain, atol=1e-3)  # the model really is orientation dependent
    np.testing.assert_allclose(tta.sum(1), 1.0, rtol=1e-5)


def test_predict_probs_float_input_and_bad_shapes(orientation_model):
    OrientationModel = orientation_model
    images = np.random.default_rng(2).random((3, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(predict_probs(OrientationModel(), images),
                               OrientationModel().predict_on_batch(images), rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        predict_probs(OrientationModel(), images[..., 0])
    assert predict_probs(OrientationModel(), images[:0]).shape == (0, 4)


def test_predict_probs_draws_a_tqdm_bar_only_when_asked(orientation_model, capsys):
    images = np.zeros((5, 8, 8, 3), np.uint8)
    predict_probs(orientation_model(), images, batch_size=2)
    assert capsys.readouterr().err == ""
    predict_probs(orientation_model(), images, batch_size=2, progress=True)
    err = capsys.readouterr().err
    assert "predict: 100%" in err and "3/3" in err


def test_classify_images_preprocesses_like_training(orientation_model):
    from galaxy_core.preprocessing.preprocess import preprocess_batch

    cfg = Config(image_size=32, weights="none")
    rng = np.random.default_rng(4)
    raw = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), rng.integers(0, 256, (32, 32), dtype=np.uint8)]
    expected = orientation_model().predict_on_batch(to_model_input(preprocess_batch(raw, cfg)))
    np.testing.assert_allclose(classify_images(orientation_model(), cfg, raw), expected, rtol=1e-6)
    assert classify_images(orientation_model(), cfg, []).shape == (0, cfg.num_classes)


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
    from galaxy_core.inference.classify import blend_with_morphology, classify_each
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
