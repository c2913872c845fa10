"""App-side logic of the Streamlit explorer that needs no streamlit: run listing, figures, tables.

The pages in `pages/` stay thin (read widgets, call these functions and the core, render). Every
function here is plain Python / numpy / plotly so it can be tested and benchmarked without a
browser. Images are `uint8 (H, W, 3)` RGB as everywhere in the project.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from galaxy_core.config import Config

# The Config fields the preprocessing lab controls, in the order they are shown and printed.
from galaxy_core.config import PREPROCESS_FIELDS  # noqa: E402  (re-exported for the lab)

# Colours of the three preprocessing stages in histograms (readable on a dark background).
STAGE_COLOURS = {"original": "#9ca3af", "CLAHE": "#38bdf8", "CLAHE + opening": "#f0a030"}


# --- runs -----------------------------------------------------------------------------------------
def runs_dir() -> Path:
    """The folder the app lists run bundles from: `$GALAXY_RUNS_DIR`, else `./runs`, made absolute.

    Absolute, because the demo build runs `train.py` in the app's folder, which need not be the
    folder `streamlit run` was started from.
    """
    return Path(os.environ.get("GALAXY_RUNS_DIR") or "runs").expanduser().resolve()


def demo_command(out_dir: str | Path) -> list[str]:
    """The command line that builds the offline demo run into `out_dir` (synthetic data, CPU)."""
    return [sys.executable, "-u", "train.py", "--demo", "--out", str(out_dir)]


_PERCENT = re.compile(r"(\d{1,3})%\s*\|")
_EPOCH = re.compile(r"Epoch (\d+)/(\d+)")


def parse_progress(text: str) -> tuple[float | None, str]:
    """The last progress fraction and the last non-empty line of a CLI's output.

    `galaxy_core.progress` redraws its bar with carriage returns (`desc  42% |####   | 420/1000`),
    so the output is split on both `\\r` and `\\n`.

    Returns:
        `(fraction in [0, 1] or None if no bar was drawn yet, last line)`.
    """
    lines = [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]
    fraction = None
    for line in reversed(lines):
        match = _PERCENT.search(line)
        if match:
            fraction = min(int(match.group(1)), 100) / 100.0
            break
        match = _EPOCH.search(line)  # Keras: "Epoch 3/6" when an epoch starts
        if match and int(match.group(2)) > 0:
            fraction = min((int(match.group(1)) - 1) / int(match.group(2)), 1.0)
            break
    return fraction, (lines[-1] if lines else "")


def tail_lines(text: str, n: int = 25) -> str:
    """The last `n` lines of a CLI's output, with carriage-return redraws collapsed to their last state."""
    lines = []
    for raw in text.split("\n"):
        parts = [p for p in raw.split("\r") if p.strip()]
        if parts:
            lines.append(parts[-1].rstrip())
    return "\n".join(lines[-n:])


def format_seconds(seconds: float | None) -> str:
    """`3725.2` -> `'1h 02m'`, `95` -> `'1m 35s'`, `4.2` -> `'4.2 s'`; None -> `'n/a'` (fits a metric tile)."""
    if seconds is None or not np.isfinite(seconds):
        return "n/a"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * float(value):.1f}%"


# --- preprocessing lab ---------------------------------------------------------------------------
def preprocess_params(cfg: Config) -> dict[str, Any]:
    """The preprocessing lab's parameters of a config, as `{field: value}`."""
    return {name: getattr(cfg, name) for name in PREPROCESS_FIELDS}


def train_command(params: Mapping[str, Any]) -> str:
    """The exact `python train.py` command line that trains with these Config fields.

    Args:
        params: `{config field: value}`; each becomes `--field-name value` (booleans `--x/--no-x`).

    Returns:
        A shell-quoted command line, e.g.
        `python train.py --clahe-clip-limit 2.0 --clahe-tile-grid 8 ...`.
    """
    parts = ["python", "train.py"]
    for name, value in params.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + name.replace("_", "-"))
        else:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def preprocess_stages(image: np.ndarray, cfg: Config) -> dict[str, np.ndarray]:
    """The three stages the lab shows: `galaxy_core.preprocess.preprocess_stages`."""
    from galaxy_core import preprocess

    return preprocess.preprocess_stages(image, cfg)


def preprocess_thumbnails(images: Sequence[np.ndarray], cfg: Config, size: int) -> list[np.ndarray]:
    """`preprocess_image` of each image, shrunk to `size` px for display, on a few threads.

    OpenCV releases the GIL, so the lab's per-class images are preprocessed in parallel (the lab
    redraws them on every slider change).

    Returns:
        uint8 `(<= size, <= size, 3)` images, in input order.
    """
    from concurrent.futures import ThreadPoolExecutor

    from galaxy_core.preprocess import preprocess_image

    def one(image: np.ndarray) -> np.ndarray:
        return thumbnail(preprocess_image(image, cfg), size)

    workers = max(1, min(len(images), os.cpu_count() or 1, 8))
    if workers == 1:
        return [one(image) for image in images]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, images))


def thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """Shrink a `uint8 (H, W, 3)` image to at most `size` px per side for display (area averaging)."""
    import cv2

    height, width = image.shape[:2]
    scale = size / max(height, width)
    if scale >= 1:
        return image
    return cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                      interpolation=cv2.INTER_AREA)


def luminance_histogram(image: np.ndarray) -> np.ndarray:
    """Counts of the 256 luminance levels (ITU-R BT.601 weights) of a `uint8 (H, W, 3)` image.

    Returns:
        int64 `(256,)`.
    """
    rgb = image.astype(np.uint32)
    # Integer BT.601 luma: (299 R + 587 G + 114 B) / 1000, rounded; stays in 0..255.
    luma = (299 * rgb[..., 0] + 587 * rgb[..., 1] + 114 * rgb[..., 2] + 500) // 1000
    return np.bincount(luma.ravel(), minlength=256)[:256].astype(np.int64)


def histogram_figure(stages: Mapping[str, np.ndarray]):
    """Plotly figure of the luminance histograms of the stages (log counts: sky pixels dominate).

    Built from plain dicts in one `go.Figure(...)` call: `update_layout` would cost ~10x more, and
    this figure is redrawn on every slider change of the preprocessing lab.
    """
    import plotly.graph_objects as go

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


# --- overview -----------------------------------------------------------------------------------
def class_distribution_figure(class_names: Sequence[str], counts: Mapping[str, Sequence[int]]):
    """Grouped bar chart of the class shares of each split (hover: the image counts).

    Shares, not counts, so that a 17k-image dataset and a 1.7k-image test split compare at a glance.

    Args:
        class_names: the C class names.
        counts: `{split name: C counts}`.
    """
    import plotly.graph_objects as go

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


def _first(mapping: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if mapping.get(key) is not None:
            return mapping[key]
    return default


def run_summary(run: Any) -> dict[str, Any]:
    """Headline facts of a `RunBundle` for the Overview: strings ready to show, and a Markdown list.

    Reads `run.json` and `metrics.json` keys written by `galaxy_core.train` (missing ones show as
    "n/a").
    """
    info, metrics, cfg = run.run_info, run.metrics, run.config
    best = _first(metrics, "best_epoch", default=None)
    best = _first(info, "best_epoch", default=None) if best is None else best
    epochs = run.history.get("epoch") or []
    wall = _first(info, "wall_time_s", "train_time_s", "wall_time", default=None)
    wall = _first(metrics, "wall_time_s", default=None) if wall is None else wall
    rate = _first(info, "train_images_per_s", "images_per_s", default=None)
    rate = _first(metrics, "train_images_per_s", "images_per_s", default=None) if rate is None else rate
    dataset = _first(info, "dataset", "dataset_path", "data_path", "source", default="n/a")
    if isinstance(dataset, Mapping):
        dataset = _first(dataset, "name", "path", "source", default=str(dataset))
    if "dataset" not in info and isinstance(dataset, str) and dataset != "n/a":
        dataset = Path(dataset).name  # a path: its file name is enough here (run.json has it all)
    source = "synthetic" if bundle_is_synthetic(run) else "real"
    created = str(info.get("created", "n/a")).replace("T", " ").replace("+00:00", " UTC")
    model = (f"{cfg.backbone} ({'frozen' if cfg.freeze_backbone else 'fine-tuned'}, {cfg.head} head), "
             f"{cfg.image_size}x{cfg.image_size} px")
    rows = [
        ("epochs run", str(len(epochs))),
        ("best epoch", "n/a" if best is None else str(best)),
        ("training time", format_seconds(wall)),
        ("training speed", "n/a" if rate is None else f"{float(rate):.1f} images/s"),
        ("test loss", f"{metrics['test']['loss']:.4f}"),
        ("validation accuracy", format_percent((metrics.get("val") or {}).get("accuracy"))),
        ("created", created),
    ]
    return {
        "model": model,
        "dataset": f"{dataset} ({source})",
        "created": created,
        "best_epoch": "n/a" if best is None else str(best),
        "best_epoch_int": None if best is None else int(best),
        "training_time": format_seconds(wall),
        "markdown": "\n".join(f"- {name}: **{value}**" for name, value in rows),
    }


def split_sizes(info: Mapping[str, Any], num_test: int) -> dict[str, int | None]:
    """`{"train": n, "val": n, "test": n}` from run.json (test falls back to the predictions)."""
    sizes = info.get("split_sizes") or info.get("splits") or {}
    out = {}
    for split in ("train", "val", "test"):
        value = sizes.get(split) if isinstance(sizes, Mapping) else None
        value = _first(info, f"n_{split}", f"{split}_size", default=value)
        out[split] = None if value is None else int(value)
    if out["test"] is None:
        out["test"] = int(num_test)
    return out


def split_table(info: Mapping[str, Any], num_test: int):
    """Split sizes and shares as a DataFrame (index train / val / test)."""
    import pandas as pd

    sizes = split_sizes(info, num_test)
    known = sum(v for v in sizes.values() if v is not None)
    return pd.DataFrame(
        {"images": [sizes[s] for s in sizes],
         "share": [None if sizes[s] is None or not known else f"{sizes[s] / known:.0%}" for s in sizes]},
        index=pd.Index(["train", "validation", "test"], name="split"))


def class_counts(info: Mapping[str, Any], test_labels: np.ndarray, num_classes: int,
                 synthetic: bool = False) -> dict[str, list[int]]:
    """Images per class: the whole Galaxy10 DECaLS dataset (real runs with its 10 classes), run.json's
    `class_counts` per split when present, and the run's test split (from its predictions).
    """
    counts: dict[str, list[int]] = {}
    if not synthetic:
        from galaxy_core.data import CLASS_COUNTS

        if len(CLASS_COUNTS) == num_classes:
            counts["Galaxy10 DECaLS"] = [int(v) for v in CLASS_COUNTS]
    stored = info.get("class_counts")
    if isinstance(stored, Mapping):
        for split, values in stored.items():
            if isinstance(values, Mapping):
                values = [values.get(str(i), values.get(i, 0)) for i in range(num_classes)]
            if len(values) == num_classes:
                counts[str(split)] = [int(v) for v in values]
    if "test" not in counts:
        counts["test"] = np.bincount(np.asarray(test_labels, dtype=np.int64),
                                     minlength=num_classes)[:num_classes].tolist()
    return counts


def history_columns(history: Any) -> dict[str, np.ndarray]:
    """A training history (DataFrame, dict of lists or list of dicts) as `{column: float array}`."""
    if history is None:
        return {}
    if hasattr(history, "to_dict") and hasattr(history, "columns"):
        return {str(c): np.asarray(history[c], dtype=float) for c in history.columns}
    if isinstance(history, Mapping):
        return {str(k): np.asarray(v, dtype=float) for k, v in history.items()}
    rows = list(history)
    keys = list(rows[0]) if rows else []
    return {str(k): np.asarray([r.get(k, np.nan) for r in rows], dtype=float) for k in keys}


def curves_figure(history: Any, best_epoch: int | None = None):
    """Two side-by-side panels, loss and accuracy, train (solid) and validation (dashed) per epoch.

    Args:
        history: per-epoch columns such as `loss`, `val_loss`, `accuracy`, `val_accuracy`
            (an optional `epoch` column; otherwise epochs count from 1).
        best_epoch: 1-based epoch to mark with a vertical line (the restored checkpoint).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    cols = history_columns(history)
    n = max((len(v) for v in cols.values()), default=0)
    epochs = cols.get("epoch")
    if epochs is None or len(epochs) != n:
        epochs = np.arange(1, n + 1)
    elif n and epochs.min() == 0:
        epochs = epochs + 1  # Keras CSVLogger counts epochs from 0; show them from 1
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"))
    styles = {"": ("train", "solid", "#38bdf8"), "val_": ("validation", "dash", "#f0a030")}
    for col_index, metric in ((1, "loss"), (2, "accuracy")):
        for prefix, (label, dash, colour) in styles.items():
            values = cols.get(prefix + metric)
            if values is None:
                continue
            fig.add_trace(go.Scatter(x=epochs, y=values, name=label, mode="lines+markers",
                                     line={"dash": dash, "color": colour}, marker={"size": 5},
                                     legendgroup=label, showlegend=col_index == 1,
                                     hovertemplate=f"{label} {metric}<br>epoch %{{x}}: %{{y:.4f}}<extra></extra>"),
                          row=1, col=col_index)
        if best_epoch is not None:
            fig.add_vline(x=best_epoch, line={"dash": "dot", "color": "#9ca3af"}, row=1, col=col_index)
    fig.update_xaxes(title_text="epoch", dtick=max(1, n // 10) if n else None)
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      legend={"orientation": "h", "y": -0.25, "x": 0.5, "xanchor": "center",
                              "yanchor": "top"})
    return fig


# --- classify -------------------------------------------------------------------------------------
def top_k(probs: np.ndarray, class_names: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
    """The k most probable classes of one probability vector `(C,)`, most probable first."""
    from galaxy_core.inference import top_k as _top_k

    return _top_k(probs, class_names, max(1, min(int(k), len(probs))))


def topk_figure(probs: np.ndarray, class_names: Sequence[str], k: int = 5, true_label: int | None = None):
    """Horizontal bar chart of the top-k probabilities (most probable on top)."""
    import plotly.graph_objects as go

    pairs = top_k(probs, class_names, k)[::-1]
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


# --- confusion matrix -----------------------------------------------------------------------------
def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Row-normalized confusion matrix (each true class sums to 1; empty rows stay 0). float64."""
    matrix = np.asarray(matrix, dtype=float)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str], normalized: bool = False):
    """Plotly heatmap of a confusion matrix (rows = true class, columns = predicted class).

    The hover text always gives the count, the row share and both class names.
    """
    import plotly.graph_objects as go

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


def per_class_table(per_class: Any, class_names: Sequence[str]):
    """Per-class precision / recall / F1 / support as a DataFrame, one row per class.

    Accepts `metrics["per_class"]` as a dict keyed by class name (or index) of dicts, or a list of
    dicts in class order.
    """
    import pandas as pd

    rows = []
    for i, name in enumerate(class_names):
        if isinstance(per_class, Mapping):
            entry = per_class.get(name, per_class.get(str(i), per_class.get(i, {})))
        else:
            entry = per_class[i] if i < len(per_class) else {}
        rows.append({
            "class": name,
            "precision": entry.get("precision"),
            "recall": entry.get("recall"),
            "f1": entry.get("f1", entry.get("f1-score", entry.get("f1_score"))),
            "support": entry.get("support"),
        })
    return pd.DataFrame(rows).set_index("class")


def cell_indices(y_true: np.ndarray, y_pred: np.ndarray, true_label: int, pred_label: int) -> np.ndarray:
    """Row indices (into the test arrays) of the images in one confusion-matrix cell. int64."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return np.flatnonzero((y_true == true_label) & (y_pred == pred_label)).astype(np.int64)


# --- explain errors -----------------------------------------------------------------------------
def error_table(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str],
                rows: Iterable[int] | None = None):
    """Misclassified test images as a DataFrame: true/predicted class, confidence and margin.

    `confidence` is the predicted class's probability; `margin` = p(predicted) - p(true) (how far
    the model was from getting it right).

    Args:
        y_true: int `(N,)`; probs: float `(N, C)`.
        rows: optional subset of row indices to consider (default: all misclassified).

    Returns:
        DataFrame indexed by the test row, columns `true`, `predicted`, `confidence`, `margin`,
        `p_true`.
    """
    import pandas as pd

    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=float)
    y_pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != y_true) if rows is None else np.asarray(list(rows), dtype=np.int64)
    p_pred = probs[wrong, y_pred[wrong]]
    p_true = probs[wrong, y_true[wrong]]
    return pd.DataFrame({
        "true": [class_names[i] for i in y_true[wrong]],
        "predicted": [class_names[i] for i in y_pred[wrong]],
        "confidence": p_pred,
        "margin": p_pred - p_true,
        "p_true": p_true,
    }, index=pd.Index(wrong, name="test row"))


# --- run bundles (adapters over galaxy_core.bundle) ------------------------------------------------
def entry_path(entry: Any) -> Path:
    """Folder of a `BundleEntry`."""
    return Path(entry.path)


def entry_is_valid(entry: Any) -> bool:
    """Whether `list_bundles` found this bundle valid."""
    for name in ("valid", "ok", "is_valid"):
        if hasattr(entry, name):
            return bool(getattr(entry, name))
    return entry_reason(entry) is None


def entry_reason(entry: Any) -> str | None:
    """Why a bundle is invalid (None for a valid one)."""
    for name in ("error", "reason"):
        value = getattr(entry, name, None)
        if value:
            return str(value)
    return None


def bundle_is_synthetic(run: Any) -> bool:
    """Whether a `RunBundle` (or `BundleEntry`) was trained on synthetic data."""
    value = getattr(run, "is_synthetic", None)
    if callable(value):
        value = value()
    if value is None:
        info = getattr(run, "run_info", None) or {}
        value = info.get("synthetic", info.get("is_synthetic", False))
    return bool(value)


def run_label(entry: Any) -> str:
    """One line for the run selector: `name · backbone · test acc · data source`.

    Example: `demo-20260101-120000 · MobileNetV2 · 41.3% test acc · synthetic`.
    """
    run = getattr(entry, "bundle", None) or entry
    try:
        accuracy = format_percent(run.metrics["test"]["accuracy"])
    except (AttributeError, KeyError, TypeError):
        accuracy = "n/a"
    backbone = getattr(getattr(run, "config", None), "backbone", "?")
    source = "synthetic" if bundle_is_synthetic(run) else "real data"
    return f"{entry_path(entry).name} · {backbone} · {accuracy} test acc · {source}"


def describe_error(err: BaseException) -> str:
    """A one-line message for the user: the project's own errors as they are, others with their type."""
    from galaxy_core.errors import GalaxyError

    text = str(err).strip() or type(err).__name__
    if isinstance(err, (GalaxyError, ValueError)):
        return text
    return f"{type(err).__name__}: {text}"


def results_table(results: Sequence[Mapping[str, Any]], class_names: Sequence[str], k: int = 3):
    """The Classify view's table: one row per uploaded file (errors included).

    Columns: `file`, `predicted`, `confidence`, then `class 2`, `p 2`, ... up to `k`, and `error`.
    """
    import pandas as pd

    rows = []
    for r in results:
        row: dict[str, Any] = {"file": r["name"]}
        if r.get("probs") is not None:
            ranked = top_k(r["probs"], class_names, k)
            row["predicted"], row["confidence"] = ranked[0]
            for j, (name, p) in enumerate(ranked[1:], start=2):
                row[f"class {j}"], row[f"p {j}"] = name, p
        row["error"] = r.get("error") or ""
        rows.append(row)
    table = pd.DataFrame(rows)
    for col in ("predicted", "confidence"):
        if col not in table:
            table[col] = None
    first = ["file", "predicted", "confidence"]
    return table[first + [c for c in table.columns if c not in first + ["error"]] + ["error"]]


# The four saliency methods of galaxy_core.explain, in display order, with their display names.
METHODS: tuple[str, ...] = ("saliency", "smoothgrad", "gradcam", "gradcam_plus_plus")
METHOD_NAMES = {"saliency": "Saliency", "smoothgrad": "SmoothGrad", "gradcam": "Grad-CAM",
                "gradcam_plus_plus": "Grad-CAM++"}


def error_pairs(errors) -> dict[str, int]:
    """`{"true → predicted": number of errors}` of an `error_table`, most frequent pair first."""
    keys = errors["true"] + " → " + errors["predicted"]
    counts = keys.value_counts(sort=False)
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {key: int(n) for key, n in ordered}


def render_map(image: np.ndarray, heatmap: np.ndarray, mode: str = "overlay") -> np.ndarray:
    """A map for display: blended over the image (`overlay`) or alone (`heatmap`). uint8 (H, W, 3)."""
    from galaxy_core.explain.overlay import colorize, overlay

    if mode == "overlay":
        return overlay(image, heatmap, alpha=0.45)
    return colorize(heatmap)


def map_caption(method: str, scores: tuple[float, float] | None) -> str:
    """Markdown caption of a map: bold name, then `del 0.12 ↓ · ins 0.56 ↑` (n/a when not computed)."""
    name = METHOD_NAMES.get(method, method)
    if scores is None:
        return f"**{name}**  \n:gray[faithfulness: computing...]"
    if not np.all(np.isfinite(scores)):
        return f"**{name}**  \n:gray[faithfulness n/a]"
    return f"**{name}**  \n:gray[del {scores[0]:.3f} ↓ · ins {scores[1]:.3f} ↑]"


def cell_position(cells, true_index: int, pred_index: int) -> int:
    """Row position of the (true, predicted) cell in a `cell_table`, or 0 if it is not listed."""
    match = np.flatnonzero((cells["true_index"].to_numpy() == true_index)
                           & (cells["pred_index"].to_numpy() == pred_index))
    return int(match[0]) if match.size else 0


def most_faithful(scores: Mapping[str, tuple[float, float]] | None) -> str | None:
    """One line naming the map that explains this prediction best, or None without scores.

    "Best" = the largest insertion - deletion difference: its top pixels both carry the class
    (insertion high) and take it away when removed (deletion low).
    """
    if not scores:
        return None
    gaps = {m: float(s[1]) - float(s[0]) for m, s in scores.items() if np.all(np.isfinite(s))}
    if not gaps:
        return None
    ranked = sorted(gaps, key=gaps.get, reverse=True)
    best = ranked[0]
    runner_up = (f"; next {METHOD_NAMES.get(ranked[1], ranked[1])} ({gaps[ranked[1]]:+.3f})"
                 if len(ranked) > 1 else "")
    return (f"Most faithful map for this image: **{METHOD_NAMES.get(best, best)}** "
            f"(insertion - deletion {gaps[best]:+.3f}{runner_up}).")


def cell_table(matrix: np.ndarray, class_names: Sequence[str]):
    """The non-empty cells of a confusion matrix as a list: errors first, then correct cells.

    Each group is sorted by image count (largest first), so the first row is the most frequent
    confusion. Columns: `true_index`, `pred_index` (ints), `true`, `predicted`, `images`, `share`
    (of the true class).
    """
    import pandas as pd

    counts = np.asarray(matrix, dtype=np.int64)
    shares = normalize_rows(counts)
    rows = [(i != j, int(counts[i, j]), i, j) for i in range(len(counts)) for j in range(len(counts))
            if counts[i, j] > 0]
    rows.sort(key=lambda r: (not r[0], -r[1], r[2], r[3]))
    return pd.DataFrame({
        "true_index": [r[2] for r in rows],
        "pred_index": [r[3] for r in rows],
        "true": [class_names[r[2]] for r in rows],
        "predicted": [class_names[r[3]] for r in rows],
        "images": [r[1] for r in rows],
        "share": [float(shares[r[2], r[3]]) for r in rows],
    })
