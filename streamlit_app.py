"""Galaxy10 explorer: the Streamlit app's entry point (`streamlit run streamlit_app.py`).

A router: page config, the shared sidebar run selector, and `st.navigation` over the views in
`pages/views/` (their helpers: `pages/lib/`). Views read run bundles from `runs/` (or
`$GALAXY_RUNS_DIR`) and user uploads only; all computation lives in `galaxy_core/`.

No `.py` file sits directly in `pages/`, on purpose: Streamlit treats the top-level `pages/*.py` of
an app folder (any name but `__init__.py` and dot files) as legacy auto-pages on a fresh server's
first run (and in every AppTest run), which would run a view or a helper without this router. Files
in subfolders of `pages/` are never auto-pages.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # `pages.lib` and `galaxy_core` import from the app's folder
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from pages.lib import widgets  # noqa: E402

st.set_page_config(page_title="Galaxy10 explorer", page_icon=":material/blur_on:", layout="wide",
                   initial_sidebar_state="expanded")

run = widgets.sidebar_run_selector()

start = st.Page("pages/views/start.py", title="Get started", icon=":material/rocket_launch:",
                default=run is None)
lab = st.Page("pages/views/preprocessing_lab.py", title="Preprocessing lab", icon=":material/tune:")
catalog = st.Page("pages/views/catalog.py", title="Catalog", icon=":material/table_view:")
if run is None:
    views = [start, lab, catalog]
else:
    views = [
        st.Page("pages/views/overview.py", title="Overview", icon=":material/dashboard:", default=True),
        lab,
        st.Page("pages/views/classify.py", title="Classify", icon=":material/upload_file:"),
        st.Page("pages/views/confusion_matrix.py", title="Confusion matrix", icon=":material/grid_on:"),
        st.Page("pages/views/explain_errors.py", title="Explain errors", icon=":material/troubleshoot:"),
        st.Page("pages/views/compare_runs.py", title="Compare runs", icon=":material/compare_arrows:"),
        st.Page("pages/views/embedding_map.py", title="Embedding map", icon=":material/scatter_plot:"),
        st.Page("pages/views/calibration.py", title="Calibration", icon=":material/speed:"),
        st.Page("pages/views/galaxy_properties.py", title="Galaxy properties", icon=":material/public:"),
        catalog,
        start,
    ]

st.navigation(views).run()
