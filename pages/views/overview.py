"""Overview: the selected run's data, headline metrics and training curves."""

from __future__ import annotations

import streamlit as st

from galaxy_core import app_support
from pages import _shared

run = _shared.require_run()
cfg = run.config
test = run.metrics["test"]
info = run.run_info
summary = app_support.run_summary(run)

st.title(f"Overview: {run.name}")
_shared.synthetic_banner(run)
st.caption(f"{summary['model']} · data: {summary['dataset']} · created {summary['created']}")

cols = st.columns(6)
cols[0].metric("Test accuracy", app_support.format_percent(test["accuracy"]),
               help="Share of test images whose most probable class is the true class.")
cols[1].metric("Balanced accuracy", app_support.format_percent(test["balanced_accuracy"]),
               help="Mean recall over the classes: rare classes count as much as common ones.")
cols[2].metric("Macro F1", f"{test['macro_f1']:.3f}")
cols[3].metric("TTA accuracy",
               app_support.format_percent((run.metrics.get("test_tta") or {}).get("accuracy")),
               help="Test-time augmentation: mean of the predictions over the 8 rotations/flips of each "
                    "test image.")
cols[4].metric("Best epoch", summary["best_epoch"])
cols[5].metric("Training time", summary["training_time"])

left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader("Training curves")
    if run.history.get("epoch"):
        st.plotly_chart(app_support.curves_figure(run.history, summary["best_epoch_int"]),
                        width="stretch", config={"displayModeBar": False})
    else:
        st.info("This run's history is empty.")
with right:
    st.subheader("Splits")
    st.dataframe(app_support.split_table(info, run.num_test), width="stretch")
    st.subheader("Run")
    st.markdown(summary["markdown"])

st.subheader("Class distribution")
counts = app_support.class_counts(info, run.predictions["labels"], cfg.num_classes, run.is_synthetic)
st.plotly_chart(app_support.class_distribution_figure(cfg.class_names, counts), width="stretch",
                config={"displayModeBar": False})

with st.expander("Full configuration (config.json)"):
    st.json(cfg.to_dict(), expanded=False)
with st.expander("Run information (run.json)"):
    st.json(info, expanded=False)
