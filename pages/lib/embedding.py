"""The Embedding map's data: stored or computed test features and 2-D map, upload features, look-alikes."""

from __future__ import annotations

import numpy as np
import streamlit as st

from galaxy_core.evaluation import embedding
from galaxy_core.preprocessing import preprocess
from pages.lib.state import current_run_path, load_model, load_run, stamp
from pages.lib.uploads import read_upload


def current_embedding() -> dict | None:
    """The chosen run's test features and 2-D map, or None when neither is stored nor computed yet.

    Returns:
        `{"features": float32 (N, D), "embedding_2d": float32 (N, 2) or None, "method": str or
        None, "stored": bool}`.
    """
    path = current_run_path()
    run = load_run(path, stamp(path))
    if run.features is not None and run.embedding_2d is not None:
        return {"features": run.features, "embedding_2d": run.embedding_2d,
                "method": run.embedding_method, "stored": True}
    if path in st.session_state.get(_COMPUTED_KEY, ()):  # computed in this session, not written
        return dict(_embedding(path, stamp(path)), stored=False)
    return None


_COMPUTED_KEY = "embedding_computed"  # run paths whose embedding this session computed


def compute_embedding(on_progress=None) -> dict:
    """Compute the chosen run's features and map now (`galaxy_core.runs.reevaluate.bundle_embedding`),
    reporting `(done, total)` images to `on_progress`. Cached per bundle; where the bundle folder
    is writable the core also stores them in its predictions.h5 (so the bundle is read anew)."""
    path = current_run_path()
    result = _embedding(path, stamp(path), on_progress)
    st.session_state.setdefault(_COMPUTED_KEY, set()).add(path)
    return result


@st.cache_resource(show_spinner=False, max_entries=4)
def _embedding(path: str, path_stamp: str, _on_progress=None) -> dict:
    from galaxy_core.runs.reevaluate import bundle_embedding

    found = bundle_embedding(load_run(path, path_stamp), model=load_model(path, path_stamp),
                             on_progress=_on_progress)
    return {"features": found["features"], "embedding_2d": found["embedding_2d"],
            "method": found["method"]}


@st.cache_resource(show_spinner=False, max_entries=4)
def _feature_model(path: str, path_stamp: str):
    """The feature extractor of a run's model (`embedding.feature_model`), built once per bundle."""
    return embedding.feature_model(load_model(path, path_stamp))


def upload_features(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """An uploaded image file as the chosen run's model sees it, and its features.

    decode.read_image -> preprocess (the run's settings) -> penultimate-layer features.

    Returns:
        `(uint8 (S, S, 3) preprocessed image, float32 (D,) features)`.

    Raises:
        DecodeError (a GalaxyError) for a file that is not a readable image.
    """
    path = current_run_path()
    return _upload_features(path, stamp(path), data)


@st.cache_data(show_spinner=False, max_entries=32)
def _upload_features(path: str, path_stamp: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    run = load_run(path, path_stamp)
    image = preprocess.preprocess_image(read_upload(data), run.config)
    features = embedding.penultimate_features(_feature_model(path, path_stamp), image[None])
    return image, features[0]


def look_alikes(features, query, k: int, exclude: int | None = None):
    """`(rows int64 (k,), cosine distances float32 (k,))` of the test images nearest to `query`
    (`galaxy_core.evaluation.embedding.nearest_neighbours`; `exclude`: the query's own test row)."""
    idx, dist = embedding.nearest_neighbours(features, query, k=int(k),
                                             exclude=None if exclude is None else [int(exclude)])
    return idx[0], dist[0]
