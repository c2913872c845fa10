"""Grad-CAM++: Grad-CAM with per-location weights from higher-order gradient terms.

Reference: Chattopadhyay et al. 2018 (arXiv:1710.11063). Same definition as tf-keras-vis 0.8.7
`GradcamPlusPlus`. tf-keras-vis multiplies every derivative by exp(score); that factor cancels in
the alphas and only scales the map, which the per-image normalisation removes, so it is left out
here (it also overflows to NaN for linear scores above ~88).
"""

from __future__ import annotations

import numpy as np

from galaxy_core.explain.gradcam import _cam


def gradcam_plus_plus_map(model, images, class_indices, layer: str | None = None, *,
                          batch_size: int = 16, engine: str = "compiled") -> np.ndarray:
    """Grad-CAM++ heatmaps; arguments and result as in `gradcam_map`. float32 (N, S, S) in [0, 1]."""
    return _cam(model, images, class_indices, layer, batch_size, engine, gradcam_plus_plus_weights,
                "gradcam_plus_plus")


def gradcam_plus_plus_weights(features: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Grad-CAM++ at feature resolution. (N,h,w,K) features and gradients -> (N,h,w) float32."""
    g2, g3 = grads ** 2, grads ** 3
    global_sum = features.sum(axis=(1, 2), keepdims=True)  # (N, 1, 1, K)
    denom = 2.0 * g2 + g3 * global_sum
    alphas = g2 / np.where(g2 == 0.0, 1.0, denom + (denom == 0.0))
    norm = alphas.sum(axis=(1, 2), keepdims=True)
    alphas = alphas / np.where(norm == 0.0, 1.0, norm)
    weights = (np.maximum(grads, 0.0) * alphas).sum(axis=(1, 2), keepdims=True)  # (N, 1, 1, K)
    return np.maximum((weights * features).sum(axis=-1), 0.0).astype(np.float32)
