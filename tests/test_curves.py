"""Tests of galaxy_core.evaluation.curves: the training-curves PNG."""

from galaxy_core.evaluation.curves import plot_curves


def test_plot_curves_writes_png(tmp_path):
    history = {"loss": [1.2, 0.9, 0.8], "val_loss": [1.3, 1.0, 1.1],
               "accuracy": [0.4, 0.6, 0.7], "val_accuracy": [0.35, 0.55, 0.5]}
    path = plot_curves(history, tmp_path / "sub" / "curves.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    # No history at all still gives a readable picture rather than an error.
    assert plot_curves({}, tmp_path / "empty.png").read_bytes()[:4] == b"\x89PNG"
