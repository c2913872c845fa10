"""The app's chosen run and its cached loaders (bundles, models, predictors, test images).

Heavy objects (bundles, models, predictors) are cached with `st.cache_resource`, keyed by the
bundle's path and `stamp` (its members' modification times), so a bundle replaced on disk is read
again; arrays with `st.cache_data`. The views' other calls into the core go through the modules
beside this one, each for one family of views: `uploads` (Classify), `explanations` (Explain
errors), `compare` (Compare runs), `embedding` (Embedding map), `lab` (Preprocessing lab).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import streamlit as st

from galaxy_core import synthetic
from galaxy_core.bundle import read as bundle, schema
from galaxy_core.models import predictor
from galaxy_core.config import Config
from galaxy_core.data.galaxy10 import open_dataset
from galaxy_core.io import default_runs_dir
from pages.lib.captions import describe_error, md

RUN_KEY = "run_path"  # session-state key of the sidebar's run selector
PENDING_KEY = "select_run_named"  # a run folder name the selector picks on its next draw

def runs_dir() -> Path:
    """The folder the app lists run bundles from: `$GALAXY_RUNS_DIR`, else `./runs`, absolute."""
    return default_runs_dir()


# The members whose rewrite changes what a bundle shows (`train.py --evaluate` rewrites metrics.json and
# predictions.h5, the Embedding view caches features into predictions.h5): every member but explanations.h5.
STAMP_MEMBERS = (*schema.REQUIRED_MEMBERS, schema.MORPHOLOGY_FILE)


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


@st.cache_resource(ttl=30, show_spinner=False)
def list_runs(root: str, root_stamp: str):
    """`(valid entries newest first, invalid entries)` of `galaxy_core.bundle.read.list_bundles`."""
    entries = bundle.list_bundles(root)
    return [e for e in entries if e.ok], [e for e in entries if not e.ok]


@st.cache_resource(show_spinner="Loading the run bundle...", max_entries=8)
def load_run(path: str, path_stamp: str):
    """The `RunBundle` at `path` (validated by `galaxy_core.bundle.read.load_bundle`)."""
    return bundle.load_bundle(path)


@st.cache_resource(show_spinner="Loading the model (once per run)...", max_entries=4)
def load_model(path: str, path_stamp: str):
    """The run's Keras model, loaded once per bundle and shared by all sessions (raises if unloadable)."""
    return load_run(path, path_stamp).load_model()


@st.cache_resource(show_spinner="Loading the morphology classifier (once per run)...", max_entries=4)
def load_morphology(path: str, path_stamp: str):
    """The run's morphology classifier (`RunBundle.load_morphology`), or None when it has none."""
    return load_run(path, path_stamp).load_morphology()


@st.cache_resource(show_spinner="Preparing fast classification (ONNX Runtime; the first time a run's "
                                "model is exported, which can take minutes for DenseNet201)...", max_entries=4)
def load_predictor(path: str, path_stamp: str, backend: str = predictor.DEFAULT_BACKEND):
    """The run's classifier for uploads, made by the `predictor.BACKENDS` row `backend` (default
    "auto": ONNX Runtime, else Keras).

    Shared by all sessions. Its `.backend` says which engine runs (`predictor.backend_label` names
    it), and `.note` why Keras is used, if it is.
    """
    return predictor.make_predictor(load_run(path, path_stamp), backend=backend)


def current_predictor(backend: str = predictor.DEFAULT_BACKEND):
    """The chosen run's predictor (see `load_predictor`)."""
    path = current_run_path()
    return load_predictor(path, stamp(path), backend)


def predictor_label(engine) -> str:
    """The display name of the engine a predictor runs ("ONNX Runtime", "Keras", ...)."""
    return predictor.backend_label(engine)


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
        st.error(f"Cannot load the run {md(path)}: {describe_error(err)}")
        st.stop()


def current_morphology():
    """The chosen run's morphology classifier, or None (raises `BundleError` if it cannot load)."""
    path = current_run_path()
    return load_morphology(path, stamp(path))


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


def valid_runs() -> list:
    """The valid `BundleEntry`s of the runs folder, newest first (as the sidebar lists them)."""
    root = runs_dir()
    return list_runs(str(root), stamp(root))[0]


def load_runs(paths) -> list:
    """The `RunBundle`s at `paths` (cached like the chosen run)."""
    return [load_run(str(p), stamp(p)) for p in paths]


def run_test_images(path: str, rows) -> np.ndarray:
    """uint8 `(k, S, S, 3)` test images of any listed run (rows of its `predictions.h5`)."""
    return test_images(str(path), stamp(path), tuple(int(r) for r in rows))
