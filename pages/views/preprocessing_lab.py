"""Preprocessing lab: galaxy crop, CLAHE and morphological opening on one image, live, as training does it."""

from __future__ import annotations

import json

import numpy as np
import streamlit as st

from galaxy_core.config import PREPROCESS_FIELDS
from galaxy_core.preprocessing.preprocess import preprocess_stages
from pages.lib import state, uploads, widgets
from pages.lib.captions import describe_error, md
from pages.lib.figures import histogram_figure
from pages.lib.lab import (SAMPLE_SIZE, WIDGET_KEYS, Widget, crop_caption, lab_widgets, preprocess_params,
                           preprocess_thumbnails, train_command)

run = state.current_run()
base = state.run_config(run)  # defaults: the selected run's config, else Config()
class_names = list(base.class_names)
size = base.image_size


def reset_parameters() -> None:
    """Widget values live in session state (one key per config field) so "Reset" can set them."""
    for name, value in preprocess_params(base).items():
        st.session_state[WIDGET_KEYS[name]] = value


def draw_widget(widget: Widget) -> None:
    """The Streamlit widget of one field (its value lives in session state under `widget.key`)."""
    disabled = widget.off_unless is not None and st.session_state[WIDGET_KEYS[widget.off_unless]] == 0
    common = dict(key=widget.key, help=widget.help, disabled=disabled)
    if widget.kind == "slider":
        st.slider(widget.label, *widget.bounds, step=widget.step, **common)
    elif widget.kind == "select_slider":
        st.select_slider(widget.label, widget.options, **common)
    elif widget.kind == "radio":
        st.radio(widget.label, widget.options, horizontal=True, **common)
    else:
        st.selectbox(widget.label, widget.options, **common)


for name, value in preprocess_params(base).items():
    st.session_state.setdefault(WIDGET_KEYS[name], value)

st.title("Preprocessing lab")
st.caption(
    f"Galaxy crop (off by default), CLAHE, then morphological opening, at {size}x{size} px: the exact "
    f"functions training uses "
    f"(`galaxy_core.preprocessing.preprocess`). Defaults: {'the selected run' if run else 'galaxy_core.config.Config'}."
)
widgets.synthetic_banner(run)

controls, view = st.columns([1, 3], gap="large")

# --- controls -------------------------------------------------------------------------------------
with controls:
    sources = ["Generated sample"] + (["Test image of the run"] if run is not None else []) + ["Upload"]
    source = st.radio("Image", sources, key="lab_source")
    image, caption = None, ""
    if source == "Generated sample":
        label = st.selectbox("Class", range(len(class_names)), format_func=lambda i: class_names[i],
                             key="lab_class")
        seed = st.number_input("Seed", min_value=0, max_value=10_000, value=0, step=1, key="lab_seed")
        image = state.synthetic_sample(label, max(size, SAMPLE_SIZE), seed)
        caption = f"synthetic {md(class_names[label])} (seed {seed})"
    elif source == "Test image of the run":
        labels = run.predictions["labels"]
        label = st.selectbox("Class", range(len(class_names)), format_func=lambda i: class_names[i],
                             key="lab_test_class")
        rows = np.flatnonzero(labels == label)
        if rows.size:
            k = st.number_input(f"Image (of {rows.size})", min_value=1, max_value=int(rows.size), value=1,
                                key="lab_test_k")
            row = int(rows[k - 1])
            kind = "synthetic" if run.is_synthetic else "test"
            originals = state.original_test_images([row])
            if originals is not None:
                image = originals[0]
                caption = f"{kind} image #{row}, {md(class_names[label])}"
            else:
                image = state.current_test_images([row])[0]
                caption = f"{kind} image #{row}, {md(class_names[label])}, already preprocessed"
                st.warning("The run's dataset file is not on this machine, and bundles keep test images "
                           "after the run's preprocessing: this image gets the crop, CLAHE and opening "
                           "a second time.", icon=":material/warning:")
        else:
            st.info(f"The run's test split has no {md(class_names[label])} image.")
    else:
        upload = st.file_uploader("Upload a JPEG or PNG", type=list(uploads.UPLOAD_TYPES), key="lab_upload")
        if upload is not None:
            try:
                image = uploads.read_upload(upload.getvalue())
                caption = md(upload.name)
            except Exception as err:  # noqa: BLE001 - any undecodable upload gets a message
                st.error(f"Cannot read {md(upload.name)}: {describe_error(err)}")

    heading = None
    for widget in lab_widgets():  # one per preprocessing field, from its Config metadata
        if widget.group != heading:
            st.markdown(f"**{widget.group}**")
            heading = widget.group
        draw_widget(widget)
    st.button("Reset to defaults", on_click=reset_parameters, icon=":material/restart_alt:")

params = {name: st.session_state[WIDGET_KEYS[name]] for name in PREPROCESS_FIELDS}
cfg = base.replace(**params)

# --- results -------------------------------------------------------------------------------------
with view:
    if image is None:
        st.info("Choose an image on the left.")
    else:
        stages = preprocess_stages(image, cfg)
        captions = {"original": f"original: {caption}", "galaxy crop": crop_caption(image, cfg)}
        cols = st.columns(len(stages))
        for col, (name, stage) in zip(cols, stages.items()):
            with col:
                st.image(stage, caption=captions.get(name, name), width="stretch")
        st.plotly_chart(histogram_figure(stages), width="stretch",
                        config={"displayModeBar": False})

    originals = None
    if run is not None:  # the first test image of each class, from the run's dataset file
        labels = run.predictions["labels"]
        per_class = [np.flatnonzero(labels == c) for c in range(len(class_names))]
        present = [c for c, rows in enumerate(per_class) if rows.size]
        originals = state.original_test_images([per_class[c][0] for c in present])
    if originals is not None:
        st.markdown(f"**One test image per class** (run **{md(run.name)}**"
                    + (", synthetic)" if run.is_synthetic else ")") + ", preprocessed with these parameters")
        samples = list(originals)
    else:
        st.markdown("**One generated (synthetic) galaxy per class**, preprocessed with these parameters")
        present = list(range(len(class_names)))
        samples = [state.synthetic_sample(c, max(size, SAMPLE_SIZE), 0) for c in present]
    thumbs = preprocess_thumbnails(samples, cfg, 160)
    widgets.show_images(thumbs, [md(class_names[c]) for c in present], columns=5)

    st.markdown("**Train with these parameters**")
    st.code(train_command(params), language="bash", wrap_lines=True)
    st.download_button("Download parameters (JSON)", json.dumps(params, indent=2) + "\n",
                       file_name="preprocessing.json", mime="application/json",
                       icon=":material/download:")
