"""Explanations of a trained classifier: saliency, SmoothGrad, Grad-CAM, Grad-CAM++, faithfulness.

One module per technique (tf-keras-vis style): `saliency` (vanilla saliency and SmoothGrad),
`gradcam`, `gradcam_plus_plus`, `faithfulness` (deletion / insertion), `analysis` (error
analysis on labels and probabilities), `overlay`, `store` (`explanations.h5`, and
`Explanations.lookup` of one stored image), `one_image` (`explain_image` / `score_maps`: the
service that explains one galaxy).

Every map function takes `(model, images float32 [0, 1] or uint8 (N, S, S, 3), class_indices (N,))`
and returns float32 `(N, S, S)` in [0, 1] (each map scaled on its own; a constant map is zeros).
The model must be flat (see `check_model`); otherwise ExplainError is raised before any work.
Compiled gradient functions are cached per model (see `_engine`); `engine="tf-keras-vis"` runs
tf-keras-vis 0.8.7 itself instead. The methods are the rows of `registry.METHODS` (one table: name,
display name, map function, run settings); `METHODS` maps their names to their map functions and
`ALL_METHODS` lists the names.
The TensorFlow-based functions are imported on first use, so reading `explanations.h5`, the
error-analysis helpers and `overlay` do not import TensorFlow.
"""

import importlib

# TensorFlow-free parts, imported eagerly (the app can read files and draw overlays without TF).
from galaxy_core.explain.analysis import (TARGETS, errors_by_pair, margins, misclassified,
                                          most_ambiguous, target_classes)
from galaxy_core.explain.overlay import colorize, overlay
from galaxy_core.explain.registry import describe_methods, get_method, method_label, method_names
from galaxy_core.explain.store import (Explanations, compute_explanations, load_explanations,
                                       save_explanations, select_rows)

# Parts that import TensorFlow, loaded on first use (PEP 562).
_LAZY = {
    "ENGINES": "_engine", "check_model": "_engine", "clear_cache": "_engine",
    "find_feature_layer": "_engine", "normalize_maps": "_engine",
    "DEFAULT_BASELINE": "faithfulness", "deletion_score": "faithfulness",
    "faithfulness_curves": "faithfulness", "faithfulness_scores": "faithfulness",
    "insertion_score": "faithfulness",
    "gradcam_map": "gradcam", "gradcam_plus_plus_map": "gradcam_plus_plus",
    "flat_feature_map_note": "gradcam",
    "saliency_map": "saliency", "smoothgrad_map": "saliency",
    "explain_image": "one_image", "score_maps": "one_image",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"galaxy_core.explain.{_LAZY[name]}"), name)
    if name == "METHODS":  # read from the table on every access, like ALL_METHODS
        return {m: get_method(m).load() for m in method_names()}
    if name == "ALL_METHODS":
        return method_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ALL_METHODS", "DEFAULT_BASELINE", "ENGINES", "METHODS", "TARGETS", "Explanations", "check_model",
    "clear_cache", "colorize", "compute_explanations", "deletion_score", "describe_methods", "errors_by_pair",
    "explain_image", "get_method", "method_label", "method_names",
    "faithfulness_curves", "faithfulness_scores", "find_feature_layer", "flat_feature_map_note", "gradcam_map",
    "gradcam_plus_plus_map", "insertion_score", "load_explanations", "margins",
    "misclassified", "most_ambiguous", "normalize_maps", "overlay", "saliency_map", "save_explanations",
    "score_maps",
    "select_rows", "smoothgrad_map", "target_classes",
]
