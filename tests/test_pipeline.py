"""Input pipeline from a uint8 memmap: shapes, dtypes, one-hot labels, shuffling, no augmentation."""

import numpy as np
import pytest

from galaxy_core.config import Config
from galaxy_core.training.pipeline import make_dataset
from galaxy_core.inference.probabilities import to_model_input


@pytest.fixture
def cache(tmp_path):
    n, size = 50, 32
    images = np.lib.format.open_memmap(tmp_path / "images.npy", mode="w+", dtype=np.uint8,
                                       shape=(n, size, size, 3))
    images[:] = np.random.default_rng(0).integers(0, 256, images.shape, dtype=np.uint8)
    images.flush()
    labels = np.arange(n) % 10
    return np.load(tmp_path / "images.npy", mmap_mode="r"), labels


def _collect(dataset):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(xs), np.concatenate(ys)


def test_validation_batches_exact_values_order_and_one_hot(cache):
    images, labels = cache
    cfg = Config(image_size=32, batch_size=8)
    indices = np.array([3, 1, 40, 7, 22, 9, 30, 31, 32, 5, 11])
    dataset = make_dataset(images, labels, indices, cfg, training=False)
    assert int(dataset.cardinality()) == 2
    x, y = _collect(dataset)
    assert x.dtype == np.float32 and x.shape == (11, 32, 32, 3)
    assert y.dtype == np.float32 and y.shape == (11, 10)
    # No augmentation and the same math as the numpy twin: bit-identical.
    np.testing.assert_array_equal(x, to_model_input(np.asarray(images[indices])))
    np.testing.assert_array_equal(y.argmax(1), labels[indices])
    np.testing.assert_array_equal(y.sum(1), np.ones(11))
    x2, _ = _collect(dataset)
    np.testing.assert_array_equal(x, x2)  # same order every epoch


def test_training_shuffles_each_epoch_and_covers_every_row_once(cache):
    images, labels = cache
    cfg = Config(image_size=32, batch_size=16, seed=7)
    indices = np.arange(0, 50, 2)
    dataset = make_dataset(images, labels, indices, cfg, training=True)
    epochs = [_collect(dataset) for _ in range(2)]
    flat = images.reshape(len(images), -1)
    for x, y in epochs:
        # Identify each delivered image by its pixels: every training row exactly once.
        rows = [int(np.flatnonzero((flat == (xi * 255).round().astype(np.uint8).ravel()).all(1))[0])
                for xi in x]
        assert sorted(rows) == indices.tolist()
        np.testing.assert_array_equal(y.argmax(1), labels[rows])
    assert not np.array_equal(epochs[0][0], epochs[1][0])  # reshuffled


def test_rejects_wrong_image_size(cache):
    images, labels = cache
    with pytest.raises(ValueError, match="image_size"):
        make_dataset(images, labels, np.arange(5), Config(image_size=64), training=False)
