"""Streamlit helpers shared by the views: cached loaders, the sidebar run selector, banners.

Not a page (the router in `streamlit_app.py` lists the pages explicitly). Heavy objects (bundles,
models) are cached with `st.cache_resource`, keyed by the bundle's path and modification time, so a
bundle replaced on disk is read again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from galaxy_core import app_support
from galaxy_core.config import Config

RUN_KEY = "run_path"  # session-state key of the sidebar's run selector
PENDING_KEY = "select_run_named"  # a run folder name the selector picks on its next draw


# --- cached loaders -------------------------------------------------------------------------------
def _stamp(path: str | Path) -> float:
    """Modification time of a bundle folder (bundles are renamed into place, so it changes)."""
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


@st.cache_resource(ttl=30, show_spinner=False)
def list_runs(runs_dir: str, stamp: float):
    """`(valid entries newest first, invalid entries)` of `galaxy_core.bundle.list_bundles`."""
    from galaxy_core import bundle

    entries = bundle.list_bundles(runs_dir)
    valid = [e for e in entries if app_support.entry_is_valid(e)]
    invalid = [e for e in entries if not app_support.entry_is_valid(e)]
    return valid, invalid


@st.cache_resource(show_spinner="Loading the run bundle...", max_entries=8)
def load_run(path: str, stamp: float):
    """The `RunBundle` at `path` (validated by `galaxy_core.bundle.load_bundle`)."""
    from galaxy_core import bundle

    return bundle.load_bundle(path)


@st.cache_resource(show_spinner="Loading the model (once per run)...", max_entries=4)
def load_model(path: str, stamp: float):
    """The run's Keras model, loaded once per bundle and shared by all sessions."""
    return load_run(path, stamp).load_model()


@st.cache_data(show_spinner=False, max_entries=64)
def test_images(path: str, stamp: float, rows: tuple[int, ...]) -> np.ndarray:
    """uint8 `(k, H, W, 3)` test images of the run (rows of `predictions.h5`)."""
    return np.asarray(load_run(path, stamp).read_test_images(np.asarray(rows, dtype=np.int64)))


@st.cache_resource(show_spinner=False, max_entries=2)
def _dataset(path: str, stamp: float):
    from galaxy_core.data import open_dataset

    return open_dataset(path)


@st.cache_data(show_spinner=False, max_entries=64)
def _original_images(path: str, stamp: float, rows: tuple[int, ...]) -> np.ndarray | None:
    run = load_run(path, stamp)
    source = run.run_info.get("dataset_path")
    if not source or not Path(source).is_file():
        return None
    try:
        dataset = _dataset(str(source), _stamp(source))
        indices = run.predictions["indices"][list(rows)]
        if indices.size and (indices.max() >= dataset.n or not np.array_equal(
                dataset.labels[indices], run.predictions["labels"][list(rows)])):
            return None  # another file now lives at that path
        return dataset.read_images(indices)
    except Exception:  # noqa: BLE001 - an unreadable dataset only means "no originals"
        return None


def original_test_images(rows) -> np.ndarray | None:
    """The chosen run's test images as they are in the dataset (before preprocessing), or None.

    Bundles store test images after the run's preprocessing; the originals are read from the
    dataset file named in run.json when it is on this machine (and its labels match).

    Returns:
        uint8 `(k, H, W, 3)`, or None when the dataset is not available.
    """
    path = current_run_path()
    return _original_images(path, _stamp(path), tuple(int(r) for r in rows))


@st.cache_data(show_spinner=False, max_entries=256)
def synthetic_sample(label: int, size: int, seed: int) -> np.ndarray:
    """A generated (synthetic) galaxy of class `label`: uint8 `(size, size, 3)`."""
    from galaxy_core import synthetic

    return synthetic.render_galaxy(int(label), int(size), np.random.default_rng(int(seed)))


# --- current run --------------------------------------------------------------------------------
def current_run_path() -> str | None:
    """Path of the run chosen in the sidebar, or None when there is no valid run."""
    return st.session_state.get(RUN_KEY)


def current_run():
    """The chosen `RunBundle`, or None (then the page should say so and stop)."""
    path = current_run_path()
    if not path:
        return None
    try:
        return load_run(path, _stamp(path))
    except Exception as err:  # noqa: BLE001 - e.g. deleted or rewritten since it was listed
        list_runs.clear()
        st.error(f"Cannot load the run `{path}`: {app_support.describe_error(err)}")
        st.stop()


def current_test_images(rows) -> np.ndarray:
    path = current_run_path()
    return test_images(path, _stamp(path), tuple(int(r) for r in rows))


def require_run():
    """The chosen run; if there is none, say so with a link to the start view and stop the page."""
    run = current_run()
    if run is None:
        st.info("No run bundle yet. Build the demo run or train one first.")
        st.page_link("pages/views/start.py", label="Get started", icon=":material/rocket_launch:")
        st.stop()
    return run


def run_config(run) -> Config:
    return run.config if run is not None else Config()


def synthetic_banner(run) -> None:
    """A clear warning on every view of a run trained on synthetic data."""
    if run is not None and app_support.bundle_is_synthetic(run):
        st.warning("**Synthetic run.** This model was trained and tested on generated galaxies, not on "
                   "Galaxy10 DECaLS. Its numbers show that the pipeline works, not how well galaxies "
                   "are classified.", icon=":material/science:")


# --- sidebar ----------------------------------------------------------------------------------------
def sidebar_run_selector():
    """Draw the run selector in the sidebar; return the chosen valid entry, or None if there is none."""
    root = app_support.runs_dir()
    try:
        valid, invalid = list_runs(str(root.resolve()), _stamp(root))
    except Exception as err:  # noqa: BLE001 - an unreadable runs folder must not break the app
        valid, invalid = [], []
        st.sidebar.error(f"Cannot list runs in `{root}`: {err}")
    paths = [str(app_support.entry_path(e)) for e in valid]
    labels = {str(app_support.entry_path(e)): app_support.run_label(e) for e in valid}
    chosen = None
    with st.sidebar:
        st.subheader("Run")
        if paths:
            pending = st.session_state.pop(PENDING_KEY, None)
            named = [p for p in paths if Path(p).name == pending]
            if named:
                st.session_state[RUN_KEY] = named[0]
            elif st.session_state.get(RUN_KEY) not in paths:
                st.session_state[RUN_KEY] = paths[0]  # newest first
            st.selectbox("Run bundle", paths, format_func=lambda p: labels.get(p, p), key=RUN_KEY,
                         help=f"Valid bundles in `{root}`, newest first (set $GALAXY_RUNS_DIR to "
                              "read another folder).")
            chosen = valid[paths.index(st.session_state[RUN_KEY])]
            st.caption(app_support.run_label(chosen).replace(" · ", "  \n", 1).replace(" · ", " · "))
        else:
            st.session_state.pop(RUN_KEY, None)
            st.caption(f"No valid run in `{root}`.")
        if invalid:
            with st.expander(f"{len(invalid)} invalid run(s)", icon=":material/error:"):
                for entry in invalid:
                    st.markdown(f"**{app_support.entry_path(entry).name}**: "
                                f"{app_support.entry_reason(entry)}")
    return chosen


def show_images(images, captions, columns: int, width: Any = "stretch") -> None:
    """Images in a grid of `columns` columns, with captions (one `st.columns` per row, so rows
    stay aligned when captions wrap)."""
    images, captions = list(images), list(captions)
    for start in range(0, len(images), columns):
        for col, image, caption in zip(st.columns(columns), images[start:start + columns],
                                       captions[start:start + columns]):
            col.image(image, caption=caption, width=width)


def read_upload(upload) -> np.ndarray:
    """Decode an uploaded file (Streamlit `UploadedFile`) to an image array."""
    return read_image_bytes(upload.getvalue())


# --- classify -------------------------------------------------------------------------------------
def classify_uploads(files: tuple[tuple[str, bytes], ...], tta: bool) -> list[dict]:
    """Classify uploaded files with the chosen run's model (cached per run, files and TTA).

    Returns:
        One dict per file, in order: `name`, `error` (message or None), `input` (uint8 (S, S, 3)
        preprocessed image the model saw, or None), `probs` (float32 (C,) or None).
    """
    path = current_run_path()
    return _classify(path, _stamp(path), files, bool(tta))


@st.cache_data(show_spinner=False, max_entries=32)
def _classify(path: str, stamp: float, files: tuple[tuple[str, bytes], ...], tta: bool) -> list[dict]:
    from galaxy_core import inference, preprocess

    run, model = load_run(path, stamp), load_model(path, stamp)
    results = []
    for name, data in files:
        try:
            image = read_image_bytes(data)
            results.append({"name": name, "error": None,
                            "input": preprocess.preprocess_image(image, run.config), "probs": None})
        except Exception as err:  # noqa: BLE001 - one bad file must not stop the others
            results.append({"name": name, "error": app_support.describe_error(err), "input": None,
                            "probs": None})
    good = [r for r in results if r["error"] is None]
    if good:
        probs = inference.predict_probs(model, np.stack([r["input"] for r in good]), tta=tta)
        for r, p in zip(good, probs):
            r["probs"] = p
    return results


def read_image_bytes(data: bytes) -> np.ndarray:
    """Decode the bytes of an image file (`galaxy_core.decode.read_image`)."""
    from galaxy_core import decode

    return decode.read_image(data)


def gradcam_overlay(image: np.ndarray, class_index: int) -> np.ndarray:
    """Grad-CAM of `class_index` over a preprocessed `uint8 (S, S, 3)` image, blended on it."""
    path = current_run_path()
    return _gradcam_overlay(path, _stamp(path), image, int(class_index))


@st.cache_data(show_spinner=False, max_entries=128)
def _gradcam_overlay(path: str, stamp: float, image: np.ndarray, class_index: int) -> np.ndarray:
    from galaxy_core import explain, preprocess

    model = load_model(path, stamp)
    heat = explain.gradcam_map(model, preprocess.rescale(image[None]), np.array([class_index]))
    return explain.overlay(image, heat[0])


# --- explanations --------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=4)
def _explanations(path: str, stamp: float):
    from galaxy_core.explain.store import load_explanations

    run = load_run(path, stamp)
    if run.explanations_path is None:
        return None
    stored = load_explanations(run.explanations_path)
    if int(stored.attrs.get("image_size", run.config.image_size)) != run.config.image_size:
        return None
    return {"file": stored, "positions": {int(r): i for i, r in enumerate(stored.rows["row"])}}


def current_explanations():
    """`{"file": Explanations, "positions": {test row: position}}` of the chosen run, or None."""
    path = current_run_path()
    try:
        return _explanations(path, _stamp(path))
    except Exception as err:  # noqa: BLE001 - a broken explanations.h5 only disables the shortcut
        st.warning(f"explanations.h5 of this run cannot be read ({err}); maps are computed on demand.")
        return None


FAITHFULNESS_STEPS = 10  # deletion/insertion steps computed on demand (2 x 11 forward passes per map)


def stored_explanation(row: int, target: str) -> dict | None:
    """Maps and faithfulness of one test image from explanations.h5, or None if not stored.

    Returns:
        `{"maps": {method: float32 (S, S)}, "scores": {method: (deletion, insertion)}}`.
    """
    stored = current_explanations()
    if stored is None or row not in stored["positions"] or target not in stored["file"].targets:
        return None
    f, i = stored["file"], stored["positions"][row]
    if not all(m in f.methods for m in app_support.METHODS):
        return None
    path = current_run_path()
    run = load_run(path, _stamp(path))
    if (int(f.rows["pred"][i]) != int(run.predictions["probs"][row].argmax())
            or int(f.rows["label"][i]) != int(run.predictions["labels"][row])):
        return None  # stored for other predictions (e.g. re-evaluated since): compute anew
    return {"maps": {m: f.map(m, target, i) for m in app_support.METHODS},
            "scores": {m: (float(f.scores[m][target]["deletion"][i]),
                           float(f.scores[m][target]["insertion"][i])) for m in app_support.METHODS}}


def computed_maps(row: int, class_index: int) -> dict:
    """The four maps of one test image for one class, computed now (cached): `{method: (S, S)}`."""
    path = current_run_path()
    return _compute_maps(path, _stamp(path), int(row), int(class_index))


def computed_scores(row: int, class_index: int) -> dict:
    """Deletion/insertion areas of the four computed maps (cached): `{method: (deletion, insertion)}`."""
    path = current_run_path()
    return _compute_scores(path, _stamp(path), int(row), int(class_index))


@st.cache_data(show_spinner=False, max_entries=64)
def _compute_maps(path: str, stamp: float, row: int, class_index: int) -> dict:
    from galaxy_core import explain, preprocess

    model = load_model(path, stamp)
    x = preprocess.rescale(test_images(path, stamp, (row,)))  # float32 (1, S, S, 3)
    run = load_run(path, stamp)
    # SmoothGrad as the stored maps were made: the run's noise samples and seed.
    options = {"smoothgrad": {"samples": run.config.smooth_samples, "seed": run.config.seed}}
    return {m: explain.METHODS[m](model, x, np.array([class_index]), **options.get(m, {}))[0]
            for m in app_support.METHODS}


@st.cache_data(show_spinner=False, max_entries=64)
def _compute_scores(path: str, stamp: float, row: int, class_index: int) -> dict:
    from galaxy_core import explain, preprocess

    model = load_model(path, stamp)
    maps = _compute_maps(path, stamp, row, class_index)
    x = preprocess.rescale(test_images(path, stamp, (row,)))
    n = len(app_support.METHODS)
    # One faithfulness call for the four maps: the image repeated once per map.
    found = explain.faithfulness_scores(model, np.repeat(x, n, axis=0),
                                        np.stack([maps[m] for m in app_support.METHODS]),
                                        np.full(n, class_index), steps=FAITHFULNESS_STEPS)
    return {m: (float(found["deletion"][i]), float(found["insertion"][i]))
            for i, m in enumerate(app_support.METHODS)}


# --- subprocess with live output ------------------------------------------------------------------
def stream_command(command: list[str], cwd: str | Path, tail: int = 15) -> int:
    """Run a CLI, showing a progress bar (from its text progress bars / Keras epochs) and its last
    lines while it runs. The process is terminated if the script run is stopped (page left).

    Returns:
        The exit code.
    """
    import codecs
    import subprocess

    bar = st.progress(0.0, text="Starting...")
    log = st.empty()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    output = ""
    try:
        while True:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            output = (output + decoder.decode(chunk))[-20_000:]  # the tail is all that is shown
            fraction, last = app_support.parse_progress(output)
            if fraction is not None:
                bar.progress(fraction, text=last[:120])
            log.code(app_support.tail_lines(output, tail), language=None)
        code = proc.wait()
    finally:
        if proc.poll() is None:  # the page was left or rerun: do not leave an orphan trainer
            proc.terminate()
            proc.wait()
        proc.stdout.close()
    if code == 0:
        bar.progress(1.0, text="Done")
    return code
