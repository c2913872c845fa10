"""Text the views show: durations and shares, run labels and summaries, error messages, captions.

Plain Python (no streamlit), so it is tested without a browser.
"""

from __future__ import annotations

import re
from datetime import timezone
from typing import Any, Sequence

import numpy as np


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
    """`0.4131` -> `'41.3%'`; None, NaN or not a number -> `'n/a'` (never "nan%")."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return f"{100.0 * value:.1f}%" if np.isfinite(value) else "n/a"


def md(text: Any) -> str:
    """Text from a bundle or an upload (a run or file name, an error, a class name), safe to put in
    Markdown: shown as the characters it is, never as a link, image, HTML, emphasis or math.

    The characters that open Markdown, HTML, math or Streamlit directives (`MARKDOWN_ACTIVE`:
    brackets, `!`, `*`, `_`, `<`, `` ` ``, `$`, `:`, ...) are backslash-escaped (CommonMark lets any
    ASCII punctuation be escaped) and line breaks become spaces, so the text can sit inside
    `**...**` or a sentence. GFM's bare links (`http://`, `www.`, `a@b.c`) are found in the text
    after escapes are resolved, so a zero-width space `ZWSP` (invisible) is put inside each. `.`, `-`, `/` and the like stay as they are (`galaxy.png` is `galaxy.png`).

    Example:
        >>> print(md("[click](javascript:alert(1)) **bold**"))
        \\[click\\]\\(javascript\\:alert\\(1\\)\\) \\*\\*bold\\*\\*
    """
    text = " ".join(str(text).split())
    # GFM turns bare URLs, www. names and e-mail addresses into links after escapes are resolved:
    # a zero-width space (invisible) breaks each pattern.
    text = _AUTOLINK.sub(lambda m: m.group(0)[:-1] + ZWSP + m.group(0)[-1], text)
    return "".join("\\" + c if c in _PUNCTUATION else c for c in text)


ZWSP = "\u200b"
_AUTOLINK = re.compile(r"(?i):/|www\.|@.")


def plot_text(text: Any) -> str:
    """Text from a bundle for a Plotly figure (class and run names): shown as its characters.

    Plotly reads `<a href=...>`, `<b>`, `<br>` and entities in any text it draws; `&`, `<` and `>`
    become entities, which it shows as the characters. `plot_text("<b>x</b>")` == `'&lt;b&gt;x&lt;/b&gt;'`.
    """
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plot_texts(texts: Sequence[Any]) -> list[str]:
    """`plot_text` of each name (a figure's class names)."""
    return [plot_text(t) for t in texts]


MARKDOWN_ACTIVE = frozenset("\\`*_{}[]<>()#+!|~$:&^")
_PUNCTUATION = MARKDOWN_ACTIVE


def format_pixels(pixels: int) -> str:
    """`40_000_000` -> `'40 Mpx'`, `2_500_000` -> `'2.5 Mpx'`."""
    return f"{pixels / 1e6:g} Mpx"


def describe_error(err: BaseException) -> str:
    """A one-line message for the user: the project's own errors as they are, others with their type.

    Markdown-safe (`md`): an error quotes names and keys from a bundle or an upload, and every
    view shows it inside `st.error` / `st.warning` (which render Markdown).
    """
    from galaxy_core.errors import GalaxyError

    text = str(err).strip() or type(err).__name__
    if isinstance(err, (GalaxyError, ValueError)):
        return md(text)
    return md(f"{type(err).__name__}: {text}")


def run_label(entry: Any) -> str:
    """One line for the run selector of a valid `BundleEntry`: `name · backbone · test acc · source`.

    Example: `demo-20260101-120000 · SmallCNN · 41.3% test acc · synthetic`.
    """
    run = entry.bundle
    source = "synthetic" if run.is_synthetic else "real data"
    return f"{entry.name} · {run.backbone} · {format_percent(run.test_accuracy)} test acc · {source}"


def run_summary(run: Any) -> dict[str, Any]:
    """Headline facts of a `RunBundle` for the Overview: strings ready to show, and a Markdown list.

    Reads the bundle's typed fields (`best_epoch`, `wall_time_s`, ...); missing ones show "n/a".
    """
    cfg = run.config
    best = run.best_epoch
    dataset = run.dataset_path.name if run.dataset_path is not None else "n/a"
    source = "synthetic" if run.is_synthetic else "real"
    created = run.created.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    rate = run.train_images_per_s
    model = (f"{cfg.backbone} ({'frozen' if cfg.freeze_backbone else 'fine-tuned'}, {cfg.head} head), "
             f"{cfg.image_size}x{cfg.image_size} px")
    averaged = run.averaged_epochs
    weights = (f"mean of epochs {averaged[0]}-{averaged[1]} (stochastic weight averaging)" if averaged
               else "n/a" if best is None else f"epoch {best} (best)")
    tile = (f"avg {averaged[0]}-{averaged[1]}" if averaged else "n/a" if best is None else f"best {best}")
    rows = [
        ("epochs run", str(run.epochs_run)),
        ("best epoch", "n/a" if best is None else str(best)),
        ("weights", weights),
        ("training time", format_seconds(run.wall_time_s)),
        ("training speed", "n/a" if rate is None else f"{rate:.1f} images/s"),
        ("test loss", f"{run.metrics['test']['loss']:.4f}"),
        ("validation accuracy", format_percent(run.val_accuracy)),
        ("created", created),
    ]
    return {
        "model": model,
        "dataset": f"{dataset} ({source})",
        "created": created,
        "best_epoch": "n/a" if best is None else str(best),
        "weights": tile,  # short, for the Overview's tile; the Markdown list has the long form
        "training_time": format_seconds(run.wall_time_s),
        "markdown": "\n".join(f"- {name}: **{value}**" for name, value in rows),
    }


def classify_caption(image_size: int, formats: Sequence[str], max_pixels: int, crop_scale: float = 0.0) -> str:
    """The Classify view's caption: what an upload may be and what happens to it.

    Example: `classify_caption(256, ("png", "jpg", "jpeg"), 40_000_000)` starts with
    `"PNG or JPEG (.png, .jpg, .jpeg), up to 40 Mpx"` (the app passes `decode.ACCEPTED_EXTENSIONS`).
    `crop_scale` > 0 (the run's galaxy crop) adds that step.
    """
    aliases = {"jpg": "JPEG", "tif": "TIFF", "webp": "WebP"}
    kinds = list(dict.fromkeys(aliases.get(f, f.upper()) for f in formats))
    names = kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " or " + kinds[-1]
    side = int(max_pixels ** 0.5)
    return (f"{names} ({', '.join('.' + f for f in formats)}), up to {format_pixels(max_pixels)} "
            f"(e.g. {side:,} x {side:,} px). Grayscale and RGBA images are converted to RGB; each "
            + (f"image is cropped to a square of {crop_scale:g} radii of its central galaxy, " if crop_scale > 0
               else "image is ")
            + f"resized to {image_size}x{image_size} px and preprocessed exactly like the "
            f"run's training images ({'galaxy crop + ' if crop_scale > 0 else ''}CLAHE + opening) before the "
            f"model sees it.")


def sky_link(ra: float | None, dec: float | None) -> str | None:
    """A Markdown link to the Legacy Surveys sky viewer at (ra, dec), or None without a position.

    A plain link (`galaxy_core.data.properties.legacy_survey_url`): nothing is fetched, the app works
    offline; the browser opens it only when clicked.

    Example:
        >>> sky_link(150.1, 2.2)
        '[sky viewer ↗](https://www.legacysurvey.org/viewer?ra=150.100000&dec=2.200000&layer=ls-dr10&zoom=14)'
    """
    from galaxy_core.data.properties import PropertyError, legacy_survey_url

    if ra is None or dec is None:
        return None
    try:
        return f"[sky viewer ↗]({legacy_survey_url(ra, dec)})"
    except PropertyError:
        return None


def sky_links(sky: Any, rows, synthetic: bool) -> list[str | None] | None:
    """`sky_link` of each test row, from a bundle's sky columns (`{"ra", "dec", ...}` arrays), or
    None when the bundle keeps no sky positions or they are synthetic (a generated galaxy has no
    counterpart in the survey: a link would show an unrelated patch of sky)."""
    if synthetic or not sky or sky.get("ra") is None or sky.get("dec") is None:
        return None
    ra, dec = np.asarray(sky["ra"]), np.asarray(sky["dec"])
    return [sky_link(float(ra[r]), float(dec[r])) for r in rows]


def run_names(names: Sequence[str]) -> str:
    """`["a", "b", "c"]` -> `'**a**, **b** and **c**'` (a sentence's list of run names, `md`-escaped)."""
    bold = [f"**{md(n)}**" for n in names]
    return bold[0] if len(bold) == 1 else ", ".join(bold[:-1]) + " and " + bold[-1]
