"""Vanilla saliency and SmoothGrad: |d score / d pixel|, max over colour channels.

References: Simonyan et al. 2013 (arXiv:1312.6034); Smilkov et al. 2017, SmoothGrad
(arXiv:1706.03825). Same definitions as tf-keras-vis 0.8.7 `Saliency` (absolute gradient of the
linear class score, max over channels, per-image min-max normalisation; SmoothGrad noise sigma =
`noise * (max - min)` of each image).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from galaxy_core.explain._engine import (check_classes, check_engine, check_images, model_functions,
                                         normalize_maps, run_batched, run_tf_keras_vis)
from galaxy_core.errors import ExplainError


def saliency_map(model, images, class_indices, *, batch_size: int = 16,
                 engine: str = "compiled") -> np.ndarray:
    """Vanilla gradient saliency.

    Args:
        model: flat keras.Model, input float32 [0, 1] (S, S, 3), softmax output (see `check_model`).
        images: float32 in [0, 1] or uint8, shape (N, S, S, 3).
        class_indices: int (N,): the class to explain for each image (see `target_classes`).
        batch_size: images per gradient call.
        engine: "compiled" (default) or "tf-keras-vis" (the library itself, eager; reference).

    Returns:
        float32 (N, S, S) in [0, 1], each map scaled on its own (a constant map is all zeros).
    """
    check_engine(engine)
    functions = model_functions(model)
    x = check_images(model, images)
    classes = check_classes(model, class_indices, len(x))
    if engine == "tf-keras-vis":
        return _tfkv_saliency(functions, "saliency", x, classes, batch_size)
    (grads,) = run_batched(functions.saliency_fn(), (x, classes), batch_size)
    return normalize_maps(np.abs(grads).max(axis=-1))


def smoothgrad_map(model, images, class_indices, samples: int = 20, noise: float = 0.2, *,
                   batch_size: int = 16, seed: int | None = 0, engine: str = "compiled") -> np.ndarray:
    """SmoothGrad: the mean absolute gradient over `samples` noisy copies of each image.

    The noisy copies of all images go through the model `batch_size` at a time (tf-keras-vis
    instead runs one model call per sample). Noise is Gaussian with sigma `noise * (max - min)`
    of the image, not clipped (as in tf-keras-vis).

    Args:
        model, images, class_indices: as in `saliency_map`.
        samples: noisy copies per image (>= 1).
        noise: noise level relative to the image's value range (>= 0).
        batch_size: noisy images per gradient call.
        seed: noise seed (None: fresh noise each call). Ignored by the tf-keras-vis engine.
        engine: "compiled" or "tf-keras-vis".

    Returns:
        float32 (N, S, S) in [0, 1].
    """
    check_engine(engine)
    if samples < 1 or noise < 0:
        raise ExplainError(f"smoothgrad needs samples >= 1 and noise >= 0; got {samples}, {noise}.")
    functions = model_functions(model)
    x = check_images(model, images)
    classes = check_classes(model, class_indices, len(x))
    if engine == "tf-keras-vis":
        return _tfkv_saliency(functions, "smoothgrad", x, classes, batch_size, samples=samples, noise=noise)
    fn = functions.saliency_fn()
    rng = np.random.default_rng(seed)
    sigma = noise * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))  # (N,)
    total = np.zeros(x.shape, np.float32)
    owner = np.repeat(np.arange(len(x)), samples)  # noisy copy j belongs to image owner[j]
    for start in range(0, len(owner), batch_size):
        rows = owner[start:start + batch_size]
        noisy = x[rows] + rng.standard_normal(x[rows].shape, dtype=np.float32) * sigma[rows, None, None, None]
        grads = np.abs(fn(tf.constant(noisy), tf.constant(classes[rows])).numpy())
        np.add.at(total, rows, grads)
    return normalize_maps((total / samples).max(axis=-1))


def _tfkv_saliency(functions, method, x, classes, batch_size, samples=0, noise=0.2):
    return run_tf_keras_vis(functions.visualizer(method), x, classes, batch_size,
                            smooth_samples=samples, smooth_noise=noise, normalize_map=False)
