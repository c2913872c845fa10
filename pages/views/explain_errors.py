"""Explain errors: the misclassified test images and their explanation maps with their faithfulness."""

from __future__ import annotations

import streamlit as st

from pages.lib import explanations, state, widgets
from pages.lib.captions import md, sky_links
from galaxy_core.explain import describe_methods, method_names
from pages.lib.saliency import map_caption, most_faithful, render_map
from pages.lib.tables import error_pairs, error_table

TABLE_KEY = "err_table"
SORTS = {
    "most confident first": ("confidence", False),
    "least confident first": ("confidence", True),
    "largest margin first": ("margin", False),
    "smallest margin first": ("margin", True),
}


def clear_selection() -> None:
    """A new filter or order makes the selected table position meaningless: select the first row."""
    st.session_state[TABLE_KEY] = {"selection": {"rows": [0], "columns": [], "cells": []}}


run = widgets.require_run()
class_names = list(run.config.class_names)
labels, probs = run.predictions["labels"], run.predictions["probs"]

st.title("Explain errors")
widgets.synthetic_banner(run)
widgets.cnn_only_note([run], "These errors and maps are")

errors = error_table(labels, probs, class_names)
if errors.empty:
    st.success("The model classifies every test image of this run correctly: nothing to explain.")
    st.stop()
stored = explanations.current_explanations()
if stored is not None:  # which errors have their maps in explanations.h5
    errors["precomputed"] = [int(r) in stored["positions"] for r in errors.index]

pairs = error_pairs(errors)
f1, f2, f3 = st.columns([3, 2, 2])
pair = f1.selectbox("True → predicted", ["all pairs"] + list(pairs), key="err_pair",
                    on_change=clear_selection,
                    format_func=lambda p: f"all pairs ({len(errors)} errors)" if p == "all pairs"
                    else f"{p} ({pairs[p]})")
order = f2.selectbox("Sort", list(SORTS), key="err_sort", on_change=clear_selection,
                     help="confidence: the predicted class's probability. margin: p(predicted) − p(true), "
                          "how far the model was from the right answer.")
target = f3.segmented_control("Explain the", ["predicted class", "true class"], default="predicted class",
                              key="err_target") or "predicted class"

shown = errors if pair == "all pairs" else errors[(errors["true"] + " → " + errors["predicted"]) == pair]
column, ascending = SORTS[order]
shown = shown.sort_values(column, ascending=ascending, kind="stable")

st.caption(f"{len(shown)} misclassified test image(s). Click a row to explain it.")
if TABLE_KEY not in st.session_state:
    clear_selection()
event = st.dataframe(
    shown, key=TABLE_KEY, on_select="rerun", selection_mode="single-row", width="stretch",
    height=min(320, 38 + 35 * len(shown)),
    column_config={
        "confidence": st.column_config.ProgressColumn("confidence", format="percent", min_value=0,
                                                      max_value=1),
        "margin": st.column_config.NumberColumn("margin", format="%.2f"),
        "p_true": st.column_config.NumberColumn("p(true)", format="%.2f"),
        "precomputed": st.column_config.CheckboxColumn("stored", help="maps in explanations.h5"),
    })
selected = event.selection.rows if event is not None else []
position = selected[0] if selected and selected[0] < len(shown) else 0
row = int(shown.index[position])
true_label, pred_label = int(labels[row]), int(probs[row].argmax())
target_key = "predicted" if target == "predicted class" else "true"
class_index = pred_label if target_key == "predicted" else true_label

with st.container(border=True):
    st.markdown(f"**Test image #{row}**: true **{md(class_names[true_label])}**, predicted "
                f"**{md(class_names[pred_label])}** ({probs[row, pred_label]:.0%}); p(true) "
                f"{probs[row, true_label]:.0%}"
                + "".join(f" · {link}" for link in (sky_links(run.sky, [row], synthetic=run.is_synthetic) or []) if link))
    image = state.current_test_images([row])[0]
    result = explanations.stored_explanation(row, target_key)
    st.caption(("Maps from `explanations.h5`." if result else "Maps computed now (not in "
                f"`explanations.h5`; faithfulness with {explanations.FAITHFULNESS_STEPS} steps).")
               + f" Explaining **{md(class_names[class_index])}**.")
    mode = st.segmented_control("Show maps", ["overlay", "heatmap"], default="overlay",
                                key="err_mode") or "overlay"
    stored = result is not None
    if result is None:
        widgets.require_model()  # an unloadable model: its reason, then stop
        with st.spinner(f"Computing {describe_methods()}..."):
            result = {"maps": explanations.computed_maps(row, class_index), "scores": None}
    methods = method_names()
    cols = st.columns(1 + len(methods))
    cols[0].image(image, width="stretch")
    cols[0].markdown("**original**  \n:gray[the model's input]")
    captions = {}
    for col, method in zip(cols[1:], methods):
        col.image(render_map(image, result["maps"][method], mode), width="stretch")
        captions[method] = col.empty()
        captions[method].markdown(map_caption(method, None if result["scores"] is None
                                              else result["scores"][method]))
    if result["scores"] is None:  # maps first, faithfulness next (many forward passes)
        with st.spinner(f"Scoring faithfulness ({2 * (explanations.FAITHFULNESS_STEPS + 1)} forward passes "
                        "per map)..."):
            scores = explanations.computed_scores(row, class_index)
        for method in methods:
            captions[method].markdown(map_caption(method, scores[method]))
        result["scores"] = scores
    note = explanations.cam_note(stored)
    if note:  # a 1 x 1 feature map: say why the two Grad-CAM maps are blank
        st.caption(note)
    verdict = most_faithful(result["scores"])
    if verdict:
        st.markdown(verdict)
    st.caption("Faithfulness (Petsiuk et al. 2018): pixels are removed (deletion) or restored "
               "(insertion) in the order the map ranks them, and the class probability is tracked. "
               "**del ↓** lower is better, **ins ↑** higher is better.")
