"""AppTest tests of the Catalog view (pages/views/catalog.py) over catalogues made by the real command.

Two catalogues are made once per session (`shared_catalogues`, also used by test_e2e.py) with
`python -m galaxy_core.catalog`'s `main` on a local cluster of 2 worker processes, by a copy of the
tiny synthetic bundle of test_app.py: one of its dataset file (HDF5; ra/dec carried), one of a CSV
of PNG files (no ra/dec; one file missing, one deleted after classification).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from test_app import new_app, run_view, shared_tiny_runs

_CATALOGUES: dict[str, Path] = {}


def shared_catalogues(tmp_path_factory) -> dict[str, Path]:
    """{"hdf5": folder, "table": folder}: two catalogue folders (built once per test session)."""
    if _CATALOGUES:
        return _CATALOGUES
    import cv2
    import h5py
    from distributed import Client, LocalCluster

    from galaxy_core.catalog.cli import main

    runs = shared_tiny_runs(tmp_path_factory)
    work = tmp_path_factory.mktemp("catalogues")
    run = shutil.copytree(runs / "tiny-synthetic", work / "tiny-synthetic")  # the shared runs stay read-only
    dataset = runs / "tiny-synthetic-dataset.h5"
    (work / "cutouts").mkdir()
    with h5py.File(dataset) as f:
        images = f["images"][:8]
    for i, image in enumerate(images):
        cv2.imwrite(str(work / "cutouts" / f"g{i}.png"), image[..., ::-1])
    with open(work / "sample.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "path"])
        writer.writerows([[f"G{i}", f"cutouts/g{i}.png"] for i in range(8)] + [["LOST", "cutouts/lost.png"]])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster:
        common = ["--run", str(run), "--scheduler", cluster.scheduler_address, "--partition-size", "8"]
        assert main([*common, "--out", str(work / "cat_h5"), str(dataset)]) == 0
        assert main([*common, "--out", str(work / "cat_table"), str(work / "sample.csv")]) == 1  # lost.png
    # Delete every image after classification: the gallery must say it cannot reach them.
    for path in (work / "cutouts").glob("g[0-3].png"):
        path.unlink()
    _CATALOGUES.update(hdf5=work / "cat_h5", table=work / "cat_table")
    return _CATALOGUES


@pytest.fixture(scope="module")
def catalogues(tmp_path_factory):
    return shared_catalogues(tmp_path_factory)


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(tmp_path))  # no run: the Catalog view needs none
    return run_view(new_app().run(), "catalog")


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def image_captions(at) -> list[str]:
    return [caption for image in at.image for caption in image.captions]


def caption_with(at, start: str) -> str:
    return next(c for c in texts(at.caption) if start in c)


def test_the_catalog_view_opens_an_hdf5_catalogue_and_filters_it(app, catalogues):
    import pandas as pd

    frame = pd.read_parquet(catalogues["hdf5"])
    at = app
    assert texts(at.title) == ["Catalog"] and at.info  # asks for a folder
    at.text_input(key="cat_folder").set_value(str(catalogues["hdf5"])).run()
    assert not at.exception, [e.message for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Rows": str(len(frame)), "Classified": str(len(frame)), "Errors": "0", "Run": "tiny-synthetic"}
    assert any("Synthetic run" in w.value for w in at.warning)
    assert caption_with(at, "rows** pass") == f"**{len(frame)} of {len(frame)} rows** pass the filters."
    assert len(at.get("plotly_chart")) == 3  # counts, confidence per class, sky map (ra/dec carried)
    # The gallery: the first class present, most confident first, its images read from the HDF5 rows.
    names = [c for c in at.selectbox(key="cat_gallery_class").options]
    first = frame[frame["pred_name"] == names[0]].sort_values("confidence", ascending=False, kind="stable")
    captions = image_captions(at)
    assert len(captions) == min(12, len(first)) and not any("Images:" in i.value for i in at.info)
    assert captions[0] == f"row {first['row'].iloc[0]}: {first['confidence'].iloc[0]:.1%}"

    top = frame["pred_name"].value_counts().index[0]
    at.multiselect(key="cat_classes").set_value([top]).run()
    low = round(float(frame.loc[frame["pred_name"] == top, "confidence"].median()), 2)
    at.slider(key="cat_conf").set_value((low, 1.0)).run()
    expected = frame[(frame["pred_name"] == top) & (frame["confidence"] >= low)]
    assert 0 < len(expected) < len(frame)
    assert caption_with(at, "rows** pass") == f"**{len(expected)} of {len(frame)} rows** pass the filters."
    assert at.selectbox(key="cat_gallery_class").options == [top]
    assert len(image_captions(at)) == min(12, len(expected))
    download = at.get("download_button")[0]
    assert f"{len(expected)} filtered rows" in download.proto.label


def test_the_catalog_view_of_a_table_says_which_images_it_cannot_reach(app, catalogues):
    at = app
    at.text_input(key="cat_folder").set_value(str(catalogues["table"])).run()
    assert not at.exception, [e.message for e in at.exception]
    assert {m.label: m.value for m in at.metric}["Errors"] == "1"  # lost.png
    assert any("no `ra` and `dec` columns" in i.value for i in at.info)
    at.checkbox(key="cat_errors").check().run()
    assert caption_with(at, "rows** pass") == "**9 of 9 rows** pass the filters."
    for order in ("most confident", "least confident"):
        at.radio(key="cat_gallery_order").set_value(order).run()
        assert not at.exception
    notes = [i.value for i in at.info if i.value.startswith("Images:")]
    shown = len(image_captions(at))
    assert shown < 8 and (notes and "cannot be read from this machine" in notes[0] or shown == 0)


def test_a_folder_that_is_not_a_catalogue_gets_a_message(app, tmp_path):
    at = app
    at.text_input(key="cat_folder").set_value(str(tmp_path)).run()
    assert not at.exception
    assert any("not a catalogue folder" in e.value for e in at.error)
