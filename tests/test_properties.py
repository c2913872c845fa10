"""Sky properties: catalogue columns from a Galaxy10-format file, accuracy by bins, survey links."""

import doctest
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from conftest import write_galaxy10_like
from galaxy_core.data import properties
from galaxy_core.data.galaxy10 import open_dataset
from galaxy_core.data.properties import (PropertyError, accuracy_by_bins, legacy_survey_url,
                                    quantile_edges, sky_columns)


def test_docstring_examples():
    assert doctest.testmod(properties).failed == 0


def test_sky_columns_follow_the_asked_rows(tmp_path):
    path = write_galaxy10_like(tmp_path / "tiny.h5", n=20, size=8)
    rows = np.array([7, 2, 19, 2])
    with open_dataset(path) as ds:
        meta = ds.metadata()
        cols = sky_columns(ds, rows)
    assert set(cols) == {"ra", "dec", "redshift", "pxscale"}
    for key, values in cols.items():
        assert values.dtype == np.float32 and values.shape == (4,)
        np.testing.assert_allclose(values, meta[key][rows], rtol=1e-6)
    by_path = sky_columns(path, rows)  # a path is opened and closed
    np.testing.assert_array_equal(by_path["ra"], cols["ra"])
    assert sky_columns(path, np.array([], dtype=np.int64))["dec"].shape == (0,)
    with pytest.raises(IndexError, match="another dataset"):
        sky_columns(path, np.array([3, 20]))


def test_accuracy_by_bins_counts_and_accuracy():
    z = np.array([0.01, 0.04, 0.06, 0.09, 0.15, 0.2, np.nan, 0.5])
    ok = np.array([1, 0, 1, 1, 0, 1, 1, 1], dtype=bool)
    edges, acc, counts = accuracy_by_bins(z, ok, [0.0, 0.05, 0.1, 0.2])
    assert counts.dtype == np.int64 and counts.tolist() == [2, 2, 2]  # 0.2 in the last bin; NaN, 0.5 out
    np.testing.assert_allclose(acc, [0.5, 1.0, 0.5])
    _, acc_empty, counts_empty = accuracy_by_bins(z, ok, [0.3, 0.4, 0.6])
    assert counts_empty.tolist() == [0, 1] and np.isnan(acc_empty[0]) and acc_empty[1] == 1.0
    # An int asks for quantile bins of about equal size.
    edges_q, _, counts_q = accuracy_by_bins(np.linspace(0, 1, 100), np.ones(100, bool), 4)
    assert edges_q.size == 5 and counts_q.tolist() == [25, 25, 25, 25]


def test_quantile_edges_merge_ties():
    assert quantile_edges([0.1] * 10, 4).tolist() == [0.1, 0.1]
    assert quantile_edges([0, 0, 0, 0, 1], 4).tolist() == [0.0, 1.0]


def test_legacy_survey_url_is_the_viewer_at_the_position():
    url = legacy_survey_url(359.9999999, -12.5, zoom=15)
    parsed = urlparse(url)
    assert (parsed.scheme, parsed.netloc, parsed.path) == ("https", "www.legacysurvey.org", "/viewer")
    q = parse_qs(parsed.query)
    assert q == {"ra": ["0.000000"], "dec": ["-12.500000"], "layer": ["ls-dr10"], "zoom": ["15"]}
    assert legacy_survey_url(-10.0, 0.0).startswith(
        "https://www.legacysurvey.org/viewer?ra=350.000000&dec=0.000000")


@pytest.mark.parametrize("call, words", [
    (lambda: legacy_survey_url(10.0, 91.0), "dec in [-90, 90]"),
    (lambda: legacy_survey_url(float("nan"), 0.0), "No sky position"),
    (lambda: legacy_survey_url(10.0, 0.0, zoom=20), "zoom"),
    (lambda: accuracy_by_bins([0.1, 0.2], [True], [0, 1]), "same length"),
    (lambda: accuracy_by_bins([0.1, 0.2], [2, 1], [0, 1]), "booleans"),
    (lambda: accuracy_by_bins([0.1, 0.2], [1, 1], [1, 0.5]), "increasing"),
    (lambda: quantile_edges([np.nan], 3), "No finite"),
    (lambda: quantile_edges([1.0], 0), "positive integer"),
])
def test_errors_say_what_is_wrong(call, words):
    with pytest.raises(PropertyError) as info:
        call()
    assert words in str(info.value)
