"""Classification of items: decode, preprocess, predict, blend with the morphology classifier, top-k.

The one path from image files, encoded images or arrays to a run's probabilities, shared by the CLI
(`galaxy_core.predict.classify_files`), the app's Classify page (`pages/lib/uploads.py`, with
`parts=True`) and a batch runner over many workers (one `models.predictor.make_predictor` per worker,
then `classify_each` per batch of items).

- `prepare_item(item, cfg, statistics)`: decode one item -> model input (and morphology statistics).
- `classify_each(model, cfg, items, morphology=..., parts=...)`: decode + classify, one error per
  bad item (probabilities from `galaxy_core.inference.probabilities.predict_probs`, TTA from
  `galaxy_core.inference.tta`).
- `blend_with_morphology(...)`: THE blend with the morphology classifier
  (`galaxy_core.morphology.classifier.blend_probs`, weight `cfg.morphology_weight`).
- `top_k(probs, class_names, k)`: the k most probable classes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from galaxy_core.config import Config
from galaxy_core.errors import GalaxyError
from galaxy_core.inference.probabilities import predict_probs
from galaxy_core.morphology.statistics import morphology_features
from galaxy_core.preprocessing.preprocess import preprocess_image


@dataclass(frozen=True)
class ItemResult:
    """One item classified by `classify_each(..., parts=True)`.

    Attributes:
        probs: float32 `(C,)` the run's probabilities (blended for a blended run), or None on error.
        error: the item's error message, or None.
        input: uint8 `(S, S, 3)` the preprocessed image the model saw, or None on error.
        probs_cnn, probs_morphology: float32 `(C,)` the two parts `probs` blends (None unless the
            item was classified with a morphology classifier).
    """

    probs: np.ndarray | None
    error: str | None
    input: np.ndarray | None = None
    probs_cnn: np.ndarray | None = None
    probs_morphology: np.ndarray | None = None


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
                  tta: bool = False, morphology=None, parts: bool = False) -> list:
    """Classify image files, encoded images or arrays, keeping each item's failure to itself.

    Every item is decoded (`decode.read_image` for a path or bytes; an array is taken as it is) and
    preprocessed with `cfg` (`prepare_item`); one that fails gets its message, the others go to the
    model in one `predict_probs` call. The CLI (`predict.classify_files`) and the app's Classify page
    share this.

    Args:
        model: a Keras model or a `galaxy_core.inference.predictor.Predictor`.
        items: paths (str / PathLike), bytes of an image file, or uint8 arrays of any size.
        morphology: the run's `galaxy_core.morphology.classifier.MorphologyClassifier`, or None: its
            probabilities of each decoded image's statistics (`morphology.morphology_features`,
            measured per item, so an image they refuse is that item's error) are blended with the
            CNN's with weight `cfg.morphology_weight` (`blend_with_morphology`).
        parts: also keep what a display needs: each item's model input and, when blended, the CNN's
            and the morphology classifier's probabilities.

    Returns:
        Per item, in order: `(float32 (C,) probabilities, None)` or `(None, error message)`; with
        `parts=True` an `ItemResult` per item instead.
    """
    blend = morphology is not None and cfg.blended
    ready, stats, errors = [], [], {}
    for i, item in enumerate(items):
        try:
            model_input, statistics = prepare_item(item, cfg, blend)
        except (GalaxyError, ValueError) as err:
            errors[i] = str(err)
        else:
            ready.append(model_input)
            stats.append(statistics)
    cnn = predict_probs(model, np.stack(ready), batch_size=batch_size, tta=tta) if ready else None
    statistics = np.stack(stats) if blend and ready else None
    morph, probs = _blend_parts(cnn, morphology if blend else None, cfg, statistics)
    results, k = [], 0
    for i in range(len(items)):
        if i in errors:
            results.append(ItemResult(None, errors[i]))
            continue
        parts_of = (cnn[k], morph[k]) if morph is not None else (None, None)
        results.append(ItemResult(probs[k], None, ready[k], *parts_of))
        k += 1
    return results if parts else [(r.probs, r.error) for r in results]


def blend_with_morphology(cnn_probs: np.ndarray, morphology, cfg: Config,
                          statistics: np.ndarray) -> np.ndarray:
    """The run's final probabilities: the CNN's blended with the morphology classifier's.

    Args:
        cnn_probs: float32 `(N, C)` CNN probabilities.
        morphology: a `galaxy_core.morphology.classifier.MorphologyClassifier` (None: `cnn_probs` as is).
        cfg: the run's Config (`morphology_weight`; `cfg.blended` False: `cnn_probs` as is).
        statistics: float32 `(N, N_FEATURES)` morphology statistics of the same N images, measured
            on the raw cutouts (`morphology.features_batch`), not on the model input.

    Returns:
        float32 `(N, C)`: `(1 - w) cnn + w morphology` with `w = cfg.morphology_weight`.
    """
    return _blend_parts(cnn_probs, morphology, cfg, statistics)[1]


def _blend_parts(cnn_probs, morphology, cfg: Config, statistics):
    """`(morphology probabilities or None, final probabilities)`: the one route to the blend formula."""
    if cnn_probs is None:
        return None, None
    if morphology is None or not cfg.blended:
        return None, np.asarray(cnn_probs, np.float32)
    from galaxy_core.morphology.classifier import blend_probs

    morph = morphology.predict_features(statistics)
    return morph, blend_probs(cnn_probs, morph, cfg.morphology_weight)


def top_k(probs: Sequence[float], class_names: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The k most probable classes, most probable first: `[(name, probability), ...]`.

    Ties keep class order (stable sort). Example:
        >>> top_k([0.1, 0.7, 0.2], ["a", "b", "c"], 2)
        [('b', 0.7), ('c', 0.2)]
    """
    order = np.argsort(-np.asarray(probs), kind="stable")[:k]
    return [(class_names[i], float(probs[i])) for i in order]
