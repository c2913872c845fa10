"""The preprocessing lab's parameters and images: one widget per config field, built from the
field's metadata, the matching `train.py` command, per-class thumbnails.

The fields are `galaxy_core.config.PREPROCESS_FIELDS`; each widget's label, heading, range, step,
choices and help are that field's metadata in `galaxy_core.config.Config` (the ranges are what
`validate_config` enforces), so the lab offers exactly the values training accepts, and a new
preprocessing field needs no edit here. The stages themselves are
`galaxy_core.preprocessing.preprocess.preprocess_stages`. Plain Python (no streamlit).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from galaxy_core.config import FIELD_RANGES, PREPROCESS_FIELDS, Config, cli_args
from galaxy_core.preprocessing.crop import galaxy_box
from galaxy_core.preprocessing.preprocess import preprocess_image, to_rgb_uint8

# Side of the lab's generated (synthetic) samples: a real Galaxy10 cutout's 256 px (the demo renders its
# training images at this size too), so the galaxy crop cuts a full-resolution image, as on real ones.
SAMPLE_SIZE = 256



@dataclass(frozen=True)
class Widget:
    """The lab's widget of one config field (see `lab_widgets`).

    Attributes:
        field: the Config field. key: its session-state key. group: the heading it is drawn under.
        kind: "slider" (a number in `bounds`, `step`), "select_slider" (one of `options`, e.g. the
            odd kernel sizes), "radio" or "selectbox" (one of `options`).
        label, help: the widget's label and tooltip. off_unless: a field whose value 0 disables it.
    """

    field: str
    key: str
    group: str
    kind: str
    label: str
    help: str
    options: tuple | None = None
    bounds: tuple | None = None
    step: float | int | None = None
    off_unless: str | None = None


def widget_key(field: str) -> str:
    """Session-state key of a field's widget: `lab_<field>`."""
    return f"lab_{field}"


def lab_widgets() -> tuple[Widget, ...]:
    """One `Widget` per `PREPROCESS_FIELDS` entry, in its order, from the field's Config metadata."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    out = []
    for name in PREPROCESS_FIELDS:
        meta = fields[name].metadata
        common = dict(field=name, key=widget_key(name), group=meta["group"], label=meta["label"],
                      help=meta["help"], off_unless=meta.get("off_unless"))
        if "choices" in meta:
            out.append(Widget(kind="radio" if meta.get("widget") == "radio" else "selectbox",
                              options=tuple(meta["choices"]), **common))
        elif meta.get("widget") == "odd":
            out.append(Widget(kind="select_slider", options=tuple(odd_values(name)), **common))
        else:
            out.append(Widget(kind="slider", bounds=slider_range(name), step=meta["step"], **common))
    return tuple(out)


# Session-state key of each field's widget, in PREPROCESS_FIELDS order.
WIDGET_KEYS: dict[str, str] = {name: widget_key(name) for name in PREPROCESS_FIELDS}


def slider_range(field: str) -> tuple[Any, Any]:
    """`(min, max)` of a numeric field's slider: `config.FIELD_RANGES[field]`, ints for int fields."""
    low, high = FIELD_RANGES[field]
    if isinstance(getattr(Config(), field), int):
        return int(low), int(high)
    return float(low), float(high)


def odd_values(field: str) -> list[int]:
    """The odd values of an int field's range, e.g. `[1, 3, 5, ..., 31]` for `opening_kernel_size`."""
    low, high = slider_range(field)
    return [size for size in range(low, high + 1) if size % 2 == 1]


def kernel_sizes() -> list[int]:
    """The odd kernel sizes `validate_config` accepts, e.g. `[1, 3, 5, ..., 31]`."""
    return odd_values("opening_kernel_size")


def preprocess_params(cfg: Config) -> dict[str, Any]:
    """The preprocessing lab's parameters of a config, as `{field: value}` (PREPROCESS_FIELDS order)."""
    return {name: getattr(cfg, name) for name in PREPROCESS_FIELDS}


def train_command(params: Mapping[str, Any]) -> str:
    """The exact `python train.py` command line that trains with these Config fields.

    Args:
        params: `{config field: value}`; the flags are `galaxy_core.config.cli_args` (the ones
            `add_config_arguments` parses: `--field-name value`, booleans `--x/--no-x`).

    Returns:
        A shell-quoted command line, e.g.
        `python train.py --clahe-clip-limit 2.0 --clahe-tile-grid 8 ...`.
    """
    return shlex.join(["python", "train.py", *cli_args(params)])


def crop_caption(image: np.ndarray, cfg: Config) -> str:
    """The caption of the lab's "galaxy crop" stage: the crop's side, or that it is off.

    Args:
        image: the lab's original image (any layout `preprocess.to_rgb_uint8` accepts).
        cfg: uses `crop_scale` and `crop_min_fraction`.

    Returns:
        e.g. "galaxy crop: 69 x 69 of 256 x 256 px" or "galaxy crop: off (crop_scale 0)".
    """
    if cfg.crop_scale == 0:
        return "galaxy crop: off (crop_scale 0)"
    rgb = to_rgb_uint8(image)
    side = galaxy_box(rgb, cfg.crop_scale, cfg.crop_min_fraction)[2]
    height, width = rgb.shape[:2]
    return f"galaxy crop: {side} x {side} of {width} x {height} px"


def thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """Shrink a `uint8 (H, W, 3)` image to at most `size` px per side for display (area averaging)."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    if scale >= 1:
        return image
    return cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                      interpolation=cv2.INTER_AREA)


def preprocess_thumbnails(images: Sequence[np.ndarray], cfg: Config, size: int) -> list[np.ndarray]:
    """`preprocess_image` of each image, shrunk to `size` px for display, on a few threads.

    OpenCV releases the GIL, so the lab's per-class images are preprocessed in parallel (the lab
    redraws them on every slider change).

    Returns:
        uint8 `(<= size, <= size, 3)` images, in input order.
    """
    def one(image: np.ndarray) -> np.ndarray:
        return thumbnail(preprocess_image(image, cfg), size)

    workers = max(1, min(len(images), os.cpu_count() or 1, 8))
    if workers == 1:
        return [one(image) for image in images]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, images))
