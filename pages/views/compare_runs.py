"""Compare runs: 2-4 bundles on the same test set, side by side, and where two of them disagree."""

from __future__ import annotations

import streamlit as st

from galaxy_core.runs.compare import MAX_RUNS, MIN_RUNS
from pages.lib import compare, state, widgets
from pages.lib.captions import describe_error, md, plot_text, plot_texts, run_label, run_names, sky_links
from pages.lib.figures import confusion_difference_figure, overlaid_curves_figure, per_class_f1_figure
from pages.lib.tables import compare_table

GALLERY_MAX = 24

run = widgets.require_run()
st.title("Compare runs")
entries = state.valid_runs()
paths = [str(e.path) for e in entries]
labels = {str(e.path): run_label(e) for e in entries}
if len(paths) < MIN_RUNS:
    widgets.synthetic_banner(run)
    st.info(f"Comparing needs at least {MIN_RUNS} valid runs in `{state.runs_dir()}`; there is "
            f"{len(paths)}. Train another (e.g. `python train.py --demo --seed 1 --out runs/demo-b`) "
            "on the same data and split.", icon=":material/info:")
    st.stop()

current = str(run.path)
default = [current] + [p for p in paths if p != current][:1]
chosen = st.multiselect(f"Runs to compare ({MIN_RUNS}-{MAX_RUNS})", paths, default=default,
                        max_selections=MAX_RUNS, format_func=lambda p: labels.get(p, p), key="cmp_runs",
                        help="Runs are comparable only when they were tested on the same images.")
runs = state.load_runs(chosen)
widgets.synthetic_banner_any([run, *runs])
widgets.cnn_only_note(runs, "These metrics are")
if len(chosen) < MIN_RUNS:
    st.info(f"Pick at least {MIN_RUNS} runs.", icon=":material/info:")
    st.stop()
try:
    rows = compare.compare_runs(chosen)
except Exception as err:  # noqa: BLE001 - CompareError says which runs differ and how to fix it
    st.error(f"These runs cannot be compared: {describe_error(err)}", icon=":material/block:")
    st.stop()

names = [r["name"] for r in rows]
st.caption(f"{run_names(names)}: {rows[0]['n_test']} test images, the same for every run.")

st.subheader("Test metrics")
table = compare_table(rows)
percent = st.column_config.NumberColumn(format="percent")
st.dataframe(table, width="stretch",
             column_config={c: percent for c in ("accuracy", "balanced accuracy", "TTA accuracy")}
             | {"macro F1": st.column_config.NumberColumn(format="%.3f"),
                "ECE": st.column_config.NumberColumn(format="%.3f", help="expected calibration error "
                                                      "(test, before temperature scaling)")})
if table["TTA accuracy"].isna().any():
    st.caption("TTA accuracy is empty for runs that stored no test-time-augmentation predictions.")

class_names = list(runs[0].config.class_names)
left, right = st.columns(2, gap="large")
with left:
    st.subheader("Per-class F1")
    st.plotly_chart(per_class_f1_figure(rows, plot_texts(class_names)), width="stretch",
                    config={"displayModeBar": False})
with right:
    st.subheader("Training curves")
    st.plotly_chart(overlaid_curves_figure({plot_text(r.name): r.history for r in runs}), width="stretch",
                    config={"displayModeBar": False})

st.subheader("Two runs, image by image")
by_name = dict(zip(names, chosen))
c1, c2, c3 = st.columns([3, 3, 2])
name_a = c1.selectbox("Run A", names, index=0, key="cmp_a")
name_b = c2.selectbox("Run B", [n for n in names if n != name_a], index=0, key="cmp_b")
both_tta = all(r.predictions.get("probs_tta") is not None and r.metrics.get("test_tta") is not None
               for r in state.load_runs([by_name[name_a], by_name[name_b]]))
tta = c3.toggle("Test-time augmentation", key="cmp_tta", disabled=not both_tta,
                help="Compare the predictions averaged over 8 rotations/flips (both runs must store them).")
tta = bool(tta and both_tta)
path_a, path_b = by_name[name_a], by_name[name_b]

diff = compare.confusion_difference(path_a, path_b, tta=tta)
st.markdown(f"**Confusion difference**: row shares of **{md(name_a)}** minus those of **{md(name_b)}**. "
            "Blue: A has the larger share (on the diagonal: A recalls the class better; off it: A "
            "makes that mistake more often); red: B has. Each row sums to 0.")
st.plotly_chart(confusion_difference_figure(diff, plot_texts(class_names), plot_text(name_a), plot_text(name_b)), width="stretch",
                config={"displayModeBar": False})

a_only, b_only = compare.disagreements(path_a, path_b, tta=tta)
run_a, run_b = state.load_runs([path_a, path_b])
key = "probs_tta" if tta else "probs"
pred_a, pred_b = run_a.predictions[key].argmax(axis=1), run_b.predictions[key].argmax(axis=1)
labels_test = run_a.predictions["labels"]
tab_a, tab_b = st.tabs([f"{md(name_a)} right, {md(name_b)} wrong ({a_only.size})",
                        f"{md(name_b)} right, {md(name_a)} wrong ({b_only.size})"])
for tab, rows_shown, (wrong_name, wrong_pred) in ((tab_a, a_only, (name_b, pred_b)),
                                                   (tab_b, b_only, (name_a, pred_a))):
    with tab:
        if rows_shown.size == 0:
            st.info("No such test image.")
            continue
        shown = rows_shown[:GALLERY_MAX]
        if rows_shown.size > GALLERY_MAX:
            st.caption(f"The first {GALLERY_MAX} of {rows_shown.size}.")
        try:
            images = state.run_test_images(path_a, shown)
        except Exception as err:  # noqa: BLE001 - an unreadable predictions.h5: say so, keep the view
            st.error(f"Cannot read the test images: {describe_error(err)}")
            continue
        captions = [f"#{r}: {md(class_names[labels_test[r]])}; {md(wrong_name)} says "
                    f"{md(class_names[wrong_pred[r]])}" for r in shown]
        widgets.show_images(images, captions, columns=6, links=sky_links(run_a.sky, shown, synthetic=run_a.is_synthetic))
