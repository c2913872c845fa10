"""Uploads on the Classify page: decode, preprocess once, classify (cached), score, Grad-CAM."""

from __future__ import annotations

import numpy as np
import streamlit as st

from galaxy_core import explain
from galaxy_core.preprocessing import decode
from galaxy_core.evaluation import scoring
from galaxy_core.inference import classify
from pages.lib.state import current_run_path, load_model, load_morphology, load_predictor, load_run, stamp

# What an upload may be: the core's one decoder decides (formats judged by content, pixel cap).
UPLOAD_TYPES: tuple[str, ...] = decode.ACCEPTED_EXTENSIONS
MAX_UPLOAD_PIXELS: int = decode.MAX_IMAGE_PIXELS


def read_upload(data: bytes) -> np.ndarray:
    """Decode the bytes of an uploaded image file: uint8 `(H, W, 3)` RGB (`decode.read_image`)."""
    return decode.read_image(data)


def classify_uploads(files: tuple[tuple[str, bytes], ...], tta: bool) -> list[dict]:
    """Classify uploaded files with the chosen run's model (cached per run, files and TTA).

    Returns:
        One dict per file, in order: `name`, `error` (message or None), `input` (uint8 (S, S, 3)
        preprocessed image the model saw, or None), `probs` (float32 (C,) or None: the run's
        probabilities), and for a blended run also `probs_cnn` and `probs_morphology` (the two parts
        `probs` blends; `galaxy_core.inference.classify.classify_each(..., parts=True)`).
    """
    path = current_run_path()
    return _classify(path, stamp(path), files, bool(tta))


@st.cache_data(show_spinner=False, max_entries=32)
def _classify(path: str, path_stamp: str, files: tuple[tuple[str, bytes], ...], tta: bool) -> list[dict]:
    run, model = load_run(path, path_stamp), load_predictor(path, path_stamp)
    morphology = load_morphology(path, path_stamp)
    # The core's one classification path; parts=True keeps the preprocessed image the model saw
    # (shown beside its classes) and, for a blended run, the two probabilities it blends.
    found = classify.classify_each(model, run.config, [data for _, data in files], tta=tta,
                                   morphology=morphology, parts=True)
    results = []
    for (name, _), item in zip(files, found):
        result = {"name": name, "error": item.error, "input": item.input, "probs": item.probs}
        if item.probs_morphology is not None:
            result.update(probs_cnn=item.probs_cnn, probs_morphology=item.probs_morphology)
        results.append(result)
    return results


def score_uploads(results: list[dict], labels_csv: bytes, class_names) -> dict:
    """The score of classified uploads against a labels CSV (`galaxy_core.evaluation.scoring`'s SCORE dict).

    Raises:
        scoring.LabelsError: the CSV cannot be read (the message names the row and the fix).
    """
    labels = scoring.read_labels(labels_csv, class_names)
    rows = [{"file": r["name"], "probs": r["probs"], "error": r["error"]} for r in results]
    return scoring.score_rows(rows, labels, class_names)


def gradcam_note() -> str | None:
    """Why Grad-CAM shows nothing for the chosen run's model (a 1 x 1 feature map), or None."""
    path = current_run_path()
    return _gradcam_note(path, stamp(path))


@st.cache_data(show_spinner=False, max_entries=8)
def _gradcam_note(path: str, path_stamp: str) -> str | None:
    return explain.flat_feature_map_note(load_model(path, path_stamp))


def gradcam_overlay(image: np.ndarray, class_index: int) -> np.ndarray:
    """Grad-CAM of `class_index` over a preprocessed `uint8 (S, S, 3)` image, blended on it."""
    path = current_run_path()
    return _gradcam_overlay(path, stamp(path), image, int(class_index))


@st.cache_data(show_spinner=False, max_entries=128)
def _gradcam_overlay(path: str, path_stamp: str, image: np.ndarray, class_index: int) -> np.ndarray:
    heat = explain.gradcam_map(load_model(path, path_stamp), image[None], np.array([class_index]))
    return explain.overlay(image, heat[0])
