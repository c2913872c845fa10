"""Confusion matrix: counts or row shares, a gallery of any cell's test images, per-class scores."""

from __future__ import annotations

import numpy as np
import streamlit as st

from galaxy_core import app_support
from pages import _shared

GALLERY_MAX = 30
CELL_KEY = "cm_cell"

run = _shared.require_run()
class_names = list(run.config.class_names)
labels = run.predictions["labels"]
has_tta = run.predictions.get("probs_tta") is not None and run.metrics.get("test_tta") is not None

st.title("Confusion matrix")
_shared.synthetic_banner(run)

o1, o2, _ = st.columns([2, 2, 3])
normalized = o1.segmented_control("Show", ["counts", "row shares"], default="counts", key="cm_mode") == "row shares"
use_tta = o2.toggle("Test-time augmentation", key="cm_tta", disabled=not has_tta,
                    help="Predictions averaged over 8 rotations/flips (only if the run stored them).")
probs = run.predictions["probs_tta" if use_tta and has_tta else "probs"]
metrics = run.metrics["test_tta" if use_tta and has_tta else "test"]
preds = probs.argmax(axis=1)
matrix = np.asarray(metrics["confusion_matrix"], dtype=np.int64)

st.plotly_chart(app_support.confusion_figure(matrix, class_names, normalized), width="stretch",
                config={"displayModeBar": False})

st.subheader("Images of one cell")
st.caption("Click a cell of this table (rows: true class, columns: predicted class) to see its test "
           "images. Without a selection the most frequent confusion is shown.")
table = app_support.confusion_table(matrix, class_names, normalized)
event = st.dataframe(table.style.format("{:.0%}" if normalized else "{:d}"), key=CELL_KEY,
                     on_select="rerun", selection_mode="single-cell", width="stretch")
cells = event.selection.cells if event is not None else []
if cells:
    row, column = cells[0]
    true_label, pred_label = int(row), class_names.index(column)
else:
    true_label, pred_label = app_support.largest_confusion(matrix)

rows = app_support.cell_indices(labels, preds, true_label, pred_label)
kind = "correct" if true_label == pred_label else "misclassified"
st.markdown(f"**True {class_names[true_label]} → predicted {class_names[pred_label]}**: "
            f"{rows.size} {kind} test image(s)" + (f", the {GALLERY_MAX} most confident shown"
                                                   if rows.size > GALLERY_MAX else ""))
if rows.size:
    rows = rows[np.argsort(-probs[rows, pred_label], kind="stable")][:GALLERY_MAX]
    images = _shared.current_test_images(rows)
    captions = [f"#{r}: p({class_names[pred_label]}) {probs[r, pred_label]:.0%}"
                + ("" if true_label == pred_label else f", p(true) {probs[r, true_label]:.0%}")
                for r in rows]
    _shared.show_images(images, captions, columns=6)

left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader("Per-class scores")
    per_class = app_support.per_class_table(metrics["per_class"], class_names)
    st.dataframe(per_class.style.format({"precision": "{:.3f}", "recall": "{:.3f}", "f1": "{:.3f}"}),
                 width="stretch")
with right:
    st.subheader("Classification report")
    st.code(metrics["classification_report"], language=None)
