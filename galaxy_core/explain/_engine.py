"""Model checks, the feature-map layer finder and a per-model cache of gradient functions.

Two engines compute the same maps:

* ``"compiled"`` (default): one `tf.function` per model and per quantity (input gradients,
  feature-map gradients, probabilities), traced once with a `(None, S, S, 3)` input signature and
  reused for every later batch. The class score is the *linear* score of the target class (the
  input of the final softmax), which is what tf-keras-vis' `ReplaceToLinear` gives, but read from
  the model's own graph: the caller's model is neither cloned nor mutated, and the functions keep
  following its weights if it is trained further.
* ``"tf-keras-vis"``: tf-keras-vis 0.8.7 itself (`Saliency`, `Gradcam`, `GradcamPlusPlus` with
  `ReplaceToLinear` and `CategoricalScore`). tf-keras-vis clones the model once (so the caller's
  softmax is untouched) and runs it eagerly, layer by layer, on every call; the visualizers are
  built once per model and cached. Kept as the reference the compiled engine is tested against.
"""

from __future__ import annotations

import importlib
import threading
import warnings
import weakref
from typing import Any

import numpy as np
import tensorflow as tf
import keras

from galaxy_core.errors import ExplainError, ModelError
from galaxy_core.inference.probabilities import to_model_input
from galaxy_core.models.network import CONV_TYPES, feature_map_layer, output_rank, walk_layers

ENGINES = ("compiled", "tf-keras-vis")


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------
def _is_softmax(fn: Any) -> bool:
    return getattr(fn, "__name__", "") == "softmax"


def output_layer(model: keras.Model) -> keras.layers.Layer:
    """The layer that makes the model's only output."""
    return model.outputs[0]._keras_history[0]


def check_model(model: Any) -> None:
    """Raise ExplainError unless the explanation methods can handle `model`.

    Supported: a flat functional `keras.Model` with one image input `(S, S, 3)`, at least one
    convolution layer in its own graph, and one output `(N, C)` made by a softmax (a `Dense` with
    `activation="softmax"`, or a `Softmax` / `Activation("softmax")` layer). A backbone added as a
    single nested-`Model` layer is refused, because its conv layers are not reachable for Grad-CAM.
    Nested models without conv layers (e.g. a `Sequential` of augmentation layers) are fine.
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "outputs") or not model.outputs:
        raise ExplainError(f"Expected a built functional keras.Model, got {type(model).__name__}.")
    nested = [layer.name for layer in model.layers if isinstance(layer, keras.Model)
              and any(isinstance(sub, CONV_TYPES) for sub in walk_layers(layer))]
    if nested:
        raise ExplainError(
            f"Layer(s) {nested} of model {model.name!r} are nested models that hold conv layers (a "
            "backbone added as one layer). The explanation methods need the backbone's layers in "
            "the model's own graph: build the model flat, e.g. galaxy_core.models.network.build_model(cfg), "
            "or keras.applications.<Backbone>(include_top=False, input_tensor=x).")
    if not any(isinstance(layer, CONV_TYPES) for layer in model.layers):
        raise ExplainError(f"Model {model.name!r} has no convolution layer; Grad-CAM needs one.")
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4 or model.inputs[0].shape[-1] != 3:
        shapes = [tuple(t.shape) for t in model.inputs]
        raise ExplainError(f"Model {model.name!r} must have one image input (None, S, S, 3); has {shapes}.")
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        shapes = [tuple(t.shape) for t in model.outputs]
        raise ExplainError(f"Model {model.name!r} must have one output (None, num_classes); has {shapes}.")
    last = output_layer(model)
    softmax_dense = isinstance(last, keras.layers.Dense) and _is_softmax(last.activation)
    softmax_layer = isinstance(last, keras.layers.Softmax) or (
        isinstance(last, keras.layers.Activation) and _is_softmax(last.activation))
    if not (softmax_dense or softmax_layer):
        raise ExplainError(
            f"The output layer {last.name!r} of model {model.name!r} is not a softmax; the methods "
            "explain class probabilities: end the model with Dense(num_classes, activation='softmax').")


def find_feature_layer(model: keras.Model) -> keras.layers.Layer:
    """The Grad-CAM feature map (`galaxy_core.models.network.feature_map_layer`, the project's one rule).

    Raises ExplainError when the model has no conv layer.
    """
    try:
        return feature_map_layer(model)
    except ModelError as err:
        raise ExplainError(str(err)) from err


def resolve_feature_layer(model: keras.Model, layer: str | None) -> keras.layers.Layer:
    """`layer` by name (checked to be a 4-D feature map), or the one `find_feature_layer` picks."""
    if layer is None:
        return find_feature_layer(model)
    try:
        found = model.get_layer(name=layer)
    except ValueError:
        raise ExplainError(f"Model {model.name!r} has no layer {layer!r}; see [l.name for l in "
                           "model.layers] or leave layer=None to use the last conv feature map.") from None
    if output_rank(found) != 4:
        raise ExplainError(f"Layer {layer!r} does not output a feature map (N, h, w, C); "
                           "pick a conv layer or its activation.")
    return found


def check_images(model: keras.Model, images: Any) -> np.ndarray:
    """Validate a batch and return it as float32 in [0, 1], shape (N, S, S, 3).

    uint8 input is mapped with `galaxy_core.inference.probabilities.to_model_input` (the project's one uint8 -> [0, 1]
    mapping); float input is taken as already in [0, 1].
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ExplainError(f"images must be a batch (N, S, S, 3); got shape {images.shape} "
                           "(for one image pass images[None]).")
    if images.dtype == np.uint8:
        images = to_model_input(images)
    elif not np.issubdtype(images.dtype, np.floating):
        raise ExplainError(f"images must be uint8 or float in [0, 1]; got dtype {images.dtype}.")
    expected = tuple(model.inputs[0].shape[1:3])
    if None not in expected and tuple(images.shape[1:3]) != expected:
        raise ExplainError(f"images are {images.shape[1]}x{images.shape[2]} but the model takes "
                           f"{expected[0]}x{expected[1]}; preprocess them to the model's image_size.")
    return np.ascontiguousarray(images, dtype=np.float32)


def check_classes(model: keras.Model, class_indices: Any, n: int) -> np.ndarray:
    """Validate class indices: shape (n,), integers in [0, num_classes). Returns int32."""
    classes = np.asarray(class_indices)
    if classes.ndim == 0:
        classes = np.full(n, int(classes))
    num_classes = int(model.outputs[0].shape[-1])
    if classes.shape != (n,) or not np.issubdtype(classes.dtype, np.integer):
        raise ExplainError(f"class_indices must be {n} integers (one per image); got "
                           f"shape {classes.shape}, dtype {classes.dtype}.")
    if n and (classes.min() < 0 or classes.max() >= num_classes):
        raise ExplainError(f"class_indices must be in [0, {num_classes}); got {classes.min()}..{classes.max()}.")
    return classes.astype(np.int32)


# ----------------------------------------------------------------------------------------------
# Per-model cache
# ----------------------------------------------------------------------------------------------
class ModelFunctions:
    """The compiled gradient functions of one model (and, on demand, its tf-keras-vis visualizers).

    Args:
        model: a model that passed `check_model`.
    """

    def __init__(self, model: keras.Model):
        # A weak reference: the cache must not keep the model alive (it is keyed weakly by it).
        # The functions below close over new Model objects that share its layers, not over it.
        self._model = weakref.ref(model)
        self._lock = threading.RLock()
        head = output_layer(model)
        # Pre-softmax tensor of the head: the input of the Dense (whose logits we recompute with
        # its own kernel and bias) or of the Softmax layer (which is the logits).
        self._head = head
        self._head_is_dense = isinstance(head, keras.layers.Dense)
        in_shape = tuple(model.inputs[0].shape[1:])
        self._spec = (tf.TensorSpec((None,) + in_shape, tf.float32), tf.TensorSpec((None,), tf.int32))
        self._saliency_fn = None
        self._cam_fns: dict[str, Any] = {}
        self._probs_fn = None
        self._visualizers = None

    @property
    def model(self) -> keras.Model:
        model = self._model()
        if model is None:
            raise ExplainError("The model of these cached functions no longer exists.")
        return model

    # -- class score -----------------------------------------------------------------------------
    def _logits(self, head_input):
        # (N, D) -> (N, C) float32: the linear scores ReplaceToLinear would expose.
        z = tf.cast(head_input, tf.float32)
        if not self._head_is_dense:
            return z
        logits = tf.matmul(z, tf.cast(self._head.kernel, tf.float32))
        if self._head.use_bias:
            logits = logits + tf.cast(self._head.bias, tf.float32)
        return logits

    @staticmethod
    def _scores(logits, classes):
        return tf.gather(logits, classes, axis=1, batch_dims=1)  # (N,)

    # -- compiled functions ----------------------------------------------------------------------
    def saliency_fn(self):
        """tf.function (x (N,S,S,3), classes (N,)) -> d score / d x, float32 (N,S,S,3)."""
        with self._lock:
            if self._saliency_fn is None:
                sub = keras.Model(self.model.inputs, self._head.input)

                @tf.function(input_signature=self._spec)
                def input_gradients(x, classes):
                    with tf.GradientTape(watch_accessed_variables=False) as tape:
                        tape.watch(x)
                        scores = self._scores(self._logits(sub(x, training=False)), classes)
                    return tape.gradient(scores, x)

                self._saliency_fn = input_gradients
            return self._saliency_fn

    def cam_fn(self, layer: keras.layers.Layer):
        """tf.function (x, classes) -> (feature map A, d score / d A), float32 (N,h,w,K) each."""
        with self._lock:
            if layer.name not in self._cam_fns:
                sub = keras.Model(self.model.inputs, [layer.output, self._head.input])

                @tf.function(input_signature=self._spec)
                def feature_gradients(x, classes):
                    with tf.GradientTape(watch_accessed_variables=False) as tape:
                        tape.watch(x)  # records every op downstream of the input
                        features, head_input = sub(x, training=False)
                        scores = self._scores(self._logits(head_input), classes)
                    grads = tape.gradient(scores, features)
                    return tf.cast(features, tf.float32), tf.cast(grads, tf.float32)

                self._cam_fns[layer.name] = feature_gradients
            return self._cam_fns[layer.name]

    def probs_fn(self):
        """tf.function x (N,S,S,3) -> probabilities float32 (N, C)."""
        with self._lock:
            if self._probs_fn is None:
                model = keras.Model(self.model.inputs, self.model.outputs)

                @tf.function(input_signature=self._spec[:1])
                def probabilities(x):
                    return tf.cast(model(x, training=False), tf.float32)

                self._probs_fn = probabilities
            return self._probs_fn

    # -- tf-keras-vis ----------------------------------------------------------------------------
    def visualizers(self) -> dict:
        """`{method: tf-keras-vis visualizer}` for every `registry.METHODS` row that names one.

        The classes come from the table (`Method.tf_keras_vis`); methods naming the same class share
        one instance, and all share ONE linearised clone of the model.
        """
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

        from galaxy_core.explain.registry import METHODS

        with self._lock:
            if self._visualizers is None:
                by_class: dict[str, Any] = {}
                linear = None
                for method in METHODS:
                    path = method.tf_keras_vis
                    if path is None or path in by_class:
                        continue
                    module, name = path.rsplit(".", 1)
                    visualizer = getattr(importlib.import_module(f"tf_keras_vis.{module}"), name)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        if linear is None:  # clone=True: the caller's softmax is left untouched
                            by_class[path] = visualizer(self.model, model_modifier=ReplaceToLinear(), clone=True)
                            linear = by_class[path].model
                        else:  # reused: no second clone
                            by_class[path] = visualizer(linear, clone=False)
                self._visualizers = {m.name: by_class[m.tf_keras_vis] for m in METHODS if m.tf_keras_vis}
            return self._visualizers

    def visualizer(self, method: str):
        """The tf-keras-vis visualizer of one method (ExplainError when the table names none)."""
        found = self.visualizers().get(method)
        if found is None:
            raise ExplainError(f"Method {method!r} has no tf-keras-vis visualizer in galaxy_core.explain.registry; "
                               "use engine='compiled'.")
        return found


_CACHE: "weakref.WeakKeyDictionary[keras.Model, ModelFunctions]" = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def model_functions(model: keras.Model) -> ModelFunctions:
    """The cached `ModelFunctions` of `model` (checked on first use; dropped with the model)."""
    with _CACHE_LOCK:
        found = _CACHE.get(model)
        if found is None:
            check_model(model)
            found = _CACHE[model] = ModelFunctions(model)
        return found


def clear_cache() -> None:
    """Forget every cached function and visualizer (they are also dropped with their model)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def run_batched(fn, arrays: tuple[np.ndarray, ...], batch_size: int):
    """Call `fn` on slices of `arrays` (along axis 0) and concatenate each numpy output."""
    if batch_size < 1:
        raise ExplainError(f"batch_size must be >= 1; got {batch_size}.")
    n = len(arrays[0])
    outputs = []
    for start in range(0, n, batch_size):
        result = fn(*(tf.constant(a[start:start + batch_size]) for a in arrays))
        outputs.append(tuple(np.asarray(r) for r in result) if isinstance(result, (tuple, list))
                       else (np.asarray(result),))
    return tuple(np.concatenate(parts) for parts in zip(*outputs))


def normalize_maps(maps: np.ndarray) -> np.ndarray:
    """Scale each map of (N, H, W) to [0, 1] on its own; a constant map becomes zeros. float32."""
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (maps - low) / safe, 0.0).astype(np.float32)


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ExplainError(f"engine must be one of {ENGINES}; got {engine!r}.")


def run_tf_keras_vis(visualizer, x: np.ndarray, classes: np.ndarray, batch_size: int,
                     **kwargs: Any) -> np.ndarray:
    """Call a tf-keras-vis visualizer batch by batch with a CategoricalScore per image.

    Args:
        visualizer: a tf-keras-vis Saliency, Gradcam or GradcamPlusPlus instance.
        x: float32 (N, S, S, 3) in [0, 1]. classes: int (N,) target classes.
        batch_size: images per call. kwargs: the visualizer's own options.

    Returns:
        float32 (N, S, S) maps, each normalised to [0, 1].
    """
    from tf_keras_vis.utils.scores import CategoricalScore

    maps = []
    for start in range(0, len(x), batch_size):
        part = slice(start, start + batch_size)
        score = CategoricalScore([int(c) for c in classes[part]])
        with warnings.catch_warnings():  # Keras warns about the list input tf-keras-vis passes
            warnings.simplefilter("ignore", UserWarning)
            maps.append(visualizer(score, x[part], **kwargs))
    return normalize_maps(np.concatenate(maps))
