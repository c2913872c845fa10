"""Tests of galaxy_core.inference.probabilities: the uint8 -> model input mapping and batched
probabilities, plain and with TTA."""

import numpy as np
import pytest

from galaxy_core.errors import PreprocessError
from galaxy_core.inference.probabilities import predict_probs, to_model_input


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
