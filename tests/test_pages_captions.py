"""pages/lib/captions.py: the views' texts (no streamlit)."""

import re

import pytest

from galaxy_core.errors import ModelError
from pages.lib import captions


def test_durations_and_shares():
    assert [captions.format_seconds(s) for s in (4.25, 95, 3725, None)] == ["4.2 s", "1m 35s", "1h 02m", "n/a"]
    assert captions.format_percent(0.4131) == "41.3%" and captions.format_percent(None) == "n/a"


def test_describe_error_keeps_the_projects_messages_and_names_other_types():
    # Markdown-safe (issue 25): shown inside st.error, so ':' and the like are escaped.
    assert captions.describe_error(ModelError("Cannot load model 'm.keras': bad")) == "Cannot load model 'm.keras'\\: bad"
    assert captions.describe_error(KeyError("config.json")) == "KeyError\\: 'config.json'"
    assert captions.describe_error(ValueError("key ![b](u)")) == "key \\!\\[b\\]\\(u\\)"


def test_classify_caption_names_the_formats_and_the_pixel_limit():
    text = captions.classify_caption(256, ("png", "jpg", "jpeg"), 40_000_000)
    assert text.startswith("PNG or JPEG (.png, .jpg, .jpeg), up to 40 Mpx (e.g. 6,324 x 6,324 px).")
    assert "256x256 px" in text and "any size" not in text
    assert "crop" not in text and "(CLAHE + opening)" in text
    cropped = captions.classify_caption(64, ("png",), 40_000_000, crop_scale=2.0)
    assert "cropped to a square of 2 radii of its central galaxy, resized to 64x64 px" in cropped
    assert "(galaxy crop + CLAHE + opening)" in cropped


def test_sky_links_point_at_the_legacy_viewer_and_skip_unknown_positions():
    import numpy as np

    link = captions.sky_link(150.1, 2.2)
    assert link.startswith("[sky viewer ↗](https://www.legacysurvey.org/viewer?ra=150.100000&dec=2.200000")
    assert captions.sky_link(float("nan"), 2.0) is None and captions.sky_link(None, None) is None
    sky = {"ra": np.array([10.0, np.nan, 30.0], np.float32), "dec": np.array([1.0, 2.0, -3.0], np.float32)}
    links = captions.sky_links(sky, [2, 1], synthetic=False)
    assert "ra=30.000000" in links[0] and "dec=-3.000000" in links[0] and links[1] is None
    assert captions.sky_links(None, [0], synthetic=False) is None
    assert captions.sky_links(sky, [2, 1], synthetic=True) is None  # generated positions: no links


def test_run_names_reads_as_a_sentence():
    assert captions.run_names(["a"]) == "**a**"
    assert captions.run_names(["a", "b", "c"]) == "**a**, **b** and **c**"


def test_nan_and_non_numbers_are_not_shown_as_nan_percent():
    """Issue 25 item 14: NaN metrics showed as "nan%"."""
    assert captions.format_percent(float("nan")) == "n/a" and captions.format_percent(float("inf")) == "n/a"
    assert captions.format_percent("0.9") == "90.0%" and captions.format_percent("x") == "n/a"


@pytest.mark.parametrize("hostile", ["[click](javascript:alert(1)) **bold**", "![b](http://127.0.0.1:9/b.png)",
                                     "<img src=x onerror=alert(1)>", "`code` $x$ :red[red] _i_ \\[", "a\nb",
                                     "see http://127.0.0.1:9/x www.example.org me@example.org"])
def test_md_escapes_everything_that_would_render(hostile):
    """Issue 25 item 3: every Markdown/HTML opener is escaped, nothing else changes."""
    out = captions.md(hostile)
    unescaped = re.sub(r"\\.", "", out)
    assert not set(unescaped) & captions.MARKDOWN_ACTIVE and "\n" not in out
    assert re.sub(r"\\(.)", r"\1", out).replace(captions.ZWSP, "") == " ".join(hostile.split())
    for bare_link in ("http://", "www.", "@x"):  # GFM links these after escapes: broken up
        assert bare_link not in out.replace("\\", "")
    assert captions.md("galaxy_01.png") == "galaxy\\_01.png" and captions.md("tiny-synthetic.v2") == "tiny-synthetic.v2"
