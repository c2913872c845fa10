"""Plotly figures of the views: luminance histograms, class shares, training curves, top-k bars,
the confusion matrix.

Plain Python / numpy / plotly (no streamlit), so each figure is tested and benchmarked without a
browser. Images are `uint8 (H, W, 3)` RGB as everywhere in the project.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from galaxy_core.inference import top_k
from pages.lib.tables import normalize_rows

# Colours of the three preprocessing stages in histograms (readable on a dark background).
STAGE_COLOURS = {"original": "#9ca3af", "CLAHE": "#38bdf8", "CLAHE + opening": "#f0a030"}


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


def curves_figure(history: Mapping[str, Sequence[float]], best_epoch: int | None = None) -> go.Figure:
    """Two side-by-side panels, loss and accuracy, train (solid) and validation (dashed) per epoch.

    Args:
        history: a bundle's history (`RunBundle.history`): the 1-based `epoch` column and
            per-epoch columns such as `loss`, `val_loss`, `accuracy`, `val_accuracy`.
        best_epoch: 1-based epoch to mark with a vertical line (the restored weights).
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
        if best_epoch is not None:
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
    shares = normalize_rows(counts)
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
