"""pages/lib/saliency.py: names, captions and the verdict of the maps (no streamlit)."""

import numpy as np

from galaxy_core.explain import registry
from pages.lib import saliency


def test_most_faithful_names_the_map_with_the_largest_insertion_minus_deletion():
    scores = {"saliency": (0.30, 0.40), "gradcam": (0.10, 0.70), "smoothgrad": (float("nan"), 0.9)}
    line = saliency.most_faithful(scores)
    assert "**Grad-CAM**" in line and "+0.600" in line and "Saliency" in line
    assert saliency.most_faithful(None) is None
    assert saliency.most_faithful({"gradcam": (float("nan"), float("nan"))}) is None


def test_every_method_is_captioned_with_the_tables_display_name():
    for method in registry.METHODS:
        assert saliency.map_caption(method.name, (0.1, 0.2)).startswith(f"**{method.label}**  \n")


def test_map_caption_shows_scores_or_says_why_not():
    assert saliency.map_caption("gradcam", (0.1234, 0.5)) == "**Grad-CAM**  \n:gray[del 0.123 ↓ · ins 0.500 ↑]"
    assert "computing" in saliency.map_caption("gradcam", None)
    assert "n/a" in saliency.map_caption("saliency", (float("nan"), 0.5))


def test_render_map_blends_or_colours_the_map():
    image = np.zeros((8, 8, 3), np.uint8)
    heat = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    for mode in ("overlay", "heatmap"):
        out = saliency.render_map(image, heat, mode)
        assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert not np.array_equal(saliency.render_map(image, heat, "overlay"), saliency.render_map(image, heat, "heatmap"))
