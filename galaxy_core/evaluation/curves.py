"""Training curves: accuracy and loss per epoch, train vs validation, as a PNG (`curves.png`).

Matplotlib's object API (a `Figure` on an Agg canvas, no pyplot): no global backend state, so it is
safe in the app's threads. The file is written atomically (`galaxy_core.io.atomic_path`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from galaxy_core.io import atomic_path
from galaxy_core.evaluation.metrics import best_epoch_of


def plot_curves(history: Mapping[str, Sequence[float]], path: str | Path,
                best_epoch: int | None = None, title: str | None = None) -> Path:
    """Accuracy and loss per epoch, train vs validation, as a PNG.

    Args:
        history: Keras-style history, e.g. `{"accuracy": [...], "val_accuracy": [...], "loss": [...],
            "val_loss": [...]}`; an optional `"epoch"` list gives the (1-based) epoch numbers.
        path: output PNG path.
        best_epoch: 1-based epoch to mark (default: `best_epoch_of(history)`).
        title: figure title.

    Returns:
        The path written.
    """
    # Figure + Agg canvas directly (no pyplot): no global backend state, safe in the app's threads.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    n = max((len(v) for k, v in history.items() if k != "epoch"), default=0)
    epochs = list(history.get("epoch", range(1, n + 1)))[:n] if n else []
    if best_epoch is None:
        best_epoch = best_epoch_of(history)

    fig = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, metric, label in ((axes[0], "accuracy", "Accuracy"), (axes[1], "loss", "Loss")):
        drawn = False
        for key, name, style in ((metric, "train", "-"), (f"val_{metric}", "validation", "--")):
            values = history.get(key)
            if values is not None and len(values):
                ax.plot(epochs[:len(values)], values, style, marker="o", markersize=3, label=name)
                drawn = True
        if best_epoch is not None and drawn:
            ax.axvline(best_epoch, color="tab:red", linestyle=":", linewidth=1.5,
                       label=f"best epoch ({best_epoch})")
        if not drawn:
            ax.text(0.5, 0.5, f"no {metric} recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{label} per epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label.lower())
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend(loc="best")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    # Fixed margins: tight_layout costs about as much as the rest of the plot.
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.85 if title else 0.9, wspace=0.22)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
