"""Display of the explanation maps in Explain errors: names, rendering, captions, the verdict.

Plain Python / numpy (no streamlit). The methods, their order and display names are the rows of
`galaxy_core.explain.registry.METHODS`; the maps themselves come from `galaxy_core.explain`.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from galaxy_core.explain import colorize, method_label, overlay


def render_map(image: np.ndarray, heatmap: np.ndarray, mode: str = "overlay") -> np.ndarray:
    """A map for display: blended over the image (`overlay`) or alone (`heatmap`). uint8 (H, W, 3).

    Args:
        image: uint8 `(S, S, 3)` (the model's input); heatmap: float `(S, S)` in [0, 1].
    """
    if mode == "overlay":
        return overlay(image, heatmap, alpha=0.45)
    return colorize(heatmap)


def map_caption(method: str, scores: tuple[float, float] | None) -> str:
    """Markdown caption of a map: bold name, then `del 0.12 ↓ · ins 0.56 ↑` (n/a when not computed)."""
    name = method_label(method)
    if scores is None:
        return f"**{name}**  \n:gray[faithfulness: computing...]"
    if not np.all(np.isfinite(scores)):
        return f"**{name}**  \n:gray[faithfulness n/a]"
    return f"**{name}**  \n:gray[del {scores[0]:.3f} ↓ · ins {scores[1]:.3f} ↑]"


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
    runner_up = (f"; next {method_label(ranked[1])} ({gaps[ranked[1]]:+.3f})"
                 if len(ranked) > 1 else "")
    return (f"Most faithful map for this image: **{method_label(best)}** "
            f"(insertion - deletion {gaps[best]:+.3f}{runner_up}).")
