"""Penultimate-layer features of a classifier, their 2-D map, and look-alike search.

- `feature_layer(model)` / `feature_model(model)`: the layer just before the classifier of a model
  built by `galaxy_core.models.network.build_model` (the hidden `Dense(dense_units, relu)` "head_dense",
  after the Flatten or GAP head), found from the graph, not only by name.
- `penultimate_features(model, images)`: its output, float32 `(N, D)`, in batches.
- `project_2d(features, method="tsne", seed=0)`: a 2-D map of the features.
- `embed_test_set(model, images, seed)`: both, as run bundles store them (`auto_method`'s map).
- `nearest_neighbours(features, query_features, k=8)`: look-alikes by cosine distance.

Projection library: scikit-learn (PCA, then t-SNE), not umap-learn.
- Install: scikit-learn is already a dependency and well kept. umap-learn 0.5.12 installs from
  PyPI but pulls in numba + llvmlite (a ~64 MB download, llvmlite alone 60 MB) and pynndescent.
- Determinism: t-SNE with `random_state` gives the same map for the same input (tested); UMAP is
  reproducible only with `random_state` set, which also turns its parallelism off.
- Speed: neither is instant on CPU. Barnes-Hut t-SNE (1,000 iterations) on 1,800 x 1,024 features
  took 75 s on this project's 2 shared cores under a load average of ~7 with scikit-learn's
  default threads (PCA to 2-D: under 1 s); one OpenMP thread (`TSNE_THREADS`) is 3-10x faster
  on such a busy machine (1,774 synthetic 256-D points: 55.8 s -> 18.3 s at load ~9);
  UMAP adds the numba compilation of its functions on first use in each process. So compute the
  map once per run and keep it (store it in the bundle at evaluation time), not per page view.
t-SNE keeps local neighbourhoods (what look-alike browsing needs); distances between far-apart
clusters on the map mean little, which the app should say. `method="pca"` is the fast, linear
alternative whose axes do mean something (the directions of largest variance).

Example:
    >>> rng = np.random.default_rng(0)
    >>> feats = np.vstack([rng.normal(0, 1, (20, 8)) + 5, rng.normal(0, 1, (20, 8)) - 5]).astype("float32")
    >>> project_2d(feats, method="pca", seed=0).shape
    (40, 2)
    >>> idx, dist = nearest_neighbours(feats, feats[:1], k=3, exclude=[0])
    >>> bool((idx < 20).all()), idx.shape
    (True, (1, 3))
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from galaxy_core.errors import GalaxyError, ModelError
from galaxy_core.inference.probabilities import to_model_input

PROJECTION_METHODS = ("tsne", "pca")
# Largest number of points mapped with t-SNE by `auto_method`; above it PCA (t-SNE's time grows
# faster than linearly: ~1,800 points took over a minute on 2 busy cores, see the module docstring).
TSNE_MAX_POINTS = 5000
# OpenMP threads of t-SNE (`project_2d(n_threads=...)`). One: on this project's 2 shared cores
# (load average ~9) scikit-learn's default (all cores) made the Barnes-Hut gradient 3-10x SLOWER
# (spinning threads fight for busy cores): 250 x 128 demo features 37.7 s -> 4.0 s, 1,774 x 256
# 55.8 s -> 18.3 s. The map is computed once per run, often beside training or the app; None
# uses every core (faster only on an idle machine).
TSNE_THREADS: int | None = 1
# Attribute set on the models made by `feature_model` (so penultimate_features uses them as they are).
_MARK = "_galaxy_feature_model"
# Layers that are the identity at inference: stepped over when walking back from the classifier.
_INFERENCE_IDENTITY = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
                       "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization")


class EmbeddingError(GalaxyError, ValueError):
    """Features or query arrays that cannot be projected or searched (shape, size, values)."""


# --------------------------------------------------------------------------------------------
# The feature layer
# --------------------------------------------------------------------------------------------
def _producer(tensor):
    """The layer that produced a symbolic Keras tensor (Keras 3 `_keras_history`), or None."""
    history = getattr(tensor, "_keras_history", None)
    return getattr(history, "operation", None) if history is not None else None


def feature_layer(model):
    """The layer whose output feeds the classifier: the penultimate representation.

    Walks back from the model's output: an `Activation`/`Softmax` layer is skipped to reach the
    classifier `Dense`, then identity-at-inference layers (Dropout and kin) are skipped from its
    input. For `galaxy_core.models.network.build_model` models this is "head_dense" (`Dense(dense_units,
    relu)`; after Flatten or GlobalAveragePooling2D), for SmallCNN and `keras.applications`
    backbones alike; for a model without a hidden dense layer it would be the GAP/Flatten.

    Args:
        model: a functional Keras model with one output (flat or not).

    Returns:
        The Keras layer (its `.output` is the feature tensor, shape `(None, D)`).

    Raises:
        ModelError: the model's output is not made by a Dense classifier, or the feature tensor
            is not 2-D.
    """
    outputs = getattr(model, "outputs", None)
    if not outputs or len(outputs) != 1:
        raise ModelError(f"Model {getattr(model, 'name', model)!r} must be a functional Keras model "
                         f"with one output to find its penultimate layer (load it from the bundle's "
                         f"model.keras).")
    layer = _producer(outputs[0])
    while layer is not None and type(layer).__name__ in ("Activation", "Softmax"):
        layer = _producer(layer.input)
    if layer is None or type(layer).__name__ != "Dense":
        raise ModelError(f"Model {model.name!r} does not end in a Dense classifier (last layer: "
                         f"{getattr(layer, 'name', None)!r}); penultimate features are defined for "
                         f"models built by galaxy_core.models.network.build_model.")
    features = _producer(layer.input)
    while features is not None and type(features).__name__ in _INFERENCE_IDENTITY:
        features = _producer(features.input)
    if features is None or len(features.output.shape) != 2:
        shape = None if features is None else tuple(features.output.shape)
        raise ModelError(f"The input of classifier {layer.name!r} of model {model.name!r} is not a "
                         f"2-D feature tensor (got {shape}); cannot take penultimate features.")
    return features


def feature_model(model):
    """A Keras model from `model`'s input to `feature_layer(model)`'s output (shares the weights).

    Returns:
        `keras.Model`: float32 `(N, S, S, 3)` in [0, 1] -> float32 `(N, D)`; `penultimate_features`
        accepts it in place of the classifier.
    """
    import keras

    layer = feature_layer(model)
    extractor = keras.Model(model.inputs, layer.output, name=f"{model.name}_features")
    setattr(extractor, _MARK, True)
    return extractor


def penultimate_features(model, images, batch_size: int = 64, progress: bool = False,
                         on_progress: Callable[[int, int], Any] | None = None) -> np.ndarray:
    """Penultimate-layer features of images, in batches (inference mode: no augmentation, no dropout).

    Args:
        model: a classifier built by `galaxy_core.models.network.build_model` (or loaded from a bundle), or
            the `feature_model(classifier)` of one: keep that and pass it again to avoid building
            (and tracing) a new extractor on every call, e.g. one uploaded image at a time.
        images: float32 `(N, S, S, 3)` in [0, 1] (uint8 is mapped with
            `galaxy_core.inference.probabilities.to_model_input`); a numpy memmap is read one batch at a time.
        batch_size: images per model call.
        progress: draw a tqdm bar on stderr (`galaxy_core.io.progress`).
        on_progress: optional callback `(done_images, total_images)` (for the app).

    Returns:
        float32 `(N, D)` (D = `cfg.dense_units` for build_model models, e.g. 1024).

    Raises:
        ModelError: no penultimate layer (see `feature_layer`).
        EmbeddingError: images are not `(N, S, S, 3)`, or batch_size < 1.

    Example:
        >>> from galaxy_core.config import Config
        >>> from galaxy_core.models.network import build_model
        >>> m = build_model(Config(backbone="SmallCNN", image_size=32, dense_units=16))
        >>> penultimate_features(m, np.zeros((3, 32, 32, 3), np.float32)).shape
        (3, 16)
    """
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) != 4 or shape[-1] != 3:
        raise EmbeddingError(f"images must be an array (N, S, S, 3) of RGB images in [0, 1], got shape "
                             f"{shape}; preprocess them first (galaxy_core.preprocessing.preprocess).")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise EmbeddingError(f"batch_size must be a positive integer, got {batch_size!r}.")
    extractor = model if getattr(model, _MARK, False) else feature_model(model)
    n = int(shape[0])
    dim = int(extractor.outputs[0].shape[-1])
    out = np.empty((n, dim), dtype=np.float32)
    starts = range(0, n, int(batch_size))
    if progress:
        from galaxy_core.io import progress as progress_iter

        starts = progress_iter(starts, desc="features", unit="batch")
    for start in starts:
        batch = np.asarray(images[start:start + batch_size])
        if batch.dtype == np.uint8:
            batch = to_model_input(batch)
        out[start:start + len(batch)] = np.asarray(
            extractor.predict_on_batch(batch.astype(np.float32, copy=False)), dtype=np.float32)
        if on_progress is not None:
            on_progress(min(start + len(batch), n), n)
    return out


# --------------------------------------------------------------------------------------------
# Map and neighbours
# --------------------------------------------------------------------------------------------
def _check_features(features: Any, what: str = "features") -> np.ndarray:
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] < 1:
        raise EmbeddingError(f"{what} must be a 2-D array (N, D), got shape {x.shape}; use "
                             f"penultimate_features(model, images).")
    if not np.all(np.isfinite(x)):
        raise EmbeddingError(f"{what} hold NaN or infinite values; check the model and the images.")
    return x


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def auto_method(n: int, tsne_max_points: int = TSNE_MAX_POINTS) -> str:
    """The projection the bundle writers use for `n` points: "tsne" for 4..tsne_max_points, else "pca".

    t-SNE needs at least 4 points; above `tsne_max_points` (default 5,000, more than a Galaxy10
    test split of 10 %: 1,774) it would take minutes, so the linear PCA map is used instead.

    Example:
        >>> auto_method(1774), auto_method(3), auto_method(20000)
        ('tsne', 'pca', 'pca')
    """
    return "tsne" if 4 <= int(n) <= int(tsne_max_points) else "pca"


def project_2d(features, method: str = "tsne", seed: int = 0, perplexity: float = 30.0,
               pca_dims: int = 50, n_threads: int | None = TSNE_THREADS) -> np.ndarray:
    """Project features to 2-D with scikit-learn (see the module docstring for the choice).

    Rows are first scaled to unit length, so Euclidean distances on them order pairs as the cosine
    distance of `nearest_neighbours` does (the map and the look-alikes agree).
    - "tsne" (default): PCA to `min(pca_dims, N - 1, D)` dimensions, then t-SNE (`init="pca"`,
      `learning_rate="auto"`, perplexity capped at (N - 1) / 3 for small N).
    - "pca": the first two principal components.

    Args:
        features: float `(N, D)` (from `penultimate_features`); N >= 2 (N >= 4 for "tsne").
        method: "tsne" or "pca".
        seed: random state of PCA's randomized solver and of t-SNE; same seed, same map.
        perplexity: t-SNE's effective number of neighbours (5-50; 30 suits ~1,800 points).
        pca_dims: PCA dimensions before t-SNE.
        n_threads: OpenMP threads of t-SNE's gradient (default `TSNE_THREADS` = 1; None: all).

    Returns:
        float32 `(N, 2)`.

    Raises:
        EmbeddingError: unknown method, too few points, bad values.

    Example:
        >>> x = np.random.default_rng(1).normal(size=(30, 5)).astype(np.float32)
        >>> project_2d(x, method="tsne", seed=0).dtype
        dtype('float32')
    """
    if method not in PROJECTION_METHODS:
        raise EmbeddingError(f"Unknown projection method {method!r}; use one of {PROJECTION_METHODS}.")
    x = _unit_rows(_check_features(features).astype(np.float64))
    n, d = x.shape
    minimum = 4 if method == "tsne" else 2
    if n < minimum:
        raise EmbeddingError(f"A {method} map needs at least {minimum} points, got {n}"
                             + ("; use method='pca' for tiny sets." if method == "tsne" else "."))
    from sklearn.decomposition import PCA

    if d < 2:  # one feature: the map is a line
        return np.column_stack([x[:, 0], np.zeros(n)]).astype(np.float32)
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(x).astype(np.float32)
    from sklearn.manifold import TSNE

    dims = max(2, min(int(pca_dims), n - 1, d))
    reduced = PCA(n_components=dims, random_state=seed).fit_transform(x) if dims < d else x
    tsne = TSNE(n_components=2, perplexity=float(min(perplexity, (n - 1) / 3.0)), init="pca",
                learning_rate="auto", random_state=seed)
    from threadpoolctl import threadpool_limits

    # Barnes-Hut's gradient is an OpenMP loop; see `TSNE_THREADS` for why one thread by default.
    with threadpool_limits(limits=None if n_threads is None else int(n_threads), user_api="openmp"):
        return tsne.fit_transform(reduced).astype(np.float32)


@dataclass(frozen=True)
class EmbeddedTestSet:
    """`embed_test_set`'s result: features, their map, and the seconds each took."""

    features: np.ndarray  # float32 (N, D)
    embedding_2d: np.ndarray | None  # float32 (N, 2); None for N < 2
    method: str | None  # "tsne" | "pca" | None (no map)
    features_s: float  # 0 when the features were given
    map_s: float | None


def embed_test_set(model, images, seed: int, *, features=None, batch_size: int = 64, progress: bool = False,
                   on_progress: Callable[[int, int], Any] | None = None) -> EmbeddedTestSet:
    """The test images' penultimate features and 2-D map, as every bundle stores them.

    `penultimate_features` (unless `features` are given), then `project_2d` with
    `auto_method(N)` (t-SNE up to `TSNE_MAX_POINTS` images, PCA above) seeded with the run's seed.
    Training (`galaxy_core.training.phases.embedding_phase`) and bundles without stored ones
    (`galaxy_core.runs.reevaluate.bundle_embedding`) both come here.

    Args:
        model, images: as for `penultimate_features` (unused when `features` are given).
        seed: the run's `config.seed`.
        features: float32 `(N, D)` already computed, or None.
        batch_size, progress, on_progress: as for `penultimate_features`.

    Raises:
        ModelError, EmbeddingError: as `penultimate_features` / `project_2d`.
    """
    started = time.perf_counter()
    if features is None:
        features = penultimate_features(model, images, batch_size=batch_size, progress=progress,
                                        on_progress=on_progress)
        features_s = time.perf_counter() - started
    else:
        features, features_s = _check_features(features), 0.0
        if on_progress is not None:
            on_progress(len(features), len(features))
    if len(features) < 2:
        return EmbeddedTestSet(features, None, None, features_s, None)
    method = auto_method(len(features))
    started = time.perf_counter()
    embedding_2d = project_2d(features, method=method, seed=int(seed))
    return EmbeddedTestSet(features, embedding_2d, method, features_s, time.perf_counter() - started)


def nearest_neighbours(features, query_features, k: int = 8,
                       exclude: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k rows of `features` nearest to each query, by cosine distance (1 - cosine similarity).

    Exact brute-force search (scikit-learn `NearestNeighbors(metric="cosine")`); a zero feature
    vector is at distance 1 from everything.

    Args:
        features: float `(N, D)` features of the candidates (e.g. the test set).
        query_features: float `(Q, D)` (or one `(D,)` vector, treated as Q = 1).
        k: neighbours per query, capped at the number of candidates.
        exclude: optional `(Q,)` candidate row to leave out for each query (e.g. the query's own
            row when it is itself a test image; -1 leaves nothing out).

    Returns:
        `(indices int64 (Q, k), distances float32 (Q, k))`, nearest first; indices are rows of
        `features`.

    Raises:
        EmbeddingError: shapes differ, k < 1, or no candidates.

    Example:
        >>> f = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
        >>> idx, dist = nearest_neighbours(f, [1.0, 0.1], k=2)
        >>> idx.tolist(), [round(float(v), 3) for v in dist[0]]
        ([[0, 2]], [0.005, 0.226])
    """
    from sklearn.neighbors import NearestNeighbors

    x = _check_features(features)
    q = np.asarray(query_features, dtype=np.float32)
    q = _check_features(q[None] if q.ndim == 1 else q, "query_features")
    if q.shape[1] != x.shape[1]:
        raise EmbeddingError(f"query_features have {q.shape[1]} dimensions but features have "
                             f"{x.shape[1]}; compute both with the same model.")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise EmbeddingError(f"k must be a positive integer, got {k!r}.")
    skip = None
    if exclude is not None:
        skip = np.asarray(exclude, dtype=np.int64).reshape(-1)
        if skip.shape != (q.shape[0],):
            raise EmbeddingError(f"exclude must hold one row per query ({q.shape[0]}), got "
                                 f"{skip.shape[0]}.")
    candidates = x.shape[0] - (1 if skip is not None and (skip >= 0).any() else 0)
    if candidates < 1:
        raise EmbeddingError("No candidate features to search; features need at least one row "
                             "besides the excluded one.")
    k = min(int(k), candidates)
    ask = min(k + (1 if skip is not None else 0), x.shape[0])
    search = NearestNeighbors(n_neighbors=ask, metric="cosine", algorithm="brute").fit(x)
    distances, indices = search.kneighbors(q)
    if skip is not None:
        keep = indices != skip[:, None]
        # Rows that did not contain their excluded index drop their last (farthest) neighbour.
        keep &= np.cumsum(keep, axis=1) <= k
        indices = indices[keep].reshape(q.shape[0], k)
        distances = distances[keep].reshape(q.shape[0], k)
    return indices.astype(np.int64), np.maximum(distances, 0.0).astype(np.float32)
