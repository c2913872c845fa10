"""Tests of pages/lib/catalog.py: the Catalog view's filters, counts, sky sample and CSV."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from pages.lib import catalog

NAMES = ["A", "B", "C"]


def frame(n: int = 9, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pred = rng.integers(0, 3, n)
    data = pd.DataFrame({"row": np.arange(n), "ra": rng.uniform(0, 360, n), "dec": rng.uniform(-30, 60, n),
                         "pred_index": pred, "pred_name": np.array(NAMES, dtype=object)[pred],
                         "confidence": rng.uniform(0.3, 1.0, n), "error": [None] * n})
    data.loc[[1, 4], ["pred_index", "pred_name", "confidence"]] = None
    data.loc[[1, 4], "error"] = "unreadable"
    return data


def test_filters_keep_the_classes_and_confidences_asked_for():
    data = frame(50)
    shown = catalog.filter_rows(data, ["A", "C"], (0.5, 0.9), with_errors=False)
    expected = data[data["pred_name"].isin(["A", "C"]) & data["confidence"].between(0.5, 0.9)]
    assert shown["row"].tolist() == expected["row"].tolist() and len(shown) > 0
    with_errors = catalog.filter_rows(data, ["A", "C"], (0.5, 0.9), with_errors=True)
    assert sorted(with_errors["row"]) == sorted(expected["row"].tolist() + [1, 4])


def test_class_counts_list_every_class_and_the_errors():
    data = frame(50)
    counts = catalog.class_counts(data, NAMES + ["D"])
    assert counts["class"].tolist() == NAMES + ["D", catalog.ERROR_LABEL]
    assert counts["rows"].tolist() == [int((data["pred_name"] == c).sum()) for c in NAMES] + [0, 2]


def test_the_sky_sample_is_capped_and_keeps_only_placed_rows():
    data = frame(2_000)
    data.loc[3, "ra"] = np.nan
    assert len(catalog.sky_sample(data)) == 1_999
    sample = catalog.sky_sample(data, max_points=500)
    assert len(sample) == 500 and sample["row"].is_unique and 3 not in set(sample["row"])
    assert sample["row"].tolist() == catalog.sky_sample(data, max_points=500)["row"].tolist()  # fixed seed


def test_gallery_rows_are_the_most_or_least_confident_of_a_class():
    data = frame(60)
    most = catalog.gallery_rows(data, "B", 5, True)
    least = catalog.gallery_rows(data, "B", 5, False)
    b = data[data["pred_name"] == "B"]["confidence"]
    assert most["confidence"].tolist() == sorted(b, reverse=True)[:5]
    assert least["confidence"].tolist() == sorted(b)[:5]


def test_csv_bytes_round_trip():
    data = frame(5)
    back = pd.read_csv(io.BytesIO(catalog.csv_bytes(data)))
    assert back["row"].tolist() == data["row"].tolist() and back["error"].notna().sum() == 2
