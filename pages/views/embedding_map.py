"""Embedding map: the test images' penultimate-layer features in 2-D, selectable, and look-alike search."""

from __future__ import annotations

import numpy as np
import streamlit as st

from pages.lib import embedding, state, uploads, widgets
from pages.lib.captions import describe_error, md, plot_texts, sky_links
from pages.lib.figures import embedding_figure, selected_rows

MAP_KEY = "emb_map"
GALLERY_MAX = 24
METHOD_NAMES = {"tsne": "t-SNE", "pca": "PCA"}

run = widgets.require_run()
class_names = list(run.config.class_names)
labels = run.predictions["labels"]
preds = run.predictions["probs"].argmax(axis=1)

st.title("Embedding map")
widgets.synthetic_banner(run)

found = embedding.current_embedding()
if found is None:
    st.info("This run's bundle keeps no penultimate-layer features (it was evaluated before they "
            "were stored). Compute them now with the run's model: one pass over its "
            f"{run.num_test} test images, then a 2-D map.", icon=":material/info:")
    if st.button("Compute the features and the map", type="primary", icon=":material/play_arrow:",
                 key="emb_compute"):
        widgets.require_model()
        bar = st.progress(0.0, text="Features of the test images...")

        def report(done: int, total: int) -> None:
            bar.progress(done / max(total, 1), text=f"Features: {done}/{total} test images")

        try:
            with st.spinner("Computing (the 2-D map takes a while after the features)..."):
                embedding.compute_embedding(report)
        except Exception as err:  # noqa: BLE001 - say what went wrong, no traceback
            st.error(f"Cannot compute the embedding: {describe_error(err)}")
            st.stop()
        bar.progress(1.0, text="Done")
        st.rerun()
    st.stop()

features, xy = found["features"], found["embedding_2d"]
method = METHOD_NAMES.get(found["method"] or "", found["method"] or "unknown method")
sky = run.sky

if xy is None:
    st.info("Too few test images for a map.")
else:
    o1, _ = st.columns([2, 5])
    colour_by = o1.segmented_control("Colour by", ["true", "predicted"], default="true",
                                     key="emb_colour", format_func=lambda c: f"{c} class") or "true"
    st.caption(f"{len(xy)} test images, {features.shape[1]}-dimensional features mapped to 2-D with "
               f"{method} (scikit-learn). x: misclassified. "
               + ("t-SNE keeps neighbourhoods: nearby points look alike to the model; distances "
                  "between far-apart clusters mean little. " if found["method"] == "tsne" else "")
               + "Draw a lasso around points (or pick the box tool above the map) to see their "
                 "images; double-click the map to clear.")
    event = st.plotly_chart(embedding_figure(xy, labels, preds, plot_texts(class_names), colour_by), width="stretch",
                            key=MAP_KEY, on_select="rerun", selection_mode=("points", "box", "lasso"),
                            config={"displaylogo": False})
    rows = selected_rows(event)
    if rows:
        shown = rows[:GALLERY_MAX]
        st.markdown(f"**{len(rows)} selected test image(s)**"
                    + (f", the first {GALLERY_MAX} shown" if len(rows) > GALLERY_MAX else ""))
        captions = [f"#{r}: {md(class_names[labels[r]])}" + ("" if preds[r] == labels[r]
                                                               else f" → {md(class_names[preds[r]])}")
                    for r in shown]
        widgets.show_images(state.current_test_images(shown), captions, columns=6,
                            links=sky_links(sky, shown, synthetic=run.is_synthetic))
    else:
        rows = []

st.subheader("Look-alikes")
st.caption("The test galaxies nearest to one image in the model's feature space (cosine distance "
           "of the penultimate-layer features).")
q1, q2, q3 = st.columns([2, 3, 2])
source = q1.radio("Find look-alikes of", ["a test image", "an uploaded image"], key="emb_source")
k = q3.slider("How many", 4, 24, 8, step=4, key="emb_k")
query, exclude, query_image, query_caption = None, None, None, ""
if source == "a test image":
    options = list(range(len(labels)))
    if rows:  # the selection first
        options = rows + [r for r in options if r not in rows]
    row = q2.selectbox("Test image", options, key="emb_row",
                       format_func=lambda r: f"#{r}: {class_names[labels[r]]}"
                       + ("" if preds[r] == labels[r] else f" (predicted {class_names[preds[r]]})"))
    query, exclude = features[row], row
    query_image = state.current_test_images([row])[0]
    query_caption = f"#{row}: {md(class_names[labels[row]])}"
else:
    upload = q2.file_uploader("Galaxy image", type=list(uploads.UPLOAD_TYPES), key="emb_upload")
    if upload is not None:
        widgets.require_model()
        try:
            with st.spinner("Features of the upload..."):
                query_image, query = embedding.upload_features(upload.getvalue())
            query_caption = f"{md(upload.name)} (preprocessed)"
        except Exception as err:  # noqa: BLE001 - an unreadable upload gets a message
            st.error(f"Cannot read {md(upload.name)}: {describe_error(err)}")
    else:
        st.info("Upload a JPEG or PNG galaxy image.", icon=":material/upload_file:")

if query is not None:
    near, dist = embedding.look_alikes(features, query, k, exclude)
    left, right = st.columns([1, 5], gap="medium")
    left.image(query_image, caption=query_caption, width="stretch")
    with right:
        captions = [f"#{r}: {md(class_names[labels[r]])} · d {d:.2g}" for r, d in zip(near, dist)]
        widgets.show_images(state.current_test_images(near), captions, columns=min(6, len(near)),
                            links=sky_links(sky, near, synthetic=run.is_synthetic))
    if exclude is not None:
        same = int(np.sum(labels[near] == labels[exclude]))
        st.caption(f"{same} of {len(near)} look-alikes share its true class.")
