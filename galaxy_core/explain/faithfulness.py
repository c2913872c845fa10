"""Faithfulness of a heatmap: deletion and insertion curves (Petsiuk et al. 2018, RISE).

Pixels are ranked by the heatmap (most salient first). Deletion replaces the top fraction
`k / steps` of pixels by the baseline, for k = 0..steps; insertion starts from the baseline image
and puts the top fraction of the original pixels back. At each step the model's probability of the
explained class is recorded; the score is the area under that curve (trapezoid rule, x in [0, 1]).
A faithful map makes the probability fall fast under deletion (low area: lower is better) and rise
fast under insertion (high area: higher is better).

Baseline: 0.0 in the model's [0, 1] input space, i.e. black, the background the model saw in
training (the sky around the galaxies is near black after preprocessing, and the augmentation
layers fill the corners they rotate or zoom in with the constant 0). Any float or an array
broadcastable to the image (e.g. a blurred copy) can be passed instead.

All steps of all images go through the model `batch_size` masked images at a time.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import cv2

from galaxy_core.explain._engine import check_classes, check_images, model_functions
from galaxy_core.errors import ExplainError

DEFAULT_BASELINE = 0.0  # black in [0, 1] input space: see the module docstring


def pixel_ranks(heatmap: np.ndarray) -> np.ndarray:
    """Rank of every pixel of a (H, W) map, 0 = most salient. int64 (H*W,).

    Ties (e.g. the zero areas of Grad-CAM maps after the ReLU) are broken in a fixed pseudo-random
    order, not in raster order, which would remove the top rows of the image first and bias the
    scores by where the galaxy sits. The order depends only on the map's size: repeatable.
    """
    values = np.asarray(heatmap, np.float32).ravel()
    tie_break = np.random.default_rng(values.size).permutation(values.size)
    order = np.lexsort((tie_break, -values))  # by value (descending), then by the fixed shuffle
    ranks = np.empty_like(order)
    ranks[order] = np.arange(order.size)
    return ranks


def curve_area(curve: np.ndarray) -> np.ndarray:
    """Area under curves sampled at x = linspace(0, 1, steps + 1). (..., steps+1) -> (...,) float32."""
    curve = np.asarray(curve, np.float64)
    x = np.linspace(0.0, 1.0, curve.shape[-1])
    return np.trapezoid(curve, x=x, axis=-1).astype(np.float32)


def faithfulness_curves(model, images, heatmaps, class_indices, steps: int = 20,
                        baseline=DEFAULT_BASELINE, batch_size: int = 32,
                        modes: tuple[str, ...] = ("deletion", "insertion")):
    """Deletion and insertion curves.

    Args:
        model: keras.Model with softmax output (see `check_model`).
        images: float32 [0, 1] or uint8, (N, S, S, 3).
        heatmaps: (N, H, W) maps (any float range; resized to S x S if needed).
        class_indices: int (N,): the class whose probability is tracked.
        steps: number of steps (the curves have steps + 1 points).
        baseline: fill value in [0, 1] space (float or array broadcastable to (S, S, 3)).
        batch_size: masked images per model call.
        modes: which curves to compute.

    Returns:
        (deletion, insertion): float32 (N, steps + 1) class probabilities (None for a mode not
        asked for).
    """
    unknown = set(modes) - {"deletion", "insertion"}
    if unknown or not modes:
        raise ExplainError(f"modes must be 'deletion' and/or 'insertion'; got {modes}.")
    mode_ids = [m for m, name in enumerate(("deletion", "insertion")) if name in modes]
    if steps < 1:
        raise ExplainError(f"steps must be >= 1; got {steps}.")
    if batch_size < 1:
        raise ExplainError(f"batch_size must be >= 1; got {batch_size}.")
    probs_fn = model_functions(model).probs_fn()  # model checks first
    x = check_images(model, images)
    classes = check_classes(model, class_indices, len(x))
    n, size = len(x), x.shape[1:3]
    heatmaps = np.asarray(heatmaps, np.float32)
    if heatmaps.ndim != 3 or len(heatmaps) != n:
        raise ExplainError(f"heatmaps must be (N, H, W) with N = {n}; got shape {heatmaps.shape}.")
    try:
        fill = np.broadcast_to(np.asarray(baseline, np.float32), x.shape[1:])
    except ValueError:
        raise ExplainError(f"baseline must be a float or broadcastable to {x.shape[1:]}; "
                           f"got shape {np.shape(baseline)}.") from None
    ranks = np.stack([pixel_ranks(_fit(h, size)) for h in heatmaps]) if n else np.zeros((0, 1), np.int64)
    counts = np.rint(np.arange(steps + 1) * (size[0] * size[1]) / steps).astype(np.int64)

    # Job j = (image, step, mode): mode 0 deletion, 1 insertion; (steps + 1) jobs per image and mode.
    jobs = np.stack(np.meshgrid(np.arange(n), np.arange(steps + 1), mode_ids, indexing="ij"),
                    axis=-1).reshape(-1, 3)
    out = np.empty(len(jobs), np.float32)
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start:start + batch_size]
        img, step, mode = batch[:, 0], batch[:, 1], batch[:, 2]
        # (b, S*S) True where the pixel is among the top `counts[step]` of its map.
        top = ranks[img] < counts[step][:, None]
        keep_original = np.where(mode[:, None] == 0, ~top, top).reshape(-1, *size, 1)
        masked = np.where(keep_original, x[img], fill)
        probs = probs_fn(tf.constant(masked, tf.float32)).numpy()
        out[start:start + len(batch)] = probs[np.arange(len(batch)), classes[img]]
    curves = out.reshape(n, steps + 1, len(mode_ids))
    found = dict(zip(mode_ids, np.moveaxis(curves, -1, 0)))
    return found.get(0), found.get(1)


def faithfulness_scores(model, images, heatmaps, class_indices, steps: int = 20,
                        baseline=DEFAULT_BASELINE, batch_size: int = 32,
                        return_curves: bool = False) -> dict:
    """Deletion and insertion areas for a batch of maps.

    Returns:
        dict with `deletion` and `insertion`: float32 (N,) areas in [0, 1] (deletion: lower is
        better; insertion: higher is better); with `return_curves`, also `deletion_curve` and
        `insertion_curve` float32 (N, steps + 1).
    """
    deletion, insertion = faithfulness_curves(model, images, heatmaps, class_indices, steps,
                                              baseline, batch_size)
    result = {"deletion": curve_area(deletion), "insertion": curve_area(insertion)}
    if return_curves:
        result.update(deletion_curve=deletion, insertion_curve=insertion)
    return result


def deletion_score(model, image, heatmap, class_index: int, steps: int = 20,
                   baseline=DEFAULT_BASELINE, batch_size: int = 32) -> float:
    """Deletion area of one map (lower = more faithful). image (S, S, 3), heatmap (H, W)."""
    deletion, _ = faithfulness_curves(model, np.asarray(image)[None], np.asarray(heatmap)[None],
                                      [class_index], steps, baseline, batch_size, modes=("deletion",))
    return float(curve_area(deletion)[0])


def insertion_score(model, image, heatmap, class_index: int, steps: int = 20,
                    baseline=DEFAULT_BASELINE, batch_size: int = 32) -> float:
    """Insertion area of one map (higher = more faithful). image (S, S, 3), heatmap (H, W)."""
    _, insertion = faithfulness_curves(model, np.asarray(image)[None], np.asarray(heatmap)[None],
                                       [class_index], steps, baseline, batch_size, modes=("insertion",))
    return float(curve_area(insertion)[0])


def _fit(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if heatmap.shape == tuple(size):
        return heatmap
    return cv2.resize(heatmap, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
