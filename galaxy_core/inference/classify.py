"""Inference: uint8 images -> model input, batched class probabilities (optionally with TTA), top-k.

Everything here is numpy on top of a Keras model's `predict_on_batch`; the module never imports
TensorFlow itself.

- `to_model_input(images)`: THE uint8 -> float32 [0, 1] mapping of the project (`x * float32(1/255)`,
  the same product as the tf.data pipeline's, so both give identical bits).
- `dihedral_transforms(images)`: the 8 rotations/flips used for test-time augmentation (TTA).
- `predict_probs(model, images, ...)`: probabilities `float32 (N, C)`, in batches, plain or TTA.
- `classify_images(model, cfg, images)`: preprocess raw images as in training, then `predict_probs`.
- `prepare_item(item, cfg, statistics)`: decode one item -> model input (and morphology statistics).
- `classify_each(model, cfg, items, morphology=...)`: decode + classify, one error per bad item.
- `blend_with_morphology(...)`: average with the morphology classifier (`galaxy_core.morphology.classifier`).
- `top_k(probs, class_names, k)`: the k most probable classes.

Example:
    >>> import numpy as np
    >>> to_model_input(np.array([[0, 51, 255]], np.uint8))
    array([[0. , 0.2, 1. ]], dtype=float32)
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from galaxy_core.config import Config
from galaxy_core.errors import GalaxyError, PreprocessError
from galaxy_core.io import progress as _progress
from galaxy_core.morphology.statistics import morphology_features
from galaxy_core.preprocessing.preprocess import INVERSE_255, preprocess_batch, preprocess_image


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


def dihedral_transforms(images: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations/flips of a batch: rot90 by k = 0..3, each without and with a left-right flip.

    Args:
        images: `(N, H, W, ...)` array with H == W.

    Returns:
        8 arrays of the same shape and dtype; the first one is the input itself.
    """
    out = []
    for k in range(4):
        rotated = np.rot90(images, k, axes=(1, 2))
        out.append(np.ascontiguousarray(rotated))
        out.append(np.ascontiguousarray(rotated[:, :, ::-1]))
    return out


def predict_probs(model, images: np.ndarray, batch_size: int = 64, tta: bool = False,
                  progress: bool = False) -> np.ndarray:
    """Class probabilities of a softmax model, in batches.

    Args:
        model: Keras model taking float32 `(B, S, S, 3)` in [0, 1] and returning softmax `(B, C)`.
        images: `(N, S, S, 3)` uint8 (mapped by `to_model_input`) or float32 already in [0, 1]; a
            numpy memmap or an h5py dataset works (it is read one batch at a time).
        batch_size: images per model call.
        tta: if True, return the mean of the probabilities over the 8 dihedral transforms
            (4 rotations x optional flip) of every image; costs 8 model calls per batch.
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


def classify_images(model, cfg: Config, images: Sequence[np.ndarray], batch_size: int = 64,
                    tta: bool = False) -> np.ndarray:
    """Preprocess images as in training and classify them.

    Args:
        model: the run's Keras model ([0, 1] input, softmax output).
        cfg: the run's Config (preprocessing parameters, image size).
        images: list of images of any size/layout `preprocess_image` accepts (e.g. uint8 RGB
            `(H, W, 3)` from `galaxy_core.preprocessing.decode.read_image`).
        batch_size: images per model call.
        tta: average over the 8 rotations/flips.

    Returns:
        float32 `(N, num_classes)` probabilities.
    """
    if len(images) == 0:
        return np.zeros((0, cfg.num_classes), np.float32)
    batch = preprocess_batch(list(images), cfg)  # uint8 (N, S, S, 3)
    return predict_probs(model, batch, batch_size=batch_size, tta=tta)


def decode_side(cfg: Config) -> int:
    """The shorter side a decoded image must keep for this run (`decode.read_image(min_side=...)`).

    Twice what preprocessing shrinks it to: the model's `image_size`, or 256 px (the morphology
    statistics' working size) if larger, so that the CNN sees the same pixels with or without the
    statistics; divided by `crop_min_fraction` when the run crops (the crop may be that small a
    part of the image). A large JPEG is then decoded at 1/2, 1/4 or 1/8 size, any other large
    image shrunk right after decoding: bounded memory per image.
    """
    need = max(int(cfg.image_size), 256)
    if cfg.crop_scale > 0:
        need = need / cfg.crop_min_fraction
    return int(math.ceil(2 * need))


def prepare_item(item: Any, cfg: Config, statistics: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode one item and make what the run's models take from it.

    Args:
        item: a path (str / PathLike), the bytes of an image file, or an array of any size/layout
            `preprocess_image` accepts.
        cfg: the run's Config.
        statistics: also measure the morphology statistics of the decoded image (for a run with a
            morphology classifier); only these 67 numbers are kept, not the decoded image.

    Returns:
        `(uint8 (S, S, 3) model input, float32 (N_FEATURES,) statistics or None)`.

    Raises:
        GalaxyError / ValueError: the item cannot be decoded or preprocessed (the message says why).
    """
    from galaxy_core.preprocessing.decode import read_image

    encoded = isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview))
    image = read_image(item, min_side=decode_side(cfg)) if encoded else np.asarray(item)
    model_input = preprocess_image(image, cfg)
    return model_input, (morphology_features(image) if statistics else None)


def classify_each(model, cfg: Config, items: Sequence[Any], batch_size: int = 64,
                  tta: bool = False, morphology=None) -> list[tuple[np.ndarray | None, str | None]]:
    """Classify image files, encoded images or arrays, keeping each item's failure to itself.

    Every item is decoded (`decode.read_image` for a path or bytes; an array is taken as it is) and
    preprocessed with `cfg`; one that fails gets its message, the others go to the model in one
    `predict_probs` call. The CLI (`predict.classify_files`) and the scoring of labelled images
    (`scoring.score_images`) share this.

    Args:
        items: paths (str / PathLike), bytes of an image file, or uint8 arrays of any size.
        morphology: the run's `galaxy_core.morphology.classifier.MorphologyClassifier`, or None: its
            probabilities of each decoded image's statistics (`morphology.morphology_features`,
            measured per item, so an image they refuse is that item's error) are blended with the
            CNN's with weight `cfg.morphology_weight` (`blend_with_morphology`).

    Returns:
        Per item, in order: `(float32 (C,) probabilities, None)` or `(None, error message)`.
    """
    ready, stats, errors = [], [], {}
    for i, item in enumerate(items):
        try:
            model_input, statistics = prepare_item(item, cfg, morphology is not None)
        except (GalaxyError, ValueError) as err:
            errors[i] = str(err)
        else:
            ready.append(model_input)
            stats.append(statistics)
    probs = predict_probs(model, np.stack(ready), batch_size=batch_size, tta=tta) if ready else []
    if ready and morphology is not None:
        probs = blend_with_morphology(probs, morphology, cfg, np.stack(stats))
    probs = iter(probs)
    return [(None, errors[i]) if i in errors else (next(probs), None) for i in range(len(items))]


def blend_with_morphology(cnn_probs: np.ndarray, morphology, cfg: Config,
                          statistics: np.ndarray) -> np.ndarray:
    """The run's final probabilities: the CNN's blended with the morphology classifier's.

    Args:
        cnn_probs: float32 `(N, C)` CNN probabilities.
        morphology: a `galaxy_core.morphology.classifier.MorphologyClassifier` (None: `cnn_probs` as is).
        cfg: the run's Config (`morphology_weight`).
        statistics: float32 `(N, N_FEATURES)` morphology statistics of the same N images, measured
            on the raw cutouts (`morphology.features_batch`), not on the model input.

    Returns:
        float32 `(N, C)`: `(1 - w) cnn + w morphology` with `w = cfg.morphology_weight`.
    """
    if morphology is None or cfg.morphology_weight == 0:
        return np.asarray(cnn_probs, np.float32)
    from galaxy_core.morphology.classifier import blend_probs

    return blend_probs(cnn_probs, morphology.predict_features(statistics), cfg.morphology_weight)


def top_k(probs: Sequence[float], class_names: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The k most probable classes, most probable first: `[(name, probability), ...]`.

    Ties keep class order (stable sort). Example:
        >>> top_k([0.1, 0.7, 0.2], ["a", "b", "c"], 2)
        [('b', 0.7), ('c', 0.2)]
    """
    order = np.argsort(-np.asarray(probs), kind="stable")[:k]
    return [(class_names[i], float(probs[i])) for i in order]
