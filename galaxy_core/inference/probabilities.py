"""Model input and class probabilities: uint8 images -> float32 [0, 1] -> batched softmax, plain or TTA.

Everything here is numpy on top of a model's `predict_on_batch` (a Keras model, or a
`galaxy_core.inference.predictor.Predictor`); the module never imports TensorFlow itself.

- `to_model_input(images)`: THE uint8 -> float32 [0, 1] mapping of the project (`x * float32(1/255)`,
  the same product as the tf.data pipeline's, so both give identical bits).
- `predict_probs(model, images, ...)`: probabilities `float32 (N, C)`, in batches, plain or averaged
  over the 8 views of `galaxy_core.inference.tta.dihedral_transforms`.

Example:
    >>> import numpy as np
    >>> to_model_input(np.array([[0, 255]], np.uint8))
    array([[0., 1.]], dtype=float32)
"""

from __future__ import annotations

import numpy as np

from galaxy_core.errors import PreprocessError
from galaxy_core.inference.tta import dihedral_transforms
from galaxy_core.io import progress as _progress
from galaxy_core.preprocessing.preprocess import INVERSE_255


def to_model_input(images: np.ndarray) -> np.ndarray:
    """Images as the model takes them: float32 in [0, 1], same shape.

    uint8 pixels are multiplied by `float32(1/255)` (0 -> 0.0, 255 -> exactly 1.0; a product, not a
    division, bit for bit what `galaxy_core.training.pipeline` computes). Float input is taken as already in
    [0, 1] and returned as float32.

    Args:
        images: uint8 or float array of any shape, e.g. `(N, S, S, 3)`.

    Returns:
        float32 array of the same shape.

    Raises:
        PreprocessError: another dtype (e.g. int64 0..255: convert to uint8 first).

    Example:
        >>> to_model_input(np.full((1, 2, 2, 3), 255, np.uint8)).max()
        np.float32(1.0)
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return np.multiply(images, INVERSE_255, dtype=np.float32)
    if np.issubdtype(images.dtype, np.floating):
        return images.astype(np.float32, copy=False)
    raise PreprocessError(f"Model input must be uint8 (0..255) or float in [0, 1]; got dtype {images.dtype}. "
                          "Convert 8-bit pixels with images.astype(np.uint8), or preprocess them first "
                          "(galaxy_core.preprocessing.preprocess.preprocess_batch).")


def predict_probs(model, images: np.ndarray, batch_size: int = 64, tta: bool = False,
                  progress: bool = False) -> np.ndarray:
    """Class probabilities of a softmax model, in batches.

    Args:
        model: a Keras model or a `Predictor`, taking float32 `(B, S, S, 3)` in [0, 1] and returning
            softmax `(B, C)` from `predict_on_batch`.
        images: `(N, S, S, 3)` uint8 (mapped by `to_model_input`) or float32 already in [0, 1]; a
            numpy memmap or an h5py dataset works (it is read one batch at a time).
        batch_size: images per model call.
        tta: if True, return the mean of the probabilities over the 8 dihedral transforms
            (4 rotations x optional flip, `tta.dihedral_transforms`) of every image; costs 8 model
            calls per batch.
        progress: draw a tqdm bar on stderr (`galaxy_core.io.progress`).

    Returns:
        float32 `(N, C)`.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, S, S, 3); got {images.shape}")
    if tta and images.shape[1] != images.shape[2]:
        raise ValueError(f"TTA needs square images; got {images.shape[1]}x{images.shape[2]}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    n = len(images)
    starts = _progress(range(0, n, batch_size), desc="predict (TTA x8)" if tta else "predict",
                       unit="batch", disable=not progress)
    chunks = []
    for start in starts:
        batch = np.asarray(images[start:start + batch_size])
        if tta:
            # Transform before mapping to [0, 1] (cheaper on uint8); average the 8 probability maps.
            probs = np.mean([_predict_batch(model, to_model_input(view))
                             for view in dihedral_transforms(batch)], axis=0)
        else:
            probs = _predict_batch(model, to_model_input(batch))
        chunks.append(probs.astype(np.float32, copy=False))
    if not chunks:
        num_classes = int(model.output_shape[-1])
        return np.zeros((0, num_classes), np.float32)
    return np.concatenate(chunks, axis=0)


def _predict_batch(model, batch: np.ndarray) -> np.ndarray:
    # predict_on_batch runs the compiled inference function (no per-call Python graph walk).
    out = model.predict_on_batch(batch)
    return np.asarray(out, dtype=np.float32)
