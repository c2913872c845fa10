"""The app's state and loaders: the chosen run, and cached calls into `galaxy_core`.

Every call the views make into the core goes through this module (with `lab.py`, which calls
`preprocess_image`, and `captions.sky_link`, which builds a sky-viewer URL), so the app's
dependencies on the core are listed in one place. Heavy objects
(bundles, models) are cached with `st.cache_resource`, keyed by the bundle's path and modification
time, so a bundle replaced on disk is read again; results (classifications, maps) with
`st.cache_data`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import streamlit as st

from galaxy_core import (bundle, calibration, compare, decode, embedding, explain, inference,
                         predictor, preprocess, properties, scoring, synthetic)
from galaxy_core.config import Config
from galaxy_core.data import open_dataset
from galaxy_core.io import default_runs_dir
from pages.lib.captions import describe_error
from pages.lib.saliency import METHODS

RUN_KEY = "run_path"  # session-state key of the sidebar's run selector
PENDING_KEY = "select_run_named"  # a run folder name the selector picks on its next draw

# What an upload may be: the core's one decoder decides (formats judged by content, pixel cap).
UPLOAD_TYPES: tuple[str, ...] = decode.ACCEPTED_EXTENSIONS
MAX_UPLOAD_PIXELS: int = decode.MAX_IMAGE_PIXELS

FAITHFULNESS_STEPS = 10  # deletion/insertion steps computed on demand (2 x 11 forward passes per map)


def runs_dir() -> Path:
    """The folder the app lists run bundles from: `$GALAXY_RUNS_DIR`, else `./runs`, absolute."""
    return default_runs_dir()


# The members whose rewrite changes what a bundle shows (`train.py --evaluate` rewrites the first two,
# the Embedding view caches features into predictions.h5).
STAMP_MEMBERS = ("metrics.json", "predictions.h5", "model.keras", "run.json", "config.json")


def stamp(path: str | Path) -> str:
    """A cache key that changes when a folder's content changes.

    For a run bundle: the folder's inode (a bundle is renamed into place, so a replaced bundle has
    a new one) and the name and modification time of each present `STAMP_MEMBERS` file (a rewritten
    or deleted member changes it). Not the folder's own mtime: loading a Keras model can create and
    delete a temporary file beside `model.keras`, which made every cached model and predictor stale
    on the next rerun (measured: the DenseNet201 model was reloaded on every Classify upload, 7 s
    each). For any other folder (the runs folder): its mtime, which changes when a bundle appears
    or goes. "" for a missing path.
    """
    try:
        folder = os.stat(path)
    except OSError:
        return ""
    members = []
    for name in STAMP_MEMBERS:
        try:
            members.append(f"{name}@{os.stat(os.path.join(path, name)).st_mtime_ns}")
        except OSError:
            continue
    if not members:
        return f"mtime@{folder.st_mtime_ns}"
    return f"inode@{folder.st_ino}:" + ",".join(members)


# --- bundles and models ---------------------------------------------------------------------------
@st.cache_resource(ttl=30, show_spinner=False)
def list_runs(root: str, root_stamp: str):
    """`(valid entries newest first, invalid entries)` of `galaxy_core.bundle.list_bundles`."""
    entries = bundle.list_bundles(root)
    return [e for e in entries if e.ok], [e for e in entries if not e.ok]


@st.cache_resource(show_spinner="Loading the run bundle...", max_entries=8)
def load_run(path: str, path_stamp: str):
    """The `RunBundle` at `path` (validated by `galaxy_core.bundle.load_bundle`)."""
    return bundle.load_bundle(path)


@st.cache_resource(show_spinner="Loading the model (once per run)...", max_entries=4)
def load_model(path: str, path_stamp: str):
    """The run's Keras model, loaded once per bundle and shared by all sessions (raises if unloadable)."""
    return load_run(path, path_stamp).load_model()


@st.cache_resource(show_spinner="Preparing fast classification (ONNX Runtime; the first time a run's "
                                "model is exported, which can take minutes for DenseNet201)...", max_entries=4)
def load_predictor(path: str, path_stamp: str):
    """The run's classifier for uploads: ONNX Runtime, else Keras (`galaxy_core.predictor`).

    Shared by all sessions. Its `.backend` says which, and `.note` why Keras is used, if it is.
    """
    return predictor.make_predictor(load_run(path, path_stamp))


def current_predictor():
    """The chosen run's predictor (see `load_predictor`)."""
    path = current_run_path()
    return load_predictor(path, stamp(path))


@st.cache_data(show_spinner=False, max_entries=64)
def test_images(path: str, path_stamp: str, rows: tuple[int, ...]) -> np.ndarray:
    """uint8 `(k, S, S, 3)` test images of the run (rows of `predictions.h5`)."""
    return np.asarray(load_run(path, path_stamp).read_test_images(np.asarray(rows, dtype=np.int64)))


@st.cache_resource(show_spinner=False, max_entries=2)
def _dataset(path: str, path_stamp: str):
    return open_dataset(path)


@st.cache_data(show_spinner=False, max_entries=64)
def _original_images(path: str, path_stamp: str, rows: tuple[int, ...]) -> np.ndarray | None:
    run = load_run(path, path_stamp)
    source = run.dataset_path
    if source is None or not source.is_file():
        return None
    try:
        dataset = _dataset(str(source), stamp(source))
        indices = run.predictions["indices"][list(rows)]
        if indices.size and (indices.max() >= dataset.n or not np.array_equal(
                dataset.labels[indices], run.predictions["labels"][list(rows)])):
            return None  # another file now lives at that path
        return dataset.read_images(indices)
    except Exception:  # noqa: BLE001 - an unreadable dataset only means "no originals"
        return None


@st.cache_data(show_spinner=False, max_entries=256)
def synthetic_sample(label: int, size: int, seed: int) -> np.ndarray:
    """A generated (synthetic) galaxy of class `label`: uint8 `(size, size, 3)`."""
    return synthetic.render_galaxy(int(label), int(size), np.random.default_rng(int(seed)))


# --- the chosen run -------------------------------------------------------------------------------
def current_run_path() -> str | None:
    """Path of the run chosen in the sidebar, or None when there is no valid run."""
    return st.session_state.get(RUN_KEY)


def current_run():
    """The chosen `RunBundle`, or None; a run that no longer loads gets an error and stops the page."""
    path = current_run_path()
    if not path:
        return None
    try:
        return load_run(path, stamp(path))
    except Exception as err:  # noqa: BLE001 - e.g. deleted or rewritten since it was listed
        list_runs.clear()
        st.error(f"Cannot load the run `{path}`: {describe_error(err)}")
        st.stop()


def current_model():
    """The chosen run's model (raises the loader's error, e.g. `ModelError`, if it cannot load)."""
    path = current_run_path()
    return load_model(path, stamp(path))


def run_config(run) -> Config:
    return run.config if run is not None else Config()


def current_test_images(rows) -> np.ndarray:
    """uint8 `(k, S, S, 3)` test images of the chosen run, as stored (after its preprocessing)."""
    path = current_run_path()
    return test_images(path, stamp(path), tuple(int(r) for r in rows))


def original_test_images(rows) -> np.ndarray | None:
    """The chosen run's test images as they are in the dataset (before preprocessing), or None.

    Bundles store test images after the run's preprocessing; the originals are read from the
    dataset file named in run.json when it is on this machine (and its labels match).

    Returns:
        uint8 `(k, H, W, 3)`, or None when the dataset is not available.
    """
    path = current_run_path()
    return _original_images(path, stamp(path), tuple(int(r) for r in rows))


# --- uploads and classification -------------------------------------------------------------------
def read_upload(data: bytes) -> np.ndarray:
    """Decode the bytes of an uploaded image file: uint8 `(H, W, 3)` RGB (`decode.read_image`)."""
    return decode.read_image(data)


def classify_uploads(files: tuple[tuple[str, bytes], ...], tta: bool) -> list[dict]:
    """Classify uploaded files with the chosen run's model (cached per run, files and TTA).

    Returns:
        One dict per file, in order: `name`, `error` (message or None), `input` (uint8 (S, S, 3)
        preprocessed image the model saw, or None), `probs` (float32 (C,) or None).
    """
    path = current_run_path()
    return _classify(path, stamp(path), files, bool(tta))


@st.cache_data(show_spinner=False, max_entries=32)
def _classify(path: str, path_stamp: str, files: tuple[tuple[str, bytes], ...], tta: bool) -> list[dict]:
    run, model = load_run(path, path_stamp), load_predictor(path, path_stamp)
    results = []
    for name, data in files:
        try:
            # Preprocessed once: what the model sees is both shown and classified.
            model_input = preprocess.preprocess_image(read_upload(data), run.config)
            results.append({"name": name, "error": None, "input": model_input, "probs": None})
        except Exception as err:  # noqa: BLE001 - one bad file must not stop the others
            results.append({"name": name, "error": describe_error(err), "input": None, "probs": None})
    good = [r for r in results if r["error"] is None]
    if good:
        probs = inference.predict_probs(model, np.stack([r["input"] for r in good]), tta=tta)
        for r, p in zip(good, probs):
            r["probs"] = p
    return results


def score_uploads(results: list[dict], labels_csv: bytes, class_names) -> dict:
    """The score of classified uploads against a labels CSV (`galaxy_core.scoring`'s SCORE dict).

    Raises:
        scoring.LabelsError: the CSV cannot be read (the message names the row and the fix).
    """
    labels = scoring.read_labels(labels_csv, class_names)
    rows = [{"file": r["name"], "probs": r["probs"], "error": r["error"]} for r in results]
    return scoring.score_rows(rows, labels, class_names)


def gradcam_overlay(image: np.ndarray, class_index: int) -> np.ndarray:
    """Grad-CAM of `class_index` over a preprocessed `uint8 (S, S, 3)` image, blended on it."""
    path = current_run_path()
    return _gradcam_overlay(path, stamp(path), image, int(class_index))


@st.cache_data(show_spinner=False, max_entries=128)
def _gradcam_overlay(path: str, path_stamp: str, image: np.ndarray, class_index: int) -> np.ndarray:
    heat = explain.gradcam_map(load_model(path, path_stamp), image[None], np.array([class_index]))
    return explain.overlay(image, heat[0])


# --- explanations ---------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=4)
def _explanations(path: str, path_stamp: str):
    run = load_run(path, path_stamp)
    if run.explanations_path is None:
        return None
    stored = explain.load_explanations(run.explanations_path)
    if int(stored.attrs.get("image_size", run.config.image_size)) != run.config.image_size:
        return None
    return {"file": stored, "positions": {int(r): i for i, r in enumerate(stored.rows["row"])}}


def current_explanations():
    """`{"file": Explanations, "positions": {test row: position}}` of the chosen run, or None."""
    path = current_run_path()
    try:
        return _explanations(path, stamp(path))
    except Exception as err:  # noqa: BLE001 - a broken explanations.h5 only disables the shortcut
        st.warning(f"explanations.h5 of this run cannot be read ({describe_error(err)}); maps are "
                   "computed on demand.")
        return None


def stored_explanation(row: int, target: str) -> dict | None:
    """Maps and faithfulness of one test image from explanations.h5, or None if not stored
    (`galaxy_core.explain.Explanations.lookup`, which also refuses rows made for other predictions).

    Returns:
        `{"maps": {method: float32 (S, S)}, "scores": {method: (deletion, insertion)}}`.
    """
    stored = current_explanations()
    if stored is None:
        return None
    path = current_run_path()
    run = load_run(path, stamp(path))
    return stored["file"].lookup(row, target, pred=int(run.predictions["probs"][row].argmax()),
                                 label=int(run.predictions["labels"][row]), methods=METHODS)


def computed_maps(row: int, class_index: int) -> dict:
    """The four maps of one test image for one class, computed now (cached): `{method: (S, S)}`."""
    path = current_run_path()
    return _compute_maps(path, stamp(path), int(row), int(class_index))


def computed_scores(row: int, class_index: int) -> dict:
    """Deletion/insertion areas of the four computed maps (cached): `{method: (deletion, insertion)}`."""
    path = current_run_path()
    return _compute_scores(path, stamp(path), int(row), int(class_index))


@st.cache_data(show_spinner=False, max_entries=64)
def _compute_maps(path: str, path_stamp: str, row: int, class_index: int) -> dict:
    model, run = load_model(path, path_stamp), load_run(path, path_stamp)
    image = test_images(path, path_stamp, (row,))[0]  # uint8 (S, S, 3)
    # SmoothGrad as the stored maps were made: the run's noise samples and seed.
    return explain.explain_image(model, image, class_index, METHODS,
                                 smooth_samples=run.config.smooth_samples, seed=run.config.seed)


@st.cache_data(show_spinner=False, max_entries=64)
def _compute_scores(path: str, path_stamp: str, row: int, class_index: int) -> dict:
    model = load_model(path, path_stamp)
    maps = _compute_maps(path, path_stamp, row, class_index)
    image = test_images(path, path_stamp, (row,))[0]
    return explain.score_maps(model, image, maps, class_index, steps=FAITHFULNESS_STEPS)


# --- several runs (Compare runs, Calibration) -----------------------------------------------------
def valid_runs() -> list:
    """The valid `BundleEntry`s of the runs folder, newest first (as the sidebar lists them)."""
    root = runs_dir()
    return list_runs(str(root), stamp(root))[0]


def load_runs(paths) -> list:
    """The `RunBundle`s at `paths` (cached like the chosen run)."""
    return [load_run(str(p), stamp(p)) for p in paths]


def compare_runs(paths) -> list[dict]:
    """`galaxy_core.compare.compare_metrics` of the runs at `paths` (raises `CompareError` when
    their test sets differ)."""
    return compare.compare_metrics(load_runs(paths))


def confusion_difference(path_a: str, path_b: str, tta: bool = False) -> np.ndarray:
    """float64 `(C, C)`: row-normalised confusion of run A minus run B (`compare.confusion_difference`)."""
    a, b = load_runs([path_a, path_b])
    return compare.confusion_difference(a, b, tta=tta)


def disagreements(path_a: str, path_b: str, tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """`(rows A gets right and B wrong, rows B gets right and A wrong)`, int64 test rows."""
    a, b = load_runs([path_a, path_b])
    return compare.disagreements(a, b, tta=tta)


def run_test_images(path: str, rows) -> np.ndarray:
    """uint8 `(k, S, S, 3)` test images of any listed run (rows of its `predictions.h5`)."""
    return test_images(str(path), stamp(path), tuple(int(r) for r in rows))


# --- calibration ----------------------------------------------------------------------------------
def reliability(labels, probs, n_bins: int) -> dict:
    """`galaxy_core.calibration.reliability_bins` of test labels and probabilities."""
    return calibration.reliability_bins(labels, probs, n_bins)


def calibration_error(labels, probs, n_bins: int) -> float:
    """Expected calibration error (`galaxy_core.calibration.expected_calibration_error`)."""
    return calibration.expected_calibration_error(labels, probs, n_bins)


def calibrated(probs, temperature: float) -> np.ndarray:
    """Probabilities after temperature scaling (`galaxy_core.calibration.apply_temperature`)."""
    return calibration.apply_temperature(probs, temperature)


# --- galaxy properties ----------------------------------------------------------------------------
def accuracy_by_bins(values, correct, n_bins: int):
    """`(edges, accuracy, counts)` in `n_bins` quantile bins of `values` (`galaxy_core.properties`)."""
    return properties.accuracy_by_bins(values, correct, int(n_bins))


# --- embedding and look-alikes --------------------------------------------------------------------
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
    """Compute the chosen run's features and map now (`galaxy_core.evaluate.bundle_embedding`),
    reporting `(done, total)` images to `on_progress`. Cached per bundle; where the bundle folder
    is writable the core also stores them in its predictions.h5 (so the bundle is read anew)."""
    path = current_run_path()
    result = _embedding(path, stamp(path), on_progress)
    st.session_state.setdefault(_COMPUTED_KEY, set()).add(path)
    return result


@st.cache_resource(show_spinner=False, max_entries=4)
def _embedding(path: str, path_stamp: str, _on_progress=None) -> dict:
    from galaxy_core.evaluate import bundle_embedding

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
    (`galaxy_core.embedding.nearest_neighbours`; `exclude`: the query's own test row)."""
    idx, dist = embedding.nearest_neighbours(features, query, k=int(k),
                                             exclude=None if exclude is None else [int(exclude)])
    return idx[0], dist[0]
