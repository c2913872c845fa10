"""What inference needs of a classifier: the `Predictor` protocol.

`probabilities.predict_probs` and `classify.classify_each` (`galaxy_core.inference`) call `predict_on_batch` (and
read `output_shape` for an empty input), so a Keras model works as it is. The predictors of
`galaxy_core.models.predictor` (ONNX Runtime, int8, Keras; one registry, `BACKENDS`) also say which
engine runs (`backend`) and, when it is a fallback or an approximation, why (`note`): the CLI and the
app print those. A new backend implements this protocol and adds one row to that registry.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Predictor(Protocol):
    """A classifier of model inputs: float32 `(N, S, S, 3)` in [0, 1] -> float32 `(N, C)` probabilities.

    Attributes:
        backend: the engine that runs, e.g. "onnxruntime", "onnxruntime-int8", "keras" (a row's
            `runs_as` in `galaxy_core.models.predictor.BACKENDS`).
        note: one line for the user when the engine is a fallback or approximate, else None. Set when
            the predictor is made, never patched afterwards.
    """

    backend: str
    note: str | None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """float32 `(N, S, S, 3)` in [0, 1] -> float32 `(N, C)` probabilities."""
        ...

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        """The same as `predict` (the name Keras models use, so inference takes either)."""
        ...

    @property
    def output_shape(self) -> tuple:
        """`(None, C)`: the number of classes, read when there is nothing to predict."""
        ...
