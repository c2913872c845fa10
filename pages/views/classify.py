"""Classify: upload galaxy images, see what the model saw, its top-k classes and a Grad-CAM overlay."""

from __future__ import annotations

import numpy as np
import streamlit as st

from galaxy_core.errors import GalaxyError
from galaxy_core.evaluation import calibration
from pages.lib import state, uploads, widgets
from pages.lib.captions import classify_caption, describe_error, md, plot_texts
from pages.lib.figures import confusion_figure, topk_figure
from pages.lib.tables import per_class_table, results_table

MAX_SHOWN = 40  # images drawn one by one; the results table lists every upload


run = widgets.require_run()
cfg = run.config
class_names = list(cfg.class_names)

st.title("Classify your images")
st.caption(classify_caption(cfg.image_size, uploads.UPLOAD_TYPES, uploads.MAX_UPLOAD_PIXELS, cfg.crop_scale))
widgets.synthetic_banner(run)

uploaded = st.file_uploader("Galaxy images", type=list(uploads.UPLOAD_TYPES), accept_multiple_files=True,
                           key="cls_upload")
labels_file = st.file_uploader(
    "Labels CSV (optional): score the run on your labelled images", type=["csv"], key="cls_labels",
    help="Rows of filename,label_index (a header is optional; class names are accepted instead of "
         "indices). Files are matched by name (a CSV path's last part); a name that fits several "
         "uploads or CSV rows, unreadable and unlabelled files are left out of the score.")
opt1, opt2, opt3, _ = st.columns([2, 2, 2, 1])
k = opt1.slider("Classes shown per image (top-k)", 1, len(class_names), min(5, len(class_names)),
                key="cls_topk")
tta = opt2.toggle("Test-time augmentation", key="cls_tta",
                  help="Average the predictions over the 8 rotations and flips of each image (8x slower).")
temperature = run.effective_temperature  # a blended run's: fitted on its blended probabilities
calibrate = opt3.checkbox(
    "Calibrated probabilities", key="cls_calibrated", disabled=temperature is None,
    help=(f"Temperature scaling with T = {temperature:.2f} (fitted on the validation split"
          f"{'’s blended probabilities' if run.has_morphology else ''}): "
          "confidences that match how often the model is right. The predicted class stays the same."
          + (" With TTA the temperature (fitted on plain predictions) is an approximation."))
    if temperature is not None else "This run predates temperature scaling (no temperature in "
                                    "its metrics.json).")
calibrate = bool(calibrate and temperature is not None)

labelled = (run.run_info.get("labelled_source") or {}).get("path")  # trained on your own labels (issue 27)
if not uploaded:
    tip = ("centred cutouts like the run's own labelled images work best" if labelled else
           "centred galaxy cutouts like Galaxy10's (256x256 px, about 0.26 arcsec per pixel) work best")
    st.info(f"Upload one or more images to classify them. Tip: {tip}.", icon=":material/upload_file:")
    st.stop()

widgets.require_model()  # an unloadable model: its reason, then stop
widgets.require_morphology()  # likewise its morphology classifier, for a blended run
files = tuple((u.name, u.getvalue()) for u in uploaded)
engine = state.current_predictor()
with st.spinner(f"Classifying {len(files)} image(s)..."):
    try:
        results = uploads.classify_uploads(files, tta)
    except GalaxyError as err:  # e.g. an ONNX file exported for another input size: the reason, no traceback
        st.error(f"The run's model cannot classify: {describe_error(err)}", icon=":material/error:")
        st.stop()
st.caption(f"Classified with {'ONNX Runtime' if engine.backend == 'onnxruntime' else 'Keras'}"
           + (f" ({md(engine.note.removeprefix('note: '))})" if engine.note else "") + ".")
if run.has_morphology:
    st.caption(f"This run's probabilities blend two models trained on the same images: the CNN (weight "
               f"{1 - cfg.morphology_weight:g}) and a boosting classifier on morphology statistics of the "
               f"cutout (weight {cfg.morphology_weight:g}: concentration, asymmetry, axis ratios, Gini, M20, "
               "spiral and bar Fourier modes). The table names each one's top class; Grad-CAM shows the "
               "CNN's part.")
if calibrate:  # a copy per file: the cached results stay as computed
    results = [dict(r, probs=calibration.apply_temperature(r["probs"], temperature)) if r["probs"] is not None else r
               for r in results]

table = results_table(results, class_names, k=min(3, len(class_names)))
bad = [r for r in results if r["error"]]
good = [r for r in results if not r["error"]]
for r in bad:
    st.error(f"**{md(r['name'])}**: {md(r['error'])}", icon=":material/broken_image:")
if good:
    st.success(f"Classified {len(good)} image(s)" + (f"; {len(bad)} could not be read." if bad else "."),
               icon=":material/check_circle:")

cam_note = uploads.gradcam_note() if good else None
for i, r in enumerate(good[:MAX_SHOWN]):
    pred = int(np.argmax(r["probs"]))
    with st.container(border=True):
        st.markdown(f"**{md(r['name'])}** — predicted **{md(class_names[pred])}** with "
                    f"{r['probs'][pred]:.1%} confidence" + (" (calibrated)" if calibrate else ""))
        c1, c2, c3 = st.columns([1, 1, 2], gap="medium")
        c1.image(r["input"], caption="model input (preprocessed)", width="stretch")
        with c2:
            if cam_note is not None:  # a 1 x 1 feature map: the note, not a blank map
                st.caption(cam_note)
            elif st.toggle("Grad-CAM overlay", key=f"cls_cam_{i}_{r['name']}",
                         help="Where the last convolutional layer looked for the predicted class."):
                with st.spinner("Grad-CAM..."):
                    cam = uploads.gradcam_overlay(r["input"], pred)
                st.image(cam, caption=f"Grad-CAM: {md(class_names[pred])}", width="stretch")
            else:
                st.caption("Switch on to see where the model looked.")
        c3.plotly_chart(topk_figure(r["probs"], plot_texts(class_names), k), width="stretch",
                        config={"displayModeBar": False}, key=f"cls_chart_{i}")
if len(good) > MAX_SHOWN:
    st.caption(f"{len(good) - MAX_SHOWN} more image(s) are in the table below.")

if labels_file is not None:
    st.subheader("Score on your labelled images")
    try:
        score = uploads.score_uploads(results, labels_file.getvalue(), class_names)
    except ValueError as err:  # scoring.LabelsError: the message names the row and the fix
        st.error(f"The labels CSV cannot be used: {describe_error(err)}", icon=":material/error:")
        score = None
    if score is not None and score["metrics"] is None:
        st.warning("None of the uploaded images has a label in the CSV (files are matched by name).",
                   icon=":material/warning:")
    elif score is not None:
        m = score["metrics"]
        if run.is_synthetic:
            st.caption("This model was trained on SYNTHETIC galaxies: its score on real images says how "
                       "well the synthetic training transfers, nothing about the published recipe.")
        c1, c2, c3 = st.columns(3)
        c1.metric("Accuracy", f"{m['accuracy']:.1%}")
        c2.metric("Balanced accuracy", f"{m['balanced_accuracy']:.1%}")
        c3.metric("Scored images", f"{score['n_scored']} of {score['n_files']}")
        left, right = st.columns([3, 2], gap="medium")
        left.plotly_chart(confusion_figure(np.asarray(m["confusion_matrix"]), plot_texts(class_names)), width="stretch",
                          key="cls_score_cm")
        right.dataframe(per_class_table(m["per_class"], class_names), width="stretch")  # index: the class
        left_out = ([f"{md(u['file'])} (unreadable)" for u in score["unreadable"]]
                    + [f"{md(a['file'])} (ambiguous: its name fits several CSV rows or uploads)"
                       for a in score["ambiguous"]]
                    + [f"{md(name)} (no label)" for name in score["unlabelled"]])
        if left_out:
            st.caption("Left out of the score: " + ", ".join(left_out))
        if score["missing"]:
            st.caption(f"{len(score['missing'])} labelled file(s) were not uploaded: "
                       + ", ".join(md(name) for name in score["missing"][:10])
                       + (" ..." if len(score["missing"]) > 10 else ""))

st.subheader("All results")
percent = st.column_config.NumberColumn(format="percent")
st.dataframe(table, width="stretch", hide_index=True,
             column_config={c: percent for c in table.columns if c == "confidence" or c.startswith("p ")})
# The file leaves the app: it says which run made it and whether that run saw real data.
download = table.assign(run=run.name, trained_on="SYNTHETIC galaxies" if run.is_synthetic
                        else f"labelled images {labelled}" if labelled
                        else "Galaxy10 DECaLS",
                        probabilities=f"calibrated (T = {temperature:.3f})" if calibrate else "raw")
st.download_button("Download results (CSV)", download.to_csv(index=False), file_name="classifications.csv",
                   mime="text/csv", icon=":material/download:")
