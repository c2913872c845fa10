"""Streamlit widgets shared by the views: the sidebar run selector, the banners and guards that
stop a view (no run, synthetic run, unloadable model), image grids and the live log of a job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from pages.lib import jobs, state
from pages.lib.captions import describe_error, md, run_label


def sidebar_run_selector():
    """Draw the run selector in the sidebar; return the chosen valid entry, or None if there is none."""
    root = state.runs_dir()
    try:
        valid, invalid = state.list_runs(str(root), state.stamp(root))
    except Exception as err:  # noqa: BLE001 - an unreadable runs folder must not break the app
        valid, invalid = [], []
        st.sidebar.error(f"Cannot list runs in `{root}`: {describe_error(err)}")
    paths = [str(e.path) for e in valid]
    labels = {str(e.path): run_label(e) for e in valid}
    chosen = None
    with st.sidebar:
        st.subheader("Run")
        if paths:
            pending = st.session_state.pop(state.PENDING_KEY, None)
            named = [p for p in paths if Path(p).name == pending]
            if named:
                st.session_state[state.RUN_KEY] = named[0]
            elif st.session_state.get(state.RUN_KEY) not in paths:
                st.session_state[state.RUN_KEY] = paths[0]  # newest first
            st.selectbox("Run bundle", paths, format_func=lambda p: labels.get(p, p), key=state.RUN_KEY,
                         help=f"Valid bundles in `{root}`, newest first (set $GALAXY_RUNS_DIR to "
                              "read another folder).")
            chosen = valid[paths.index(st.session_state[state.RUN_KEY])]
            name, _, rest = run_label(chosen).partition(" · ")
            st.caption(f"{md(name)}  \n{md(rest)}")
        else:
            st.session_state.pop(state.RUN_KEY, None)
            st.caption(f"No valid run in `{root}`.")
        if invalid:
            with st.expander(f"{len(invalid)} invalid run(s)", icon=":material/error:"):
                for entry in invalid:
                    st.markdown(f"**{md(entry.name)}**: {md(entry.error)}")  # a bundle's words: text
    return chosen


def require_run():
    """The chosen run; if there is none, say so with a link to the start view and stop the page."""
    run = state.current_run()
    if run is None:
        st.info("No run bundle yet. Build the demo run or train one first.")
        st.page_link("pages/views/start.py", label="Get started", icon=":material/rocket_launch:")
        st.stop()
    return run


def require_model():
    """The chosen run's model; if it cannot be loaded, show the reason (no traceback) and stop the page."""
    try:
        return state.current_model()
    except Exception as err:  # noqa: BLE001 - any loader failure is the run's problem, not the app's
        run = state.current_run()
        st.error(f"The model of run **{md(run.name)}** cannot be loaded, so this view cannot compute "
                 f"anything with it: {describe_error(err)}", icon=":material/error:")
        st.stop()


def require_morphology():
    """The chosen run's morphology classifier (None for a CNN-only run); if it cannot be loaded,
    show the reason (no traceback) and stop the page."""
    try:
        return state.current_morphology()
    except Exception as err:  # noqa: BLE001 - a damaged or incompatible file is the run's problem
        run = state.current_run()
        st.error(f"The morphology classifier of run **{md(run.name)}** cannot be loaded, so its blended "
                 f"probabilities cannot be computed: {describe_error(err)}", icon=":material/error:")
        st.stop()


def cnn_only_note(runs, what: str) -> None:
    """A caption on views computed from the test predictions in predictions.h5 (the CNN's alone)
    when any of `runs` blends a morphology classifier into the probabilities it classifies with."""
    blended = [r.name for r in runs if r is not None and r.config.blended]
    if blended:
        st.caption(f"{what} the CNN's alone: run(s) {', '.join(f'**{md(n)}**' for n in blended)} classify with "
                   "the CNN blended with a morphology classifier (its test scores: Overview).")


def synthetic_banner(run) -> None:
    """A clear warning on every view of a run trained on synthetic data."""
    if run is not None and run.is_synthetic:
        st.warning("**Synthetic run.** This model was trained and tested on generated galaxies, not on "
                   "Galaxy10 DECaLS. Its numbers show that the pipeline works, not how well galaxies "
                   "are classified.", icon=":material/science:")


def show_images(images, captions, columns: int, width: Any = "stretch", links=None) -> None:
    """Images in a grid of `columns` columns, with captions (one `st.columns` per row, so rows
    stay aligned when captions wrap).

    `links`: optional Markdown per image (e.g. `captions.sky_link`, the galaxy in the Legacy
    Surveys viewer), drawn under its caption; None entries draw nothing.
    """
    images, captions = list(images), list(captions)
    links = list(links) if links is not None else [None] * len(images)
    for start in range(0, len(images), columns):
        for col, image, caption, link in zip(st.columns(columns), images[start:start + columns],
                                             captions[start:start + columns],
                                             links[start:start + columns]):
            col.image(image, caption=caption, width=width)
            if link:
                col.markdown(link)


def synthetic_banner_any(runs) -> None:
    """`synthetic_banner` once for a view of several runs, if any of them is synthetic."""
    synthetic = [r for r in runs if r is not None and r.is_synthetic]
    if synthetic:
        synthetic_banner(synthetic[0])


def stream_command(command: list[str], cwd: str | Path, tail: int = 15) -> int:
    """Run a CLI, showing a progress bar (from its tqdm bars, `pages.lib.jobs.parse_progress`) and
    its last lines while it runs. The process is terminated if the script run is stopped (page left).

    Returns:
        The exit code.
    """
    bar = st.progress(0.0, text="Starting...")
    log = st.empty()
    with jobs.Job(command, cwd) as job:
        while job.read():
            fraction, last = jobs.parse_progress(job.output)
            if fraction is not None:
                bar.progress(fraction, text=last[:120])
            log.code(jobs.tail_lines(job.output, tail), language=None)
        code = job.wait()
    if code == 0:
        bar.progress(1.0, text="Done")
    return code
