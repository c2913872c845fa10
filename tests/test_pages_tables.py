"""pages/lib/tables.py: the pandas tables of the views (no streamlit)."""

import numpy as np

from pages.lib import tables


def test_confusion_helpers():
    matrix = np.array([[5, 1, 0], [4, 2, 0], [0, 0, 0]])
    cells = tables.cell_table(matrix, ["a", "b", "c"])
    assert list(zip(cells["true"], cells["predicted"], cells["images"])) == [
        ("b", "a", 4), ("a", "b", 1), ("a", "a", 5), ("b", "b", 2)]  # errors first, largest first
    np.testing.assert_allclose(cells["share"], [4 / 6, 1 / 6, 5 / 6, 2 / 6])
    y_true, y_pred = np.array([0, 1, 1, 2]), np.array([0, 0, 0, 2])
    np.testing.assert_array_equal(tables.cell_indices(y_true, y_pred, 1, 0), [1, 2])


def test_error_table_margin_and_confidence():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]])
    table = tables.error_table(np.array([0, 1, 0]), probs, ["a", "b", "c"])
    assert list(table.index) == [1, 2]  # row 0 is correct
    assert list(table["predicted"]) == ["c", "b"] and list(table["true"]) == ["b", "a"]
    np.testing.assert_allclose(table["confidence"], [0.6, 0.5])
    np.testing.assert_allclose(table["margin"], [0.3, 0.3])
    assert tables.error_pairs(table) == {"a → b": 1, "b → c": 1}


def test_overview_helpers_class_counts_and_splits():
    from galaxy_core.data.galaxy10 import CLASS_COUNTS

    labels = np.array([0, 0, 2, 9])
    synthetic = tables.class_counts(labels, 10, synthetic=True)
    assert synthetic == {"test": [2, 0, 1, 0, 0, 0, 0, 0, 0, 1]}
    real = tables.class_counts(labels, 10, synthetic=False)
    assert list(real) == ["Galaxy10 DECaLS", "test"] and real["Galaxy10 DECaLS"] == list(CLASS_COUNTS)
    table = tables.split_table({"train": 80, "val": 10, "test": 10}, num_test=10)
    assert list(table["images"]) == [80, 10, 10] and list(table["share"]) == ["80%", "10%", "10%"]
    assert tables.split_sizes(None, num_test=7) == {"train": None, "val": None, "test": 7}


def test_cell_position_finds_the_same_cell_in_a_reordered_table():
    names = [f"c{i}" for i in range(3)]
    before = tables.cell_table(np.array([[5, 2, 0], [1, 4, 0], [0, 3, 6]]), names)
    after = tables.cell_table(np.array([[5, 1, 0], [1, 4, 0], [0, 0, 9]]), names)
    position = tables.cell_position(before, 2, 1)  # the (true 2, predicted 1) cell
    assert (before["true_index"].iloc[position], before["pred_index"].iloc[position]) == (2, 1)
    assert tables.cell_position(after, 2, 1) == 0  # gone from the new table: first row
    moved = tables.cell_position(after, 0, 1)
    assert (after["true_index"].iloc[moved], after["pred_index"].iloc[moved]) == (0, 1)


def test_per_class_table_reads_compute_metrics_per_class_scores():
    from galaxy_core.evaluation.metrics import compute_metrics

    names = ["a", "b", "c"]
    metrics = compute_metrics([0, 0, 1, 2], np.eye(3)[[0, 1, 1, 2]], names)
    table = tables.per_class_table(metrics["per_class"], names)
    assert list(table.index) == names and list(table.columns) == ["precision", "recall", "f1", "support"]
    np.testing.assert_allclose(table["recall"], [0.5, 1.0, 1.0])
    np.testing.assert_allclose(table["f1"], [metrics["per_class"][n]["f1"] for n in names])
    assert list(table["support"]) == [2, 1, 1]


def test_results_table_lists_every_file_with_its_top_classes_or_error():
    results = [{"name": "x.png", "probs": np.array([0.2, 0.7, 0.1]), "error": None},
               {"name": "bad.png", "probs": None, "error": "Cannot decode"}]
    table = tables.results_table(results, ["a", "b", "c"], k=2)
    assert list(table.columns) == ["file", "predicted", "confidence", "class 2", "p 2", "error"]
    assert table.loc[0, "predicted"] == "b" and table.loc[0, "class 2"] == "a"
    assert table["predicted"].isna().tolist() == [False, True] and table.loc[1, "error"] == "Cannot decode"


def test_results_table_of_a_blended_run_names_each_part_s_top_class():
    results = [{"name": "x.png", "probs": np.array([0.45, 0.4, 0.15]), "probs_cnn": np.array([0.1, 0.8, 0.1]),
                "probs_morphology": np.array([0.8, 0.0, 0.2]), "error": None},
               {"name": "bad.png", "probs": None, "error": "Cannot decode"}]
    table = tables.results_table(results, ["a", "b", "c"], k=2)
    assert list(table.columns) == ["file", "predicted", "confidence", "CNN alone", "morphology alone",
                                   "class 2", "p 2", "error"]
    assert table.loc[0, ["predicted", "CNN alone", "morphology alone"]].tolist() == ["a", "b", "a"]
    assert table.loc[1, ["CNN alone", "morphology alone"]].isna().all()


def test_compare_table_has_one_row_per_run_and_keeps_missing_metrics_missing():
    rows = [{"name": "a", "backbone": "X", "n_test": 30, "accuracy": 0.5, "balanced_accuracy": 0.4,
             "macro_f1": 0.3, "tta_accuracy": None, "ece": 0.1, "best_epoch": 3, "synthetic": True},
            {"name": "b", "backbone": "Y", "n_test": 30, "accuracy": 0.6, "balanced_accuracy": 0.5,
             "macro_f1": 0.45, "tta_accuracy": 0.62, "ece": None, "best_epoch": None, "synthetic": False}]
    table = tables.compare_table(rows)
    assert list(table.index) == ["a", "b"]
    assert list(table.columns) == ["backbone", "test images", "accuracy", "balanced accuracy", "macro F1",
                                   "TTA accuracy", "ECE", "best epoch", "synthetic"]
    assert np.isnan(table.loc["a", "TTA accuracy"]) and table.loc["b", "TTA accuracy"] == 0.62
    assert np.isnan(table.loc["b", "ECE"]) and table["synthetic"].tolist() == [True, False]
