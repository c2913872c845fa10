"""Get started: what the explorer shows, building the offline demo run, training on the real data."""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from pages.lib import jobs, state, widgets
from pages.lib.captions import describe_error

ROOT = Path(__file__).resolve().parents[2]

st.title("Galaxy10 explorer")
st.markdown(
    "Galaxy morphology on **Galaxy10 DECaLS** (17,736 sky images, 10 classes): see how "
    "preprocessing changes an image, classify your own images, inspect the confusion matrix and ask "
    "the model *why* it got a galaxy wrong (saliency, SmoothGrad, Grad-CAM, Grad-CAM++)."
)

if st.session_state.get("open_demo"):
    st.switch_page("pages/views/overview.py")

root = state.runs_dir()
has_run = state.current_run_path() is not None
if not has_run:
    st.info(f"No trained run yet in `{root}`. Build the demo run below, or train on the real data.",
            icon=":material/info:")

left, right = st.columns(2, gap="large")

with left:
    st.subheader("Offline demo run")
    st.markdown(
        "Trains a small model on **synthetic** galaxies (generated on the spot, always labelled "
        "synthetic) so that every view works on a CPU without the 2.5 GB dataset. It takes a few "
        "minutes; keep this page open while it runs."
    )
    st.code(f"python train.py --demo --out {root / 'demo-<date>-<time>'}", language="bash", wrap_lines=True)
    if st.button("Build the demo run", type="primary", icon=":material/play_arrow:"):
        out_dir = root / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
        code = widgets.stream_command(jobs.demo_command(out_dir), cwd=ROOT)
        problem = (None if code == 0
                   else f"`train.py --demo` stopped with exit code {code}; its last lines are above.")
        if problem is None:
            try:
                state.load_run(str(out_dir), state.stamp(out_dir))
            except Exception as err:  # noqa: BLE001 - say what is wrong with the result, no traceback
                problem = (f"`train.py --demo` finished but `{out_dir}` is not a valid run bundle: "
                           f"{describe_error(err)}")
        if problem is None:
            state.list_runs.clear()
            st.session_state[state.PENDING_KEY] = out_dir.name  # the sidebar selects it next
            st.success(f"Demo run written to `{out_dir}`.")
            st.button("Open the demo run", type="primary", key="open_demo")
        else:
            st.error(problem)

with right:
    st.subheader("Train on Galaxy10 DECaLS")
    st.markdown(
        "Download the dataset (SHA-256 checked, resumable), then train the published recipe "
        "(DenseNet201 fine-tuned, CLAHE + opening, class weights). A GPU is strongly advised."
    )
    st.code("python -m galaxy_core.data download\npython train.py\npython train.py --help   # every flag",
            language="bash")
    st.markdown(
        f"Each run writes a bundle to `runs/<name>/`. The app lists the bundles in `{root}`; point it "
        "at another folder with `GALAXY_RUNS_DIR=/path/to/runs streamlit run streamlit_app.py`. "
        "Tune the preprocessing first in the **Preprocessing lab**: it prints the matching "
        "`train.py` flags."
    )
    st.page_link("pages/views/preprocessing_lab.py", label="Open the preprocessing lab", icon=":material/tune:")
