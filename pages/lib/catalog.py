"""The Catalog view's helpers: open a catalogue folder, filter it, its figures, its gallery's images.

A catalogue folder is what `python -m galaxy_core.catalog` writes: Parquet part files and
`_manifest.json` (`galaxy_core.catalog.manifest`). It is read whole with pyarrow (cached per folder
and the part files' modification times); the sky map draws at most `MAX_SKY_POINTS` points.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from galaxy_core.catalog.manifest import MANIFEST_NAME, read_manifest
from galaxy_core.catalog.writer import PART_PATTERN
from galaxy_core.errors import GalaxyError

MAX_SKY_POINTS = 100_000
ERROR_LABEL = "(not classified)"


class CatalogueUnreadable(Exception):
    """The folder is not a catalogue the view can open (the message says why)."""


def folder_stamp(folder: str | os.PathLike) -> str:
    """A cache key that changes when a part file or the manifest is added, replaced or removed."""
    try:
        names = sorted(n for n in os.listdir(folder) if PART_PATTERN.match(n) or n == MANIFEST_NAME)
        return "|".join(f"{n}@{os.stat(os.path.join(folder, n)).st_mtime_ns}" for n in names)
    except OSError:
        return ""


@st.cache_data(show_spinner="Reading the catalogue...", max_entries=4)
def _read(folder: str, stamp: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    import pyarrow.dataset as ds

    try:
        manifest = read_manifest(folder)
    except GalaxyError as err:
        raise CatalogueUnreadable(str(err)) from err
    if manifest is None:
        raise CatalogueUnreadable(f"{folder} is not a catalogue folder (no {MANIFEST_NAME}); make one with "
                                  "`python -m galaxy_core.catalog --run RUN --out FOLDER INPUT...`")
    if not any(PART_PATTERN.match(n) for n in os.listdir(folder)):
        raise CatalogueUnreadable(f"{folder} holds no classified partition yet")
    frame = ds.dataset(folder, format="parquet").to_table().to_pandas(types_mapper=pd.ArrowDtype)
    frame = frame.sort_values("row").reset_index(drop=True)
    return frame, manifest


def open_catalogue(folder: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, Any]]:
    """`(rows, manifest)` of a catalogue folder, rows sorted by `row`.

    Raises:
        CatalogueUnreadable: the folder is missing, not a catalogue, or holds no part yet.
    """
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise CatalogueUnreadable(f"{path} is not a folder")
    return _read(str(path.resolve()), folder_stamp(path))


def class_labels(frame: pd.DataFrame) -> pd.Series:
    """Each row's predicted class, `ERROR_LABEL` for rows that could not be classified."""
    return frame["pred_name"].astype(object).where(frame["error"].isna(), ERROR_LABEL)


def filter_rows(frame: pd.DataFrame, classes: Sequence[str], confidence: tuple[float, float],
                with_errors: bool) -> pd.DataFrame:
    """Rows predicted as one of `classes` with confidence in the closed range (plus error rows if asked)."""
    ok = frame["error"].isna()
    conf = frame["confidence"].astype(float)
    keep = ok & frame["pred_name"].isin(list(classes)).fillna(False).astype(bool) \
        & conf.between(*confidence).fillna(False).astype(bool)
    if with_errors:
        keep |= ~ok
    return frame[keep.astype(bool)]


def class_counts(frame: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Rows per predicted class (every class, 0 included), errors last when there are any."""
    labels = class_labels(frame)
    order = list(class_names) + ([ERROR_LABEL] if (labels == ERROR_LABEL).any() else [])
    counts = labels.value_counts().reindex(order, fill_value=0)
    return pd.DataFrame({"class": order, "rows": counts.to_numpy(int)})


def counts_figure(counts: pd.DataFrame) -> go.Figure:
    fig = go.Figure(go.Bar(x=counts["rows"], y=counts["class"], orientation="h",
                           hovertemplate="%{y}: %{x} rows<extra></extra>"))
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      yaxis={"autorange": "reversed"}, xaxis={"title": "rows"})
    return fig


def confidence_figure(frame: pd.DataFrame, class_names: Sequence[str]) -> go.Figure:
    """The confidence of the classified rows, one box per predicted class."""
    ok = frame[frame["error"].isna()]
    traces = [go.Box(x=ok.loc[ok["pred_name"] == name, "confidence"].astype(float), name=name,
                     boxpoints=False) for name in class_names if (ok["pred_name"] == name).any()]
    fig = go.Figure(traces)
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 10, "b": 10}, showlegend=False,
                      xaxis={"title": "confidence (probability of the predicted class)", "range": [0, 1]},
                      yaxis={"autorange": "reversed"})
    return fig


def sky_sample(frame: pd.DataFrame, max_points: int = MAX_SKY_POINTS, seed: int = 0) -> pd.DataFrame:
    """Rows with finite ra/dec, at most `max_points` of them (a uniform random sample, fixed seed)."""
    ra, dec = frame["ra"].astype(float), frame["dec"].astype(float)
    placed = frame[np.isfinite(ra.to_numpy(float, na_value=np.nan)) & np.isfinite(dec.to_numpy(float, na_value=np.nan))]
    if len(placed) <= max_points:
        return placed
    rows = np.sort(np.random.default_rng(seed).choice(len(placed), max_points, replace=False))
    return placed.iloc[rows]


def sky_figure(points: pd.DataFrame) -> go.Figure:
    """ra/dec of the rows, coloured by predicted class (right ascension grows to the left)."""
    labels = class_labels(points)
    traces = []
    for name in pd.unique(labels):
        sel = points[labels == name]
        traces.append(go.Scattergl(x=sel["ra"].astype(float), y=sel["dec"].astype(float), mode="markers",
                                   name=f"{name} ({len(sel)})", marker={"size": 4, "opacity": 0.7},
                                   customdata=sel["row"].astype(int).to_numpy()[:, None],
                                   hovertemplate="row %{customdata[0]}<br>ra %{x:.4f}°, dec %{y:.4f}°<extra>"
                                                 + str(name) + "</extra>"))
    fig = go.Figure(traces)
    fig.update_layout(height=480, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis={"title": "right ascension (°)", "autorange": "reversed"},
                      yaxis={"title": "declination (°)"},
                      legend={"orientation": "h", "y": 1.02, "x": 0, "xanchor": "left", "yanchor": "bottom"})
    return fig


def gallery_rows(frame: pd.DataFrame, class_name: str, n: int, most_confident: bool) -> pd.DataFrame:
    """The `n` most (or least) confident rows predicted as `class_name`."""
    sel = frame[(frame["pred_name"] == class_name).fillna(False).astype(bool) & frame["error"].isna()]
    return sel.sort_values("confidence", ascending=not most_confident, kind="stable").head(n)


def gallery_images(rows: pd.DataFrame, manifest: dict[str, Any]) -> tuple[list[np.ndarray | None], str | None]:
    """The images of catalogue rows (from their files, or the HDF5 file's rows), and a note.

    Returns:
        One RGB uint8 image (or None when it cannot be read) per row, and a note saying why some
        or all could not be reached (None when all were read).
    """
    access = manifest.get("access") or {}
    if access.get("kind") == "hdf5":
        return _hdf5_images(access.get("path"), rows["row"].astype(int).tolist())
    column = access.get("path_column")
    if not column or column not in rows.columns:
        return [None] * len(rows), "this catalogue does not say where its images are"
    from galaxy_core.preprocessing.decode import read_image

    base = Path(access["base_dir"]) if access.get("base_dir") else None
    images, failed = [], []
    for value in rows[column].astype(object):
        path = Path(str(value))
        path = path if path.is_absolute() or base is None else base / path
        try:
            images.append(read_image(path))
        except (GalaxyError, ValueError) as err:
            images.append(None)
            failed.append(f"{path.name}: {err}")
    note = None if not failed else (f"{len(failed)} of {len(rows)} image(s) cannot be read from this machine "
                                    f"(the paths are the input's, e.g. {failed[0]})")
    return images, note


def _hdf5_images(path: str | None, rows: list[int]) -> tuple[list[np.ndarray | None], str | None]:
    import h5py

    if not path or not Path(path).is_file():
        return [None] * len(rows), f"the input HDF5 file {path} is not on this machine: no images to show"
    order = np.argsort(rows)
    with h5py.File(path, "r") as f:
        block = f["images"][np.asarray(rows)[order]] if rows else []
    images: list[np.ndarray | None] = [None] * len(rows)
    for k, i in enumerate(order):
        images[i] = np.asarray(block[k])
    return images, None


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """The rows as CSV (UTF-8, a header, no index)."""
    return frame.to_csv(index=False).encode("utf-8")
