"""Confusion matrix: counts or row shares, a gallery of any cell's test images, per-class scores."""

from __future__ import annotations

import numpy as np
import streamlit as st

from pages.lib import state, widgets
from pages.lib.captions import format_percent, md, plot_texts, sky_links
from pages.lib.figures import confusion_figure
from pages.lib.tables import cell_indices, cell_position, cell_table, per_class_table

GALLERY_MAX = 30
CELL_KEY = "cm_cell"
CHOSEN_KEY = "cm_cell_chosen"  # {"table": (run, tta), "cell": (true, predicted)}

run = widgets.require_run()
class_names = list(run.config.class_names)
labels = run.predictions["labels"]
has_tta = run.predictions.get("probs_tta") is not None and run.metrics.get("test_tta") is not None

st.title("Confusion matrix")
widgets.synthetic_banner(run)

o1, o2, _ = st.columns([2, 2, 3])
mode = o1.segmented_control("Show", ["counts", "row shares"], default="counts", key="cm_mode")
normalized = mode == "row shares"
use_tta = o2.toggle("Test-time augmentation", key="cm_tta", disabled=not has_tta,
                    help="Predictions averaged over 8 rotations/flips (only if the run stored them).")
probs = run.predictions["probs_tta" if use_tta and has_tta else "probs"]
metrics = run.metrics["test_tta" if use_tta and has_tta else "test"]
preds = probs.argmax(axis=1)
matrix = np.asarray(metrics["confusion_matrix"], dtype=np.int64)

st.plotly_chart(confusion_figure(matrix, plot_texts(class_names), normalized), width="stretch",
                config={"displayModeBar": False})
st.caption("Rows: true class; columns: predicted class. Hover a cell for its count and share.")
if (blend := run.blend_metrics) is not None:
    st.caption(f"This matrix is the CNN's alone. The run classifies with the CNN blended with its "
               f"morphology classifier, which scores {format_percent(blend.blended['accuracy'])} on these test images "
               f"(the CNN alone {format_percent(run.metrics['test']['accuracy'])}; Overview).")

st.subheader("Images of one cell")
cells = cell_table(matrix, class_names)
# The table's rows change with the TTA switch and the run: keep the (true, predicted) cell the user
# chose, not its position in the old table.
table_id = (str(run.path), bool(use_tta and has_tta))
chosen = st.session_state.get(CHOSEN_KEY)
if chosen is not None and chosen["table"] != table_id:
    position = cell_position(cells, *chosen["cell"])
    st.session_state[CELL_KEY] = {"selection": {"rows": [position], "columns": [], "cells": []}}
st.session_state.setdefault(CELL_KEY, {"selection": {"rows": [0], "columns": [], "cells": []}})
pick, gallery = st.columns([3, 2], gap="medium")
with pick:
    st.caption("Errors first, most frequent first. Click a row to see its test images.")
    event = st.dataframe(
        cells, key=CELL_KEY, on_select="rerun", selection_mode="single-row", width="stretch",
        hide_index=True, height=min(420, 38 + 35 * len(cells)),
        column_order=["true", "predicted", "images", "share"],
        column_config={"true": st.column_config.TextColumn("true", width=170),
                       "predicted": st.column_config.TextColumn("predicted", width=170),
                       "images": st.column_config.NumberColumn("images", width=60),
                       "share": st.column_config.NumberColumn("of true", format="percent", width=70,
                                                              help="share of the true class")})
selected = event.selection.rows if event is not None else []
position = selected[0] if selected and selected[0] < len(cells) else 0
true_label, pred_label = int(cells["true_index"].iloc[position]), int(cells["pred_index"].iloc[position])
st.session_state[CHOSEN_KEY] = {"table": table_id, "cell": (true_label, pred_label)}

rows = cell_indices(labels, preds, true_label, pred_label)
kind = "correct" if true_label == pred_label else "misclassified"
with gallery:
    st.markdown(f"**True {md(class_names[true_label])} → predicted {md(class_names[pred_label])}**: "
                f"{rows.size} {kind} test image(s)" + (f", the {GALLERY_MAX} most confident shown"
                                                       if rows.size > GALLERY_MAX else ""))
    if rows.size:
        rows = rows[np.argsort(-probs[rows, pred_label], kind="stable")][:GALLERY_MAX]
        images = state.current_test_images(rows)
        captions = [f"#{r}: p(pred) {probs[r, pred_label]:.0%}"
                    + ("" if true_label == pred_label else f", p(true) {probs[r, true_label]:.0%}")
                    for r in rows]
        widgets.show_images(images, captions, columns=3, links=sky_links(run.sky, rows, synthetic=run.is_synthetic))

left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader("Per-class scores")
    per_class = per_class_table(metrics["per_class"], class_names)
    st.dataframe(per_class.style.format({"precision": "{:.3f}", "recall": "{:.3f}", "f1": "{:.3f}"}),
                 width="stretch")
with right:
    st.subheader("Classification report")
    st.code(metrics["classification_report"], language=None)
