"""Shared test setup: quiet TensorFlow, no GPU, and small Galaxy10-format files made on the spot."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

from pathlib import Path  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def write_galaxy10_like(path, n=40, size=32, seed=0, labels=None, **overrides):
    """Write a Galaxy10-format HDF5 file of random images (format only, not learnable).

    Args:
        path: where to write.
        n: number of images.
        size: image side in pixels.
        seed: RNG seed.
        labels: optional int array of length n (default: every class, cycling).
        overrides: replace a dataset by name (e.g. `ans=np.array(...)`), or drop it with None.

    Returns:
        The path written.
    """
    rng = np.random.default_rng(seed)
    data = {
        "images": rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8),
        "ans": (np.arange(n) % 10 if labels is None else np.asarray(labels)).astype(np.uint8),
        "ra": rng.uniform(0, 360, n),
        "dec": rng.uniform(-20, 60, n),
        "redshift": rng.uniform(0.01, 0.2, n),
        "pxscale": np.full(n, 0.262),
    }
    data.update(overrides)
    with h5py.File(path, "w") as f:
        for key, value in data.items():
            if value is not None:
                f.create_dataset(key, data=value)
        f.attrs["synthetic"] = True
    return Path(path)


@pytest.fixture
def galaxy10_file(tmp_path):
    """A 40-image, 32x32 Galaxy10-format file of random pixels (every class 4 times)."""
    return write_galaxy10_like(tmp_path / "tiny.h5")
