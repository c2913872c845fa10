"""Explain one image: the maps of every method of `registry.METHODS` for one class, and their faithfulness.

The service behind the app's Explain-errors view and any CLI that explains a single galaxy: one
call per question, so callers never loop over the techniques themselves.

Example:
    >>> maps = explain_image(model, image_uint8, class_index=5)          # doctest: +SKIP
    >>> sorted(maps), maps["gradcam"].shape                              # doctest: +SKIP
    (['gradcam', 'gradcam_plus_plus', 'saliency', 'smoothgrad'], (256, 256))
    >>> score_maps(model, image_uint8, maps, class_index=5, steps=10)   # doctest: +SKIP
    {'saliency': (0.21, 0.64), ...}
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from galaxy_core.errors import ExplainError
from galaxy_core.explain.registry import check_methods, get_method, method_names


def _one(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ExplainError(f"explain_image takes one image (S, S, 3); got shape {image.shape}. "
                           "Pass images[i], not the whole batch.")
    return image[None]


def explain_image(model, image: np.ndarray, class_index: int, methods: Sequence[str] | None = None,
                  smooth_samples: int = 20, seed: int | None = 0) -> dict[str, np.ndarray]:
    """The maps of one image for one class.

    Args:
        model: a flat Keras classifier (see `galaxy_core.explain.check_model`).
        image: uint8 `(S, S, 3)` preprocessed image (or float32 in [0, 1]).
        class_index: the class to explain (e.g. the predicted one).
        methods: names of `registry.METHODS` (None: all, in the table's order).
        smooth_samples, seed: the run settings the methods take (SmoothGrad's noise samples and
            seed; use the run's, so maps match the stored ones).

    Returns:
        `{method: float32 (S, S) in [0, 1]}` in `methods` order.
    """
    methods = check_methods(method_names() if methods is None else methods)
    x, classes = _one(image), np.array([int(class_index)])
    settings = {"smooth_samples": int(smooth_samples), "seed": seed}
    return {m: get_method(m).bind(**settings)(model, x, classes)[0] for m in methods}


def score_maps(model, image: np.ndarray, maps: Mapping[str, np.ndarray], class_index: int,
               steps: int = 20) -> dict[str, tuple[float, float]]:
    """Deletion and insertion areas of each map of one image, in one batched call.

    Args:
        image: uint8 `(S, S, 3)` (or float32 in [0, 1]); maps: `{method: (S, S)}`.

    Returns:
        `{method: (deletion, insertion)}` (deletion: lower is better; insertion: higher is better).
    """
    from galaxy_core.explain.faithfulness import faithfulness_scores

    names = list(maps)
    if not names:
        return {}
    x = np.repeat(_one(image), len(names), axis=0)
    found = faithfulness_scores(model, x, np.stack([maps[m] for m in names]),
                                np.full(len(names), int(class_index)), steps=steps)
    return {m: (float(found["deletion"][i]), float(found["insertion"][i])) for i, m in enumerate(names)}
