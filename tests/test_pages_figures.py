"""pages/lib/figures.py: the Plotly figures of the views (no streamlit)."""

import numpy as np

from pages.lib import figures


def test_luminance_histogram_counts_every_pixel():
    image = np.zeros((10, 20, 3), np.uint8)
    image[:5] = 255
    counts = figures.luminance_histogram(image)
    assert counts.shape == (256,) and counts.sum() == 200
    assert counts[0] == 100 and counts[255] == 100


def test_curves_figure_plots_the_bundles_1_based_epochs_and_marks_the_best():
    history = {"epoch": [1, 2, 3], "loss": [2.3, 2.0, 1.8], "accuracy": [0.1, 0.2, 0.3],
               "val_loss": [2.2, 2.1, 2.0], "val_accuracy": [0.15, 0.2, 0.25]}
    fig = figures.curves_figure(history, best_epoch=3)
    assert len(fig.data) == 4
    assert all(list(trace.x) == [1, 2, 3] for trace in fig.data)
    assert [shape.x0 for shape in fig.layout.shapes] == [3, 3]  # one line per panel
    averaged = figures.curves_figure(history, best_epoch=3, averaged=(2, 3))
    assert [(shape.type, shape.x0, shape.x1) for shape in averaged.layout.shapes] == [("rect", 1.5, 3.5)] * 2


def test_topk_figure_shows_the_k_most_probable_classes_most_probable_on_top():
    probs = np.array([0.1, 0.6, 0.05, 0.25])
    fig = figures.topk_figure(probs, ["a", "b", "c", "d"], k=3)
    assert list(fig.data[0].y) == ["a", "d", "b"]  # plotly draws the last bar on top
    np.testing.assert_allclose(fig.data[0].x, [0.1, 0.25, 0.6])
    assert len(figures.topk_figure(probs, ["a", "b", "c", "d"], k=10).data[0].y) == 4  # k clamped


def test_confusion_figure_shows_counts_or_row_shares():
    matrix = np.array([[3, 1], [0, 2]])
    counts = figures.confusion_figure(matrix, ["a", "b"])
    np.testing.assert_array_equal(counts.data[0].z, matrix)
    shares = figures.confusion_figure(matrix, ["a", "b"], normalized=True)
    np.testing.assert_allclose(shares.data[0].z, [[0.75, 0.25], [0.0, 1.0]])


def test_selected_rows_reads_the_test_row_of_each_selected_point():
    points = [{"customdata": [7, "a", "b"]}, {"customdata": [2]}, {"customdata": [7]}, {"x": 1.0},
              {"customdata": 5}]
    assert figures.selected_rows({"points": points}) == [7, 2, 5]
    assert figures.selected_rows(None) == [] and figures.selected_rows({"points": []}) == []
    assert figures.selected_rows({"selection": {"points": points[:2]}}) == [7, 2]  # the whole event
    assert figures.selected_rows({"points": [{"customdata": {"0": 3, "1": 9}}]}) == [3]  # a typed array


def test_embedding_figure_colours_by_class_marks_errors_and_carries_rows():
    xy = np.arange(12, dtype=float).reshape(6, 2)
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 2, 0])  # rows 1 and 5 wrong
    fig = figures.embedding_figure(xy, labels, preds, ["a", "b", "c", "unused"], colour_by="true")
    assert [t.name for t in fig.data] == ["a", "b", "c"]  # no trace for an empty class
    rows = {int(r) for t in fig.data for r in np.asarray(t.customdata)[:, 0]}
    assert rows == set(range(6))
    symbols = {int(r): s for t in fig.data for r, s in zip(np.asarray(t.customdata)[:, 0], t.marker.symbol)}
    assert [symbols[r] for r in range(6)] == ["circle", "x", "circle", "circle", "circle", "x"]
    by_pred = figures.embedding_figure(xy, labels, preds, ["a", "b", "c"], colour_by="predicted")
    (b,) = [t for t in by_pred.data if t.name == "b"]
    assert sorted(int(r) for r in np.asarray(b.customdata)[:, 0]) == [1, 2, 3]
    # correct points first (the legend shows a trace's first symbol): rows 2, 3, then the error 1
    assert [int(r) for r in np.asarray(b.customdata)[:, 0]] == [2, 3, 1] and b.marker.symbol[0] == "circle"
    # what a selection of the figure's points gives back
    point = {"customdata": list(b.customdata[2])}
    assert figures.selected_rows({"points": [point]}) == [1]


def test_sky_map_splits_correct_and_wrong_and_draws_ra_to_the_left():
    fig = figures.sky_map_figure([10.0, 20.0, 30.0], [1.0, 2.0, 3.0], [True, False, True])
    correct, wrong = fig.data
    assert correct.name == "correct (2)" and list(correct.x) == [10.0, 30.0]
    assert wrong.name == "misclassified (1)" and np.asarray(wrong.customdata)[:, 0].tolist() == [1]
    assert isinstance(fig.to_plotly_json()["data"][1]["customdata"], list)  # not a binary typed array
    assert fig.layout.xaxis.autorange == "reversed"


def test_confusion_difference_figure_is_centred_at_zero():
    diff = np.array([[0.2, -0.2], [-0.1, 0.1]])
    fig = figures.confusion_difference_figure(diff, ["a", "b"], "A", "B")
    heat = fig.data[0]
    assert heat.zmid == 0 and heat.zmin == -heat.zmax == -0.2
    assert heat.text[0][0] == "+20%" and heat.text[1][0] == "-10%"


def test_per_class_f1_and_overlaid_curves_have_one_series_per_run():
    rows = [{"name": "A", "per_class_f1": {"a": 0.5, "b": 0.7}},
            {"name": "B", "per_class_f1": {"a": 0.6}}]
    fig = figures.per_class_f1_figure(rows, ["a", "b"])
    assert [t.name for t in fig.data] == ["A", "B"]
    np.testing.assert_allclose(fig.data[1].y, [0.6, np.nan])
    history = {"epoch": [1, 2], "loss": [1.0, 0.8], "val_loss": [1.1, 0.9], "accuracy": [0.3, 0.4],
               "val_accuracy": [0.2, 0.35]}
    curves = figures.overlaid_curves_figure({"A": history, "B": {k: history[k] for k in ("val_loss",)}})
    assert len(curves.data) == 4 + 1
    shown = [t.name for t in curves.data if t.showlegend]
    assert shown == ["A", "B"]  # validation curves name the run once, in the first panel
    assert {t.line.color for t in curves.data if t.legendgroup == "A"} == {figures.run_colour(0)}


def test_reliability_figure_leaves_out_empty_bins():
    from galaxy_core.evaluation.calibration import reliability_bins

    bins = reliability_bins([0, 0, 1], [[0.9, 0.1], [0.3, 0.7], [0.25, 0.75]], n_bins=5)
    fig = figures.reliability_figure({"run": bins})
    diagonal, curve = fig.data
    assert list(diagonal.x) == [0, 1]
    assert list(curve.customdata) == [2, 1]  # bins (0.6, 0.8] and (0.8, 1.0]
    np.testing.assert_allclose(curve.y, [0.5, 1.0])


def test_temperature_figure_shows_before_and_after_per_split():
    part = {"n": 10, "ece_before": 0.2, "ece_after": 0.05, "nll_before": 1.2, "nll_after": 1.0}
    fig = figures.temperature_figure({"temperature": 1.7, "val": part, "test": dict(part, ece_after=0.07)})
    ece_before, ece_after = fig.data[0], fig.data[1]
    assert list(ece_before.x) == ["validation", "test"] and list(ece_after.y) == [0.05, 0.07]
    assert "T = 1.70" in ece_after.name


def test_accuracy_by_bins_figure_draws_one_bar_per_bin_as_wide_as_it():
    fig = figures.accuracy_by_bins_figure(np.array([0.0, 0.1, 0.3]), np.array([0.5, np.nan]),
                                          np.array([4, 0]), overall=0.5)
    (bars,) = fig.data
    np.testing.assert_allclose(bars.x, [0.05, 0.2])
    np.testing.assert_allclose(bars.width, [0.096, 0.192])
    assert list(bars.text) == ["50%", ""] and np.asarray(bars.customdata)[:, 2].tolist() == [4, 0]
