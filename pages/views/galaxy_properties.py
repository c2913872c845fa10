"""Galaxy properties: accuracy against redshift, a sky map of correct and wrong test galaxies, links
to the Legacy Surveys viewer."""

from __future__ import annotations

import numpy as np
import streamlit as st

from galaxy_core.data import properties
from pages.lib import state, widgets
from pages.lib.captions import md, sky_links
from pages.lib.figures import accuracy_by_bins_figure, selected_rows, sky_map_figure

MAP_KEY = "prop_sky"
GALLERY_MAX = 24

run = widgets.require_run()
class_names = list(run.config.class_names)
labels = run.predictions["labels"]
probs = run.predictions["probs"]
preds = probs.argmax(axis=1)
correct = preds == labels

st.title("Galaxy properties")
widgets.synthetic_banner(run)
widgets.cnn_only_note([run], "These accuracies are")
sky = run.sky or {}
if sky.get("ra") is None and sky.get("redshift") is None and run.run_info.get("has_sky") is False:
    st.info("This run's data has no sky positions or redshifts (no `ra`/`dec`): it was trained on "
            "labelled images without a catalogue (a class folder or a label table), so there is no "
            "accuracy against redshift and no sky map.", icon=":material/info:")
    st.stop()
if sky.get("ra") is None and sky.get("redshift") is None:
    st.info("This run's bundle keeps no sky columns (`ra`, `dec`, `redshift`, `pxscale` of the test "
            "images in predictions.h5): it was written before they were stored. Runs trained "
            "since keep them, for accuracy against redshift and a sky map.", icon=":material/info:")
    st.stop()
if run.is_synthetic:
    st.caption("Synthetic run: the positions and redshifts below are generated, not catalogue values.")

st.subheader("Accuracy against redshift")
redshift = sky.get("redshift")
known = np.isfinite(redshift) if redshift is not None else np.zeros(len(labels), bool)
if not known.any():
    st.info("No test galaxy has a known redshift.", icon=":material/info:")
else:
    n_bins = st.slider("Bins (equal numbers of galaxies)", 2, 12, 6, key="prop_bins")
    edges, accuracy, counts = properties.accuracy_by_bins(redshift, correct, n_bins)
    st.plotly_chart(accuracy_by_bins_figure(edges, accuracy, counts, "redshift",
                                            overall=float(correct[known].mean())),
                    width="stretch", config={"displayModeBar": False})
    st.caption(f"{int(known.sum())} of {len(labels)} test galaxies have a redshift"
               + (f"; {int((~known).sum())} without one are left out." if (~known).any() else ".")
               + " Hover a bar for its range and size.")

st.subheader("Sky map")
if sky.get("ra") is None:
    st.info("This bundle keeps no sky positions (ra/dec).", icon=":material/info:")
    st.stop()
ra, dec = sky["ra"], sky["dec"]
st.caption(f"{int(correct.sum())} correct, {int((~correct).sum())} misclassified test galaxies. "
           "Draw a lasso around galaxies (or pick the box tool above the map) to see them, each "
           "with a link to the Legacy Surveys viewer (it opens the survey online; the app itself "
           "needs no internet).")
event = st.plotly_chart(sky_map_figure(ra, dec, correct), width="stretch", key=MAP_KEY,
                        on_select="rerun", selection_mode=("points", "box", "lasso"),
                        config={"displaylogo": False})
rows = selected_rows(event)
if rows:
    title = f"**{len(rows)} selected galaxies**"
else:  # nothing selected: the most confident errors
    wrong = np.flatnonzero(~correct)
    rows = wrong[np.argsort(-probs[wrong, preds[wrong]], kind="stable")].tolist()
    title = f"**Misclassified galaxies** ({len(rows)}), most confident first"
shown = rows[:GALLERY_MAX]
st.markdown(title + (f", the first {GALLERY_MAX} shown" if len(rows) > GALLERY_MAX else ""))
if shown:
    z = sky.get("redshift")
    captions = [f"#{r}: {md(class_names[labels[r]])}" + ("" if correct[r] else f" → {md(class_names[preds[r]])}")
                + (f", z {z[r]:.3f}" if z is not None and np.isfinite(z[r]) else "") for r in shown]
    widgets.show_images(state.current_test_images(shown), captions, columns=6,
                        links=sky_links(sky, shown, synthetic=run.is_synthetic))
