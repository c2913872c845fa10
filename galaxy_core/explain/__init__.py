"""Explanations of a trained classifier: saliency, SmoothGrad, Grad-CAM, Grad-CAM++, faithfulness.

One module per technique (tf-keras-vis style): `saliency` (vanilla saliency and SmoothGrad),
`gradcam`, `gradcam_plus_plus`, `faithfulness` (deletion / insertion), `analysis` (error
analysis on labels and probabilities), `overlay`, `store` (`explanations.h5`).

Every map function takes `(model, images float32 [0, 1] or uint8 (N, S, S, 3), class_indices (N,))`
and returns float32 `(N, S, S)` in [0, 1] (each map scaled on its own; a constant map is zeros).
The model must be flat (see `check_model`); otherwise ExplainError is raised before any work.
Compiled gradient functions are cached per model (see `_engine`); `engine="tf-keras-vis"` runs
tf-keras-vis 0.8.7 itself instead.
"""

from galaxy_core.explain._engine import (ENGINES, check_model, clear_cache, find_feature_layer,
                                         normalize_maps)
from galaxy_core.explain.analysis import (TARGETS, errors_by_pair, margins, misclassified,
                                          most_ambiguous, target_classes)
from galaxy_core.explain.faithfulness import (DEFAULT_BASELINE, deletion_score, faithfulness_curves,
                                              faithfulness_scores, insertion_score)
from galaxy_core.explain.gradcam import gradcam_map
from galaxy_core.explain.gradcam_plus_plus import gradcam_plus_plus_map
from galaxy_core.explain.overlay import colorize, overlay
from galaxy_core.explain.saliency import saliency_map, smoothgrad_map
from galaxy_core.explain.store import (ALL_METHODS, Explanations, compute_explanations,
                                       load_explanations, save_explanations, select_rows)

METHODS = {
    "saliency": saliency_map,
    "smoothgrad": smoothgrad_map,
    "gradcam": gradcam_map,
    "gradcam_plus_plus": gradcam_plus_plus_map,
}


def last_conv_layer_name(model) -> str:
    """Name of the Grad-CAM feature-map layer `find_feature_layer` picks."""
    return find_feature_layer(model).name


__all__ = [
    "ALL_METHODS", "DEFAULT_BASELINE", "ENGINES", "METHODS", "TARGETS", "Explanations", "check_model",
    "clear_cache", "colorize", "compute_explanations", "deletion_score", "errors_by_pair",
    "faithfulness_curves", "faithfulness_scores", "find_feature_layer", "gradcam_map",
    "gradcam_plus_plus_map", "insertion_score", "last_conv_layer_name", "load_explanations", "margins",
    "misclassified", "most_ambiguous", "normalize_maps", "overlay", "saliency_map", "save_explanations",
    "select_rows", "smoothgrad_map", "target_classes",
]
