"""The explanation methods: ONE table that every part of the project reads.

Each row (`Method`) names a method (its key in `explanations.h5` and in every `{method: map}` dict),
its display name, the map function that computes it and the run settings it takes. Readers:

- `galaxy_core.explain.store` (`compute_explanations`: which maps `explanations.h5` holds, and how
  each is called with the run's settings);
- `galaxy_core.explain.one_image` (`explain_image`: the maps of one image, same settings);
- `galaxy_core.explain._engine` (the tf-keras-vis reference engine builds the visualizers named here);
- `galaxy_core.explain.METHODS` (`{name: map function}`) and `ALL_METHODS`;
- the training log line (`training.train.explain_test_set`) and the app (`pages/lib/saliency.py`:
  display names, one column per method in Explain errors, the spinner text).

Adding a method = one module with its map function + one row in `METHODS` below;
`tests/test_explain_registry.py` fails if a row does not reach every reader.

A map function has the signature of the others:
`fn(model, images (N, S, S, 3) uint8 or float32 [0, 1], class_indices int (N,), *, batch_size, **options)
-> float32 (N, S, S) in [0, 1]`. `options` maps a keyword of the function to the run setting that
feeds it (`"smooth_samples"` and `"seed"`, from `Config`), so stored and on-demand maps agree.

TensorFlow-free: the functions are imported on first use (`Method.load`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from galaxy_core.errors import ExplainError

# The run settings a method may take (keys of `Method.options`' values), with their defaults.
SETTINGS: dict[str, Any] = {"smooth_samples": 20, "seed": 0}


@dataclass(frozen=True)
class Method:
    """One explanation method.

    Attributes:
        name: key in `explanations.h5` (`/maps/<name>/...`) and in `{method: map}` dicts.
        label: display name (app, logs), e.g. "Grad-CAM++".
        module: dotted module of the map function, e.g. "galaxy_core.explain.gradcam".
        function: the map function's name in `module`.
        options: `{function keyword: run setting}`, e.g. SmoothGrad's `{"samples": "smooth_samples"}`.
        tf_keras_vis: the tf-keras-vis 0.8.7 visualizer class of the reference engine
            (`"module.Class"` under `tf_keras_vis`), or None when the method has none.
    """

    name: str
    label: str
    module: str
    function: str
    options: Mapping[str, str] = field(default_factory=dict)
    tf_keras_vis: str | None = None

    def load(self) -> Callable:
        """The map function (its module imported now, with TensorFlow)."""
        return getattr(importlib.import_module(self.module), self.function)

    def bind(self, batch_size: int = 16, **settings: Any) -> Callable:
        """`(model, images, class_indices) -> float32 (N, S, S)` with the run's settings applied.

        Args:
            batch_size: images per gradient call.
            settings: run settings (`SETTINGS` names, e.g. `smooth_samples=cfg.smooth_samples,
                seed=cfg.seed`); a missing one takes its `SETTINGS` default.
        """
        unknown = set(settings) - set(SETTINGS)
        if unknown:
            raise ExplainError(f"Unknown explanation setting(s) {sorted(unknown)}; known: {sorted(SETTINGS)}.")
        values = {**SETTINGS, **settings}
        options = {keyword: values[setting] for keyword, setting in self.options.items()}
        fn = self.load()
        return lambda model, images, classes: fn(model, images, classes, batch_size=batch_size, **options)


METHODS: tuple[Method, ...] = (
    Method("saliency", "Saliency", "galaxy_core.explain.saliency", "saliency_map",
           tf_keras_vis="saliency.Saliency"),
    Method("smoothgrad", "SmoothGrad", "galaxy_core.explain.saliency", "smoothgrad_map",
           options={"samples": "smooth_samples", "seed": "seed"}, tf_keras_vis="saliency.Saliency"),
    Method("gradcam", "Grad-CAM", "galaxy_core.explain.gradcam", "gradcam_map",
           tf_keras_vis="gradcam.Gradcam"),
    Method("gradcam_plus_plus", "Grad-CAM++", "galaxy_core.explain.gradcam_plus_plus", "gradcam_plus_plus_map",
           tf_keras_vis="gradcam_plus_plus.GradcamPlusPlus"),
)


def method_names() -> tuple[str, ...]:
    """The names of the table's methods, in display order."""
    return tuple(m.name for m in METHODS)


def get_method(name: str) -> Method:
    """The row of `name`; ExplainError naming the known methods otherwise."""
    for method in METHODS:
        if method.name == name:
            return method
    raise ExplainError(f"Unknown explanation method {name!r}; choose from {list(method_names())}.")


def check_methods(names) -> tuple[str, ...]:
    """`names` as a tuple, checked to be a non-empty list of the table's methods (ExplainError otherwise)."""
    names = tuple(names)
    unknown = [n for n in names if n not in method_names()]
    if unknown:
        raise ExplainError(f"Unknown explanation method(s) {unknown}; choose from {list(method_names())}.")
    if not names:
        raise ExplainError(f"methods must name at least one of {list(method_names())}.")
    return names


def method_label(name: str) -> str:
    """Display name of a method ("Grad-CAM++"); an unknown name is returned as it is."""
    return next((m.label for m in METHODS if m.name == name), name)


def describe_methods(names=None) -> str:
    """The display names as a phrase: "Saliency, SmoothGrad, Grad-CAM and Grad-CAM++" (all by default)."""
    labels = [method_label(n) for n in (method_names() if names is None else names)]
    if len(labels) < 2:
        return "".join(labels)
    return ", ".join(labels[:-1]) + " and " + labels[-1]
