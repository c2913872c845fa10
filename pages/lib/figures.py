"""Plotly figures of the views: luminance histograms, class shares, training curves, top-k bars,
the confusion matrix; runs compared (per-class F1, overlaid curves, confusion difference); the
embedding map and the sky map (scatters whose points carry their test row, `selected_rows`);
reliability diagrams and temperature scaling; accuracy against a property (redshift).

Plain Python / numpy / plotly (no streamlit), so each figure is tested and benchmarked without a
browser. Images are `uint8 (H, W, 3)` RGB as everywhere in the project.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from galaxy_core.inference.classify import top_k
from galaxy_core.evaluation.metrics import row_normalised

# Colours of the three preprocessing stages in histograms (readable on a dark background).
STAGE_COLOURS = {"original": "#9ca3af", "galaxy crop": "#a78bfa", "CLAHE": "#38bdf8",
                 "CLAHE + opening": "#f0a030"}


def luminance_histogram(image: np.ndarray) -> np.ndarray:
    """Counts of the 256 luminance levels (ITU-R BT.601 weights) of a `uint8 (H, W, 3)` image.

    Returns:
        int64 `(256,)`.

    Example:
        >>> luminance_histogram(np.full((2, 3, 3), 255, np.uint8))[255]
        6
    """
    rgb = image.astype(np.uint32)
    # Integer BT.601 luma: (299 R + 587 G + 114 B) / 1000, rounded; stays in 0..255.
    luma = (299 * rgb[..., 0] + 587 * rgb[..., 1] + 114 * rgb[..., 2] + 500) // 1000
    return np.bincount(luma.ravel(), minlength=256)[:256].astype(np.int64)


def histogram_figure(stages: Mapping[str, np.ndarray]) -> go.Figure:
    """Plotly figure of the luminance histograms of the stages (log counts: sky pixels dominate).

    Built from plain dicts in one `go.Figure(...)` call: `update_layout` would cost ~10x more, and
    this figure is redrawn on every slider change of the preprocessing lab.
    """
    levels = np.arange(256)
    traces = [
        {"type": "scatter", "x": levels, "y": luminance_histogram(image), "mode": "lines", "name": name,
         "line": {"color": STAGE_COLOURS.get(name), "width": 1.6},
         "hovertemplate": f"{name}<br>level %{{x}}: %{{y}} px<extra></extra>"}
        for name, image in stages.items()
    ]
    layout = {
        "height": 260, "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
        "title": {"text": "Luminance histogram (log scale)", "font": {"size": 14}},
        "xaxis": {"title": {"text": "intensity"}, "range": [0, 255]},
        "yaxis": {"title": {"text": "pixels"}, "type": "log", "dtick": 1},  # ticks at 1, 10, 100, ...
        "legend": {"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"},
    }
    return go.Figure(data=traces, layout=layout)


def class_distribution_figure(class_names: Sequence[str], counts: Mapping[str, Sequence[int]]) -> go.Figure:
    """Grouped bar chart of the class shares of each split (hover: the image counts).

    Shares, not counts, so that a 17k-image dataset and a 1.7k-image test split compare at a glance.

    Args:
        class_names: the C class names.
        counts: `{split name: C counts}` (`pages.lib.tables.class_counts`).
    """
    fig = go.Figure()
    for split, values in counts.items():
        values = np.asarray(values, dtype=float)
        shares = values / values.sum() if values.sum() else values
        fig.add_trace(go.Bar(x=list(class_names), y=shares, name=f"{split} ({int(values.sum()):,})",
                             customdata=values.astype(int),
                             hovertemplate="%{x}<br>%{customdata} images (%{y:.1%})<extra>" + split
                                           + "</extra>"))
    fig.update_layout(barmode="group", height=340, margin={"l": 10, "r": 10, "t": 10, "b": 10}, showlegend=True,
                      xaxis={"tickangle": -30}, yaxis={"title": "share of the split", "tickformat": ".0%"},
                      legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right",
                              "yanchor": "bottom"})
    return fig


def curves_figure(history: Mapping[str, Sequence[float]], best_epoch: int | None = None,
                  averaged: tuple[int, int] | None = None) -> go.Figure:
    """Two side-by-side panels, loss and accuracy, train (solid) and validation (dashed) per epoch.

    Args:
        history: a bundle's history (`RunBundle.history`): the 1-based `epoch` column and
            per-epoch columns such as `loss`, `val_loss`, `accuracy`, `val_accuracy`.
        best_epoch: 1-based epoch to mark with a vertical line (the restored weights).
        averaged: `(first, last)` epochs whose weights were averaged (`RunBundle.averaged_epochs`):
            a shaded band, which replaces the best-epoch line (the model holds the mean).
    """
    epochs = np.asarray(history.get("epoch", []), dtype=np.int64)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"))
    styles = {"": ("train", "solid", "#38bdf8"), "val_": ("validation", "dash", "#f0a030")}
    for col_index, metric in ((1, "loss"), (2, "accuracy")):
        for prefix, (label, dash, colour) in styles.items():
            values = history.get(prefix + metric)
            if values is None:
                continue
            fig.add_trace(go.Scatter(x=epochs, y=np.asarray(values, dtype=float), name=label,
                                     mode="lines+markers", line={"dash": dash, "color": colour},
                                     marker={"size": 5}, legendgroup=label, showlegend=col_index == 1,
                                     hovertemplate=f"{label} {metric}<br>epoch %{{x}}: %{{y:.4f}}<extra></extra>"),
                          row=1, col=col_index)
        if averaged is not None:
            fig.add_vrect(x0=averaged[0] - 0.5, x1=averaged[1] + 0.5, fillcolor="#9ca3af", opacity=0.18,
                          line_width=0, row=1, col=col_index)
        elif best_epoch is not None:
            fig.add_vline(x=best_epoch, line={"dash": "dot", "color": "#9ca3af"}, row=1, col=col_index)
    n = len(epochs)
    fig.update_xaxes(title_text="epoch", dtick=max(1, n // 10) if n else None)
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      legend={"orientation": "h", "y": -0.25, "x": 0.5, "xanchor": "center",
                              "yanchor": "top"})
    return fig


def topk_figure(probs: np.ndarray, class_names: Sequence[str], k: int = 5,
                true_label: int | None = None) -> go.Figure:
    """Horizontal bar chart of the top-k probabilities of one image `(C,)` (most probable on top)."""
    pairs = top_k(probs, class_names, max(1, min(int(k), len(probs))))[::-1]
    true_name = class_names[true_label] if true_label is not None else None
    colours = ["#f0a030" if name == pairs[-1][0] else "#38bdf8" for name, _ in pairs]
    if true_name is not None:
        colours = ["#22c55e" if name == true_name else c for (name, _), c in zip(pairs, colours)]
    fig = go.Figure(go.Bar(
        x=[p for _, p in pairs], y=[name for name, _ in pairs], orientation="h",
        marker={"color": colours}, text=[f"{p:.1%}" for _, p in pairs], textposition="auto",
        hovertemplate="%{y}: %{x:.2%}<extra></extra>",
    ))
    fig.update_layout(height=40 + 28 * len(pairs), margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis={"range": [0, 1.02], "tickformat": ".0%", "tickvals": [0, 0.25, 0.5, 0.75, 1]},
                      showlegend=False)
    return fig


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str], normalized: bool = False) -> go.Figure:
    """Plotly heatmap of a confusion matrix (rows = true class, columns = predicted class).

    The hover text always gives the count, the row share and both class names.
    """
    counts = np.asarray(matrix, dtype=np.int64)
    shares = row_normalised(counts)
    z = shares if normalized else counts
    text = [[f"{shares[i, j]:.0%}" if normalized else str(counts[i, j]) for j in range(len(class_names))]
            for i in range(len(class_names))]
    custom = np.dstack([counts, shares])
    fig = go.Figure(go.Heatmap(
        z=z, x=list(class_names), y=list(class_names), colorscale="Viridis", text=text,
        texttemplate="%{text}", customdata=custom,
        hovertemplate=("true: %{y}<br>predicted: %{x}<br>%{customdata[0]} images"
                       " (%{customdata[1]:.1%} of the true class)<extra></extra>"),
        colorbar={"title": "share" if normalized else "images"},
    ))
    fig.update_layout(height=560, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis={"title": "predicted class", "tickangle": -35, "side": "bottom"},
                      yaxis={"title": "true class", "autorange": "reversed"})
    return fig


# --- several runs ----------------------------------------------------------------------------------
# One colour per compared run (up to galaxy_core.runs.compare.MAX_RUNS = 4), readable on dark and light.
RUN_COLOURS = ("#38bdf8", "#f0a030", "#a78bfa", "#22c55e")
# Ten well-separated class colours (Plotly's "D3" qualitative palette).
CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf")


def run_colour(i: int) -> str:
    return RUN_COLOURS[i % len(RUN_COLOURS)]


def class_colour(i: int) -> str:
    return CLASS_COLOURS[i % len(CLASS_COLOURS)]


def per_class_f1_figure(rows: Sequence[Mapping], class_names: Sequence[str]) -> go.Figure:
    """Grouped bars of each run's per-class F1 (one colour per run, classes along x).

    Args:
        rows: `galaxy_core.runs.compare.compare_metrics` rows (`name`, `per_class_f1` {class: F1}).
        class_names: the C classes, in the config's order.
    """
    fig = go.Figure()
    for i, row in enumerate(rows):
        values = [row["per_class_f1"].get(name, float("nan")) for name in class_names]
        fig.add_trace(go.Bar(x=list(class_names), y=values, name=row["name"],
                             marker={"color": run_colour(i)},
                             hovertemplate="%{x}<br>F1 %{y:.3f}<extra>" + row["name"] + "</extra>"))
    fig.update_layout(barmode="group", height=360, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis={"tickangle": -30}, yaxis={"title": "F1", "range": [0, 1]},
                      legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right",
                              "yanchor": "bottom"})
    return fig


def overlaid_curves_figure(histories: Mapping[str, Mapping[str, Sequence[float]]]) -> go.Figure:
    """Validation loss and accuracy per epoch of several runs, overlaid (one colour per run).

    Validation curves are solid; training curves, when a history has them, are dotted in the
    same colour (shown faintly: the validation curves are what the runs are compared on).

    Args:
        histories: `{run name: RunBundle.history}` (1-based `epoch` column, `loss`, `val_loss`,
            `accuracy`, `val_accuracy`).
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Validation loss", "Validation accuracy"))
    for i, (name, history) in enumerate(histories.items()):
        n = len(next(iter(history.values()), []))
        epochs = np.asarray(history.get("epoch", np.arange(1, n + 1)), dtype=np.int64)
        for col, metric in ((1, "loss"), (2, "accuracy")):
            for prefix, dash, opacity in (("val_", "solid", 1.0), ("", "dot", 0.45)):
                values = history.get(prefix + metric)
                if values is None:
                    continue
                label = name if prefix else f"{name} (train)"
                fig.add_trace(go.Scatter(
                    x=epochs, y=np.asarray(values, dtype=float), name=label, mode="lines+markers",
                    line={"dash": dash, "color": run_colour(i)}, marker={"size": 4}, opacity=opacity,
                    legendgroup=name, showlegend=col == 1 and bool(prefix),
                    hovertemplate=f"{label}<br>epoch %{{x}}: {prefix}{metric} %{{y:.4f}}<extra></extra>"),
                    row=1, col=col)
    longest = max((len(h.get("val_loss", h.get("loss", []))) for h in histories.values()), default=0)
    fig.update_xaxes(title_text="epoch", dtick=max(1, longest // 10))  # whole epochs only
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      legend={"orientation": "h", "y": -0.25, "x": 0.5, "xanchor": "center",
                              "yanchor": "top"})
    return fig


def confusion_difference_figure(difference: np.ndarray, class_names: Sequence[str], name_a: str,
                                name_b: str) -> go.Figure:
    """Heatmap of `row-normalised confusion(A) - confusion(B)` on a diverging scale centred at 0.

    Blue: A has the larger share (on the diagonal: A recalls that class better); red: B has.

    Args:
        difference: float `(C, C)` in [-1, 1] (`galaxy_core.runs.compare.confusion_difference`).
        class_names: the C classes; name_a, name_b: the two runs (hover and colour bar).
    """
    diff = np.asarray(difference, dtype=float)
    bound = max(float(np.abs(diff).max(initial=0.0)), 0.05)  # a symmetric range: 0 stays white
    text = [[f"{v:+.0%}" if abs(v) >= 0.005 else "" for v in row] for row in diff]
    fig = go.Figure(go.Heatmap(
        z=diff, x=list(class_names), y=list(class_names), colorscale="RdBu", zmid=0.0,
        zmin=-bound, zmax=bound, text=text, texttemplate="%{text}",
        hovertemplate=(f"true: %{{y}}<br>predicted: %{{x}}<br>{name_a} − {name_b}: "
                       "%{z:+.1%} of the true class<extra></extra>"),
        colorbar={"title": {"text": "A − B"}, "tickformat": "+.0%"},
    ))
    fig.update_layout(height=560, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis={"title": "predicted class", "tickangle": -35},
                      yaxis={"title": "true class", "autorange": "reversed"})
    return fig


# --- scatters whose points are test images -------------------------------------------------------
def selected_rows(selection: Mapping | None) -> list[int]:
    """Test rows of the points selected in `embedding_figure` / `sky_map_figure`.

    Each point of those figures carries its test row (a row of `predictions.h5`) as
    `customdata[0]`; Streamlit's `st.plotly_chart(..., on_select="rerun")` returns the selected
    points in `event.selection["points"]`. The figures pass customdata as plain lists: a numpy
    array would travel as a binary typed array, which comes back from the browser as an object
    `{"0": row}` (read here too, to be safe).

    Args:
        selection: the event's `selection` (`{"points": [{"customdata": [row, ...], ...}, ...]}`),
            the event itself (`{"selection": ...}`), or None.

    Returns:
        The distinct rows, in the order first selected.

    Example:
        >>> selected_rows({"points": [{"customdata": [4, "x"]}, {"customdata": [1]}, {"customdata": [4]}]})
        [4, 1]
    """
    rows: list[int] = []
    if selection and "selection" in selection:
        selection = selection["selection"]
    for point in (selection or {}).get("points", []) or []:
        data = point.get("customdata")
        if isinstance(data, Mapping):  # a typed array serialised by the browser: {"0": row, ...}
            data = data.get("0")
        if isinstance(data, (list, tuple)) and data:
            data = data[0]
        if data is None:
            continue
        try:
            row = int(data)
        except (TypeError, ValueError):
            continue
        if row not in rows:
            rows.append(row)
    return rows


def embedding_figure(xy: np.ndarray, labels: np.ndarray, preds: np.ndarray,
                     class_names: Sequence[str], colour_by: str = "true") -> go.Figure:
    """The 2-D map of the test images: one trace per class, errors drawn as an x.

    Each point carries its test row in `customdata[0]` (see `selected_rows`); box and lasso
    selection are the default drag modes' neighbours in the mode bar.

    Args:
        xy: float `(N, 2)` map (`RunBundle.embedding_2d`).
        labels, preds: int `(N,)` true and predicted classes.
        class_names: the C classes.
        colour_by: "true" or "predicted": which class gives the colour (and the legend).
    """
    if colour_by not in ("true", "predicted"):
        raise ValueError(f"colour_by must be 'true' or 'predicted', got {colour_by!r}.")
    xy = np.asarray(xy, dtype=float)
    labels, preds = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    key = labels if colour_by == "true" else preds
    names = np.asarray(class_names, dtype=object)
    traces = []
    for c, name in enumerate(class_names):
        rows = np.flatnonzero(key == c)
        if rows.size == 0:
            continue
        # correct points first: the legend draws a trace's first symbol (a dot, unless all are wrong)
        rows = rows[np.argsort(preds[rows] != labels[rows], kind="stable")]
        wrong = preds[rows] != labels[rows]
        traces.append(go.Scatter(
            x=xy[rows, 0], y=xy[rows, 1], mode="markers", name=str(name),
            marker={"color": class_colour(c), "size": np.where(wrong, 8, 6).tolist(),
                    "symbol": np.where(wrong, "x", "circle").tolist(), "opacity": 0.85,
                    "line": {"width": 0}},
            customdata=np.column_stack([rows, names[labels[rows]], names[preds[rows]]]).tolist(),
            hovertemplate="test row #%{customdata[0]}<br>true %{customdata[1]}<br>"
                          "predicted %{customdata[2]}<extra></extra>"))
    fig = go.Figure(traces)
    # t=40: room above the plot for the mode bar (box and lasso tools), clear of the legend.
    fig.update_layout(height=620, margin={"l": 10, "r": 10, "t": 40, "b": 10}, dragmode="lasso",
                      xaxis={"showticklabels": False, "title": None, "zeroline": False},
                      yaxis={"showticklabels": False, "title": None, "zeroline": False},
                      legend={"title": {"text": f"{colour_by} class (x: misclassified)"}})
    return fig


def sky_map_figure(ra: np.ndarray, dec: np.ndarray, correct: np.ndarray) -> go.Figure:
    """Sky positions of the test galaxies: correct as dots, misclassified as red x.

    Right ascension grows to the left (east is left on the sky, as astronomers draw it). Each
    point carries its test row in `customdata[0]` (see `selected_rows`).

    Args:
        ra, dec: float `(N,)` degrees; correct: bool `(N,)`.
    """
    ra, dec = np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
    ok = np.asarray(correct, dtype=bool)
    traces = []
    for mask, name, style in ((ok, "correct", {"color": "#38bdf8", "size": 5, "symbol": "circle",
                                              "opacity": 0.6}),
                              (~ok, "misclassified", {"color": "#ef4444", "size": 8, "symbol": "x"})):
        rows = np.flatnonzero(mask)
        traces.append(go.Scatter(
            x=ra[rows], y=dec[rows], mode="markers", name=f"{name} ({rows.size})", marker=style,
            customdata=rows[:, None].tolist(),  # plain lists: see selected_rows
            hovertemplate="test row #%{customdata[0]}<br>ra %{x:.4f}°, dec %{y:.4f}°<extra>"
                          + name + "</extra>"))
    fig = go.Figure(traces)
    fig.update_layout(height=460, margin={"l": 10, "r": 10, "t": 40, "b": 10}, dragmode="lasso",
                      xaxis={"title": "right ascension (°)", "autorange": "reversed"},
                      yaxis={"title": "declination (°)"},
                      legend={"orientation": "h", "y": 1.02, "x": 0, "xanchor": "left",
                              "yanchor": "bottom"})
    return fig


# --- calibration -----------------------------------------------------------------------------------
def reliability_figure(curves: Mapping[str, Mapping[str, np.ndarray]]) -> go.Figure:
    """Reliability diagram: accuracy against mean confidence per confidence bin, one line per curve.

    The dashed diagonal is perfect calibration; a line below it is over-confident. Empty bins
    are left out. The hover gives each bin's image count.

    Args:
        curves: `{label: galaxy_core.evaluation.calibration.reliability_bins(...)}` (e.g. one per run, or
            "before" / "after" temperature scaling).
    """
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                             line={"dash": "dash", "color": "#9ca3af", "width": 1}, hoverinfo="skip"))
    for i, (label, bins) in enumerate(curves.items()):
        counts = np.asarray(bins["counts"])
        full = counts > 0
        fig.add_trace(go.Scatter(
            x=np.asarray(bins["confidence"])[full], y=np.asarray(bins["accuracy"])[full],
            mode="lines+markers", name=label, line={"color": run_colour(i)},
            marker={"size": np.clip(4 + 14 * np.sqrt(counts[full] / max(1, counts.max())), 4, 18)},
            customdata=counts[full],
            hovertemplate=f"{label}<br>confidence %{{x:.2f}}<br>accuracy %{{y:.2f}}<br>"
                          "%{customdata} images<extra></extra>"))
    fig.update_layout(height=420, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis={"title": "confidence (top probability)", "range": [0, 1.02]},
                      yaxis={"title": "accuracy", "range": [0, 1.02]},
                      legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right",
                              "yanchor": "bottom"})
    return fig


def temperature_figure(summary: Mapping) -> go.Figure:
    """Before/after bars of temperature scaling: ECE and NLL on the validation and test splits.

    Args:
        summary: metrics.json's "calibration" (`galaxy_core.evaluation.calibration.calibration_summary`):
            `{"temperature", "val": PART, "test": PART}` with PART's `ece_before`, `ece_after`,
            `nll_before`, `nll_after`.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Expected calibration error ↓",
                                                        "Negative log-likelihood ↓"))
    splits = [s for s in ("val", "test") if isinstance(summary.get(s), Mapping)]
    labels = {"val": "validation", "test": "test"}
    for col, metric in ((1, "ece"), (2, "nll")):
        for i, when in enumerate(("before", "after")):
            fig.add_trace(go.Bar(
                x=[labels[s] for s in splits], y=[summary[s][f"{metric}_{when}"] for s in splits],
                name=f"{when} (T = {summary['temperature']:.2f})" if when == "after" else "before",
                marker={"color": ("#9ca3af", "#38bdf8")[i]}, legendgroup=when, showlegend=col == 1,
                texttemplate="%{y:.3f}", textposition="outside",
                hovertemplate=f"%{{x}} {metric.upper()} {when}: %{{y:.4f}}<extra></extra>"),
                row=1, col=col)
    fig.update_layout(barmode="group", height=340, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      legend={"orientation": "h", "y": -0.15, "x": 0.5, "xanchor": "center",
                              "yanchor": "top"})
    return fig


# --- galaxy properties -----------------------------------------------------------------------------
def accuracy_by_bins_figure(edges: np.ndarray, accuracy: np.ndarray, counts: np.ndarray,
                            quantity: str = "redshift", overall: float | None = None) -> go.Figure:
    """Bars of the accuracy in each bin of a property, as wide as the bin, counts on hover.

    Args:
        edges: float `(B + 1,)`; accuracy: float `(B,)` (NaN in empty bins); counts: int `(B,)`
            (`galaxy_core.data.properties.accuracy_by_bins`).
        quantity: the property's name (axis title).
        overall: accuracy over all images, drawn as a dashed line.
    """
    e = np.asarray(edges, dtype=float)
    acc = np.asarray(accuracy, dtype=float)
    counts = np.asarray(counts, dtype=np.int64)
    text = [f"{a:.0%}" if np.isfinite(a) else "" for a in acc]
    fig = go.Figure(go.Bar(
        x=(e[:-1] + e[1:]) / 2, y=np.nan_to_num(acc), width=np.diff(e) * 0.96,
        marker={"color": "#38bdf8"}, text=text, textposition="outside",
        customdata=np.column_stack([e[:-1], e[1:], counts]),
        hovertemplate=(f"{quantity} %{{customdata[0]:.3f}}–%{{customdata[1]:.3f}}<br>"
                       "accuracy %{y:.1%} of %{customdata[2]} images<extra></extra>")))
    if overall is not None:
        fig.add_hline(y=float(overall), line={"dash": "dash", "color": "#9ca3af"},
                      annotation_text=f"all: {overall:.0%}", annotation_position="top left")
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 10, "b": 10}, showlegend=False,
                      xaxis={"title": quantity}, yaxis={"title": "accuracy", "range": [0, 1.1],
                                                        "tickformat": ".0%"})
    return fig
