"""Calibration: reliability diagrams and expected calibration error per run, and temperature scaling."""

from __future__ import annotations

import streamlit as st

from galaxy_core.evaluation import calibration
from pages.lib import state, widgets
from pages.lib.captions import md, plot_text, run_label
from pages.lib.figures import reliability_figure, temperature_figure

run = widgets.require_run()
calib = run.calibration

st.title("Calibration")
st.caption("A calibrated model is right on a fraction p of the images it labels with confidence p. "
           "The reliability diagram bins the test images by confidence (the top probability); the "
           "expected calibration error (ECE) is the image-weighted mean gap between each bin's "
           "accuracy and its confidence.")

entries = state.valid_runs()
paths = [str(e.path) for e in entries]
labels = {str(e.path): run_label(e) for e in entries}
current = str(run.path)
o1, o2 = st.columns([4, 1])
chosen = o1.multiselect("Runs", paths, default=[current] if current in paths else [],
                        max_selections=4, format_func=lambda p: labels.get(p, p), key="cal_runs")
n_bins = o2.slider("Bins", 5, 20, int((calib or {}).get("n_bins", 15)), key="cal_bins")
runs = state.load_runs(chosen) if chosen else [run]
widgets.synthetic_banner_any([run, *runs])
widgets.cnn_only_note(runs, "These reliability curves and ECEs are")

curves, errors = {}, {}
for r in runs:
    labels_r, probs_r = r.predictions["labels"], r.predictions["probs"]
    curves[plot_text(r.name)] = calibration.reliability_bins(labels_r, probs_r, n_bins)
    errors[r.name] = calibration.expected_calibration_error(labels_r, probs_r, n_bins)
cols = st.columns(min(4, len(errors)))
for col, (name, ece) in zip(cols, errors.items()):
    col.metric(f"ECE · {md(name)}", f"{ece:.3f}", help=f"test images, {n_bins} equal-width bins")
st.plotly_chart(reliability_figure(curves), width="stretch", config={"displayModeBar": False})
st.caption("Below the diagonal: over-confident (the model is right less often than it claims). "
           "Marker size: images in the bin.")

st.subheader(f"Temperature scaling · {md(run.name)}")
if calib is None:
    st.info("This run predates temperature scaling: its metrics.json has no `calibration`, and the "
            "bundle keeps no validation probabilities to fit a temperature on now. Runs trained "
            "since fit it on the validation split and store it.", icon=":material/info:")
    st.stop()

temperature = float(calib["temperature"])
test_part = calib.get("test") or {}
m1, m2, m3 = st.columns(3)
m1.metric("Temperature T", f"{temperature:.3f}",
          help="Fitted on the validation split (minimum NLL). T > 1 softens an over-confident model; "
               "the predicted class never changes.")
if "ece_before" in test_part:
    m2.metric("Test ECE", f"{test_part['ece_after']:.3f}",
              delta=f"{test_part['ece_after'] - test_part['ece_before']:+.3f}", delta_color="inverse",
              help="after temperature scaling (delta: against before)")
    m3.metric("Test NLL", f"{test_part['nll_after']:.3f}",
              delta=f"{test_part['nll_after'] - test_part['nll_before']:+.3f}", delta_color="inverse")
left, right = st.columns(2, gap="large")
with left:
    st.plotly_chart(temperature_figure(calib), width="stretch", config={"displayModeBar": False})
with right:
    labels_t, probs_t = run.predictions["labels"], run.predictions["probs"]
    before_after = {"before": calibration.reliability_bins(labels_t, probs_t, n_bins),
                    f"after (T = {temperature:.2f})": calibration.reliability_bins(
                        labels_t, calibration.apply_temperature(probs_t, temperature), n_bins)}
    st.plotly_chart(reliability_figure(before_after), width="stretch", config={"displayModeBar": False},
                    key="cal_before_after")
st.caption("Left: from metrics.json (fitted on validation, checked on test). Right: the test "
           "reliability diagram before and after dividing the logits by T. The Classify view can "
           "show calibrated probabilities.")
