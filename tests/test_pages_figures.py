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
