"""Heatmap over image blending (pure function)."""

from __future__ import annotations

import cv2
import numpy as np

from galaxy_core.errors import ExplainError


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """Map a (H, W) heatmap in [0, 1] to RGB with a matplotlib colormap. uint8 (H, W, 3)."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError:
        raise ExplainError(f"Unknown colormap {colormap!r}; use a matplotlib name such as "
                           "'jet', 'inferno', 'viridis', 'magma'.") from None
    values = np.clip(np.nan_to_num(np.asarray(heatmap, np.float32)), 0.0, 1.0)
    return (cmap(values)[..., :3] * 255.0 + 0.5).astype(np.uint8)


def overlay(image_uint8: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4,
            colormap: str = "jet") -> np.ndarray:
    """Blend a coloured heatmap over an image.

    Args:
        image_uint8: uint8 (H, W, 3) RGB.
        heatmap: (h, w) in [0, 1] (values outside are clipped); resized bilinearly to (H, W).
        alpha: heatmap weight in [0, 1] (0 returns the image unchanged).
        colormap: matplotlib colormap name.

    Returns:
        uint8 (H, W, 3): (1 - alpha) * image + alpha * colormap(heatmap).
    """
    image = np.asarray(image_uint8)
    heatmap = np.asarray(heatmap, np.float32)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ExplainError(f"image must be uint8 (H, W, 3); got {image.dtype} {image.shape}.")
    if heatmap.ndim != 2:
        raise ExplainError(f"heatmap must be 2-D (H, W); got shape {heatmap.shape}.")
    if not 0.0 <= alpha <= 1.0:
        raise ExplainError(f"alpha must be in [0, 1]; got {alpha}.")
    if heatmap.shape != image.shape[:2]:
        heatmap = cv2.resize(heatmap, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    colored = colorize(heatmap, colormap).astype(np.float32)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colored
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)
