"""Explanations of test images: stored ones (explanations.h5) and maps computed on demand (cached)."""

from __future__ import annotations

import streamlit as st

from galaxy_core import explain
from pages.lib.captions import describe_error
from pages.lib.state import current_run_path, load_model, load_run, stamp, test_images

FAITHFULNESS_STEPS = 10  # deletion/insertion steps computed on demand (2 x 11 forward passes per map)


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
                                 label=int(run.predictions["labels"][row]), methods=explain.method_names())


def computed_maps(row: int, class_index: int) -> dict:
    """The maps of one test image for one class, every method of the table, computed now (cached):
    `{method: (S, S)}`."""
    path = current_run_path()
    return _compute_maps(path, stamp(path), int(row), int(class_index))


def computed_scores(row: int, class_index: int) -> dict:
    """Deletion/insertion areas of the computed maps (cached): `{method: (deletion, insertion)}`."""
    path = current_run_path()
    return _compute_scores(path, stamp(path), int(row), int(class_index))


@st.cache_data(show_spinner=False, max_entries=64)
def _compute_maps(path: str, path_stamp: str, row: int, class_index: int) -> dict:
    model, run = load_model(path, path_stamp), load_run(path, path_stamp)
    image = test_images(path, path_stamp, (row,))[0]  # uint8 (S, S, 3)
    # SmoothGrad as the stored maps were made: the run's noise samples and seed.
    return explain.explain_image(model, image, class_index, explain.method_names(),
                                 smooth_samples=run.config.smooth_samples, seed=run.config.seed)


@st.cache_data(show_spinner=False, max_entries=64)
def _compute_scores(path: str, path_stamp: str, row: int, class_index: int) -> dict:
    model = load_model(path, path_stamp)
    maps = _compute_maps(path, path_stamp, row, class_index)
    image = test_images(path, path_stamp, (row,))[0]
    return explain.score_maps(model, image, maps, class_index, steps=FAITHFULNESS_STEPS)


def cam_note(stored: bool) -> str | None:
    """Why the Grad-CAM maps of this run are blank (a 1 x 1 feature map), or None.

    `stored`: the maps came from explanations.h5 (its note is read; no model is loaded), else from
    the model (`explain.flat_feature_map_note`).
    """
    if stored:
        found = current_explanations()
        return found["file"].note("gradcam") if found is not None else None
    path = current_run_path()
    return _cam_note(path, stamp(path))


@st.cache_data(show_spinner=False, max_entries=8)
def _cam_note(path: str, path_stamp: str) -> str | None:
    return explain.flat_feature_map_note(load_model(path, path_stamp))
