"""Overview: the selected run's data, headline metrics and training curves."""

from __future__ import annotations

import streamlit as st

from galaxy_core.bundle.schema import TENSORBOARD_DIR
from galaxy_core.config import CLASS_NAMES
from pages.lib import widgets
from pages.lib.captions import format_percent, md, plot_texts, run_summary
from pages.lib.figures import class_distribution_figure, curves_figure
from pages.lib.tables import class_counts, split_table

run = widgets.require_run()
cfg = run.config
test = run.metrics["test"]
summary = run_summary(run)

st.title(f"Overview: {md(run.name)}")
widgets.synthetic_banner(run)
st.caption(f"{md(summary['model'])} · data: {md(summary['dataset'])} · created {summary['created']}")

cols = st.columns(6)
cols[0].metric("Test accuracy", format_percent(test["accuracy"]),
               help="Share of test images whose most probable class is the true class.")
cols[1].metric("Balanced accuracy", format_percent(test["balanced_accuracy"]),
               help="Mean recall over the classes: rare classes count as much as common ones.")
cols[2].metric("Macro F1", f"{test['macro_f1']:.3f}")
cols[3].metric("TTA accuracy", format_percent(run.test_tta_accuracy),
               help="Test-time augmentation: mean of the predictions over the 8 rotations/flips of each "
                    "test image.")
cols[4].metric("Weights", summary["weights"],
               help="Which weights the model holds: those of the epoch with the best validation "
                    "accuracy (best N), or the mean of the weights of epochs A-B (avg A-B: stochastic "
                    "weight averaging).")
cols[5].metric("Training time", summary["training_time"])
blend = run.blend_metrics
if blend is not None:
    st.caption(f"The metrics above are the CNN's alone. This run's probabilities blend it with a boosting "
               f"classifier on morphology statistics of the cutouts (weight {blend.weight:g}), "
               "which the Classify page and `galaxy_core.predict` use:")
    mcols = st.columns(4)
    mcols[0].metric("Blended test accuracy", format_percent(blend.blended["accuracy"]))
    mcols[1].metric("Blended balanced accuracy", format_percent(blend.blended["balanced_accuracy"]))
    mcols[2].metric("Morphology model alone", format_percent(blend.alone["accuracy"]),
                    help="Test accuracy of the boosting classifier on its own.")

left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader("Training curves")
    if run.epochs_run:
        st.plotly_chart(curves_figure(run.history, run.best_epoch, run.averaged_epochs), width="stretch",
                        config={"displayModeBar": False})
    else:
        st.info("This run's history is empty.")
    if (run.path / TENSORBOARD_DIR).is_dir():
        st.caption("TensorBoard logs of this run (loss and accuracy of training and validation, learning "
                   "rate, validation recall per class) are in its bundle; to see every run's:")
        st.code(f"tensorboard --logdir {run.path.parent}", language="bash")
    else:
        st.caption("This run has no TensorBoard logs (its bundle was written before runs kept them).")
with right:
    st.subheader("Splits")
    st.dataframe(split_table(run.split_sizes, run.num_test), width="stretch")
    st.subheader("Run")
    st.markdown(summary["markdown"])
    if source := run.run_info.get("labelled_source"):  # trained on your own labels (issue 27)
        st.caption(f"Trained on labelled images from `{source.get('path')}`: {source.get('images', '?')} "
                   f"images in {cfg.num_classes} classes"
                   + (f", {source['unreadable']} unreadable file(s) left out." if source.get("unreadable")
                      else "."))
    if parent := run.run_info.get("parent_run"):  # --init-from
        st.caption(f"Started from run `{parent.get('name')}` ({parent.get('backbone')}, classes "
                   f"{', '.join(parent.get('class_names', []))}) with a new classifier layer for this "
                   f"run's classes" + (" (the parent was trained on SYNTHETIC images)." if parent.get("synthetic")
                                       else "."))

st.subheader("Class distribution")
counts = class_counts(run.predictions["labels"], cfg.num_classes, run.is_synthetic,
                      galaxy10="labelled_source" not in run.run_info and tuple(cfg.class_names) == CLASS_NAMES)
st.plotly_chart(class_distribution_figure(plot_texts(cfg.class_names), counts), width="stretch",
                config={"displayModeBar": False})

with st.expander("Full configuration (config.json)"):
    st.json(cfg.to_dict(), expanded=False)
with st.expander("Run information (run.json)"):
    st.json(run.run_info, expanded=False)
