"""Tests of galaxy_core.evaluation.scoring: labels CSVs, matching files, the score and the predict --labels CLI.

The bundle's model is built by hand to classify by colour (mostly red -> class 0, green -> 1,
blue -> 2), so generated files have known predictions and the score is known exactly.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from galaxy_core.bundle.read import load_bundle
from galaxy_core.bundle.write import write_bundle
from galaxy_core.config import CLASS_NAMES, Config
from galaxy_core.evaluation.metrics import assemble_metrics, evaluate_split
from galaxy_core.predict import main
from galaxy_core.evaluation.scoring import (LabelsError, expand_inputs, format_score, parse_label, read_labels,
                                            score_rows)
from galaxy_core.inference.classify import classify_each

SIZE = 32
# The real development set beside the repository (../shared/real_dev), when present.
REAL_DEV = Path(__file__).resolve().parents[2] / "shared" / "real_dev"


def colour_image(channel: int, seed: int) -> np.ndarray:
    """uint8 (40, 40, 3) RGB: noisy, dominated by one channel (0 red, 1 green, 2 blue)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 40, (40, 40, 3)).astype(np.uint8)
    image[..., channel] = rng.integers(180, 230, (40, 40))
    return image


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A bundle whose model predicts the dominant colour channel as class 0, 1 or 2."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(10, activation="softmax")
    model = keras.Model(inputs, dense(pooled))
    kernel = np.zeros((3, 10), np.float32)
    kernel[[0, 1, 2], [0, 1, 2]] = 40.0
    dense.set_weights([kernel, np.r_[np.zeros(3), np.full(7, -50.0)].astype(np.float32)])
    cfg = Config(image_size=SIZE, weights="none")
    images = np.stack([cv2.resize(colour_image(c % 3, c), (SIZE, SIZE)) for c in range(10)])
    labels = np.arange(10) % 3
    test = evaluate_split(model, images, labels, cfg.class_names, tta=False)
    assert test["plain"]["accuracy"] == 1.0  # the colour rule
    return write_bundle(
        tmp_path_factory.mktemp("runs") / "colour", config=cfg, model=model,
        history={"loss": [0.1], "accuracy": [1.0], "val_loss": [0.1], "val_accuracy": [1.0]},
        metrics=assemble_metrics(test), run_info={"synthetic": True, "best_epoch": 1},
        predictions={"indices": np.arange(10), "labels": labels, "probs": test["probs"], "images": images})


@pytest.fixture
def labelled_folder(tmp_path):
    """Folder: 4 red, 3 green, 1 blue PNG, one broken PNG, one unlabelled JPEG, a non-image file.

    labels.csv (real_dev layout, extra columns) labels red 0, green 1 except green_2 (labelled 2),
    blue 2, the broken file 0, and a file that is not there.
    """
    folder = tmp_path / "images"
    folder.mkdir()
    truth = {}
    for name, channel, label in [("red_0", 0, 0), ("red_1", 0, 0), ("red_2", 0, 0), ("red_3", 0, 0),
                                 ("green_0", 1, 1), ("green_1", 1, 1), ("green_2", 1, 2),
                                 ("blue_0", 2, 2)]:
        assert cv2.imwrite(str(folder / f"{name}.png"),
                           cv2.cvtColor(colour_image(channel, hash(name) % 1000), cv2.COLOR_RGB2BGR))
        truth[f"{name}.png"] = label
    (folder / "broken.png").write_bytes(b"\x89PNG not an image at all")
    assert cv2.imwrite(str(folder / "extra.jpg"), colour_image(0, 5))
    (folder / "notes.txt").write_text("not an image")
    lines = ["filename,label_index,class_name,source"]
    lines += [f"{name},{label},{CLASS_NAMES[label]},generated" for name, label in truth.items()]
    lines += ["broken.png,0,Disturbed,generated", "gone.png,1,Merging,generated"]
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder


# --------------------------------------------------------------------------------------------
# Labels CSV
# --------------------------------------------------------------------------------------------
def test_parse_label_index_or_name_any_case():
    assert parse_label("2", CLASS_NAMES) == 2
    assert parse_label(" round SMOOTH ", CLASS_NAMES) == 2
    assert parse_label("edge-on with bulge", CLASS_NAMES) == 9
    with pytest.raises(LabelsError, match=r"0\.\.9"):
        parse_label("10", CLASS_NAMES)
    with pytest.raises(LabelsError, match="unknown class 'Spiral'.*5 Barred Spiral"):
        parse_label("Spiral", CLASS_NAMES)


def test_read_labels_with_and_without_header(tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_text("a.png,3\nsub/b.png,cigar shaped smooth\n\nc.jpg,0\n")
    assert read_labels(plain, CLASS_NAMES) == {"a.png": 3, "sub/b.png": 4, "c.jpg": 0}
    # Header in another order, BOM, class-name column, Windows folder separators.
    named = "\ufeffclass,File\r\nMerging,C:\\x\\m.png\r\nround smooth,.\\r.png\r\n".encode()
    assert read_labels(named, CLASS_NAMES) == {"C:/x/m.png": 1, "r.png": 2}


def test_read_labels_real_dev_layout(labelled_folder):
    labels = read_labels(labelled_folder / "labels.csv", CLASS_NAMES)
    assert labels["green_2.png"] == 2 and labels["gone.png"] == 1 and len(labels) == 10


@pytest.mark.skipif(not (REAL_DEV / "labels.csv").exists(), reason="real_dev folder absent")
def test_read_labels_of_the_real_dev_set():
    labels = read_labels(REAL_DEV / "labels.csv", CLASS_NAMES)
    assert len(labels) == 49 and set(labels.values()) == set(range(10))


@pytest.mark.parametrize("text, match", [
    ("", "no rows"),
    ("filename,label_index\n", "header but no rows"),
    ("a.png,2\nb.png\n", "row 2 .*needs a file name and a label"),
    ("a.png,2\nb.png,Spiral\n", "row 2: unknown class 'Spiral'.*Round Smooth"),
    ("a.png,2\nb.png,-1\n", "row 2: .*0..9"),
    ("a.png,2\na.png,3\n", "labelled both 2 and 3"),
    ("filename,source\na.png,x\n", "without a label column"),
])
def test_read_labels_refuses_bad_csv(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(LabelsError, match=match):
        read_labels(path, CLASS_NAMES)


def test_read_labels_unreadable_sources(tmp_path):
    with pytest.raises(LabelsError, match="Cannot read"):
        read_labels(tmp_path / "none.csv", CLASS_NAMES)
    with pytest.raises(LabelsError, match="not UTF-8"):
        read_labels(b"a.png,\xff\xfe\n", CLASS_NAMES)


def test_expand_inputs_lists_image_files(labelled_folder):
    found = [Path(p).name for p in expand_inputs([labelled_folder, labelled_folder / "nope.png"])]
    assert found == ["blue_0.png", "broken.png", "extra.jpg", "green_0.png", "green_1.png",
                     "green_2.png", "red_0.png", "red_1.png", "red_2.png", "red_3.png", "nope.png"]


# --------------------------------------------------------------------------------------------
# Score
# --------------------------------------------------------------------------------------------
def check_known_score(score):
    """8 scored: red 4/4, green 2 of 2 labelled 1, green_2 (labelled 2) called 1, blue 1/1."""
    m = score["metrics"]
    assert score["n_scored"] == 8 and m["n"] == 8
    assert m["accuracy"] == pytest.approx(7 / 8)
    assert m["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert m["per_class"]["Round Smooth"]["recall"] == pytest.approx(0.5)
    assert m["per_class"]["Merging"]["precision"] == pytest.approx(2 / 3)
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (10, 10) and cm[0, 0] == 4 and cm[1, 1] == 2 and cm[2, 1] == 1 and cm[2, 2] == 1
    assert cm.sum() == 8
    wrong = [row["file"] for row in score["rows"] if not row["correct"]]
    assert [Path(f).name for f in wrong] == ["green_2.png"]


def test_score_rows_of_classified_files(run_dir, labelled_folder):
    from galaxy_core.predict import classify_files

    bundle = load_bundle(run_dir)
    paths = expand_inputs([labelled_folder]) + [str(labelled_folder / "missing.png")]
    labels = read_labels(labelled_folder / "labels.csv", bundle.config.class_names)
    score = score_rows(classify_files(bundle, paths), labels, bundle.config.class_names)
    check_known_score(score)
    assert score["n_files"] == 11
    assert sorted(Path(u["file"]).name for u in score["unreadable"]) == ["broken.png", "missing.png"]
    assert [Path(f).name for f in score["unlabelled"]] == ["extra.jpg"]
    assert score["missing"] == ["gone.png"]
    text = format_score(score, bundle.config.class_names)
    assert "accuracy 0.8750 (7/8)" in text and "balanced accuracy 0.8333" in text
    assert "left out (unreadable)" in text and "extra.jpg" in text and "gone.png" in text
    assert json.loads(format_score(score, bundle.config.class_names, "json"))["n_scored"] == 8


def score_items(model, cfg, names, items, labels):
    """What the Classify page does with uploads: classify_each, then score_rows (`uploads.score_uploads`)."""
    rows = [{"file": name, "probs": probs, "error": error}
            for name, (probs, error) in zip(names, classify_each(model, cfg, items))]
    return score_rows(rows, labels, cfg.class_names)


def test_score_rows_of_classified_bytes_and_arrays(run_dir, labelled_folder):
    bundle = load_bundle(run_dir)
    model = bundle.load_model()
    labels = read_labels(labelled_folder / "labels.csv", bundle.config.class_names)
    names = ["red_0.png", "green_2.png", "broken.png", "blue_0.png", "mystery.png"]
    images = [(labelled_folder / "red_0.png").read_bytes(), colour_image(1, 3),
              (labelled_folder / "broken.png").read_bytes(), colour_image(2, 4), colour_image(0, 1)]
    score = score_items(model, bundle.config, names, images, labels)
    assert score["n_scored"] == 3 and score["metrics"]["accuracy"] == pytest.approx(2 / 3)
    assert [u["file"] for u in score["unreadable"]] == ["broken.png"]
    assert score["unlabelled"] == ["mystery.png"]
    assert "gone.png" in score["missing"] and "red_1.png" in score["missing"]
    # Nothing scorable is a result, not an error.
    empty = score_items(model, bundle.config, ["broken.png"], [b"junk"], labels)
    assert empty["metrics"] is None and empty["n_scored"] == 0
    assert "nothing to score" in format_score(empty, bundle.config.class_names)


# --------------------------------------------------------------------------------------------
# predict --labels
# --------------------------------------------------------------------------------------------
def test_cli_labels_text_and_json(run_dir, labelled_folder, capsys):
    code = main(["--run", str(run_dir), "--labels", str(labelled_folder / "labels.csv"),
                 str(labelled_folder)])
    out, err = capsys.readouterr()
    assert code == 1 and "2 of 10 file(s) left out" in err  # broken.png and extra.jpg
    assert "SYNTHETIC" in out and "accuracy 0.8750 (7/8)" in out and "Confusion matrix" in out

    good = [str(labelled_folder / f"{n}.png") for n in ("red_0", "red_1", "green_2", "blue_0")]
    code = main(["--run", str(run_dir), "--labels", str(labelled_folder / "labels.csv"),
                 "--format", "json", *good])
    out, err = capsys.readouterr()
    assert code == 0 and "SYNTHETIC" in err
    score = json.loads(out)
    assert score["metrics"]["accuracy"] == pytest.approx(0.75) and len(score["rows"]) == 4


def test_cli_bad_labels_exit_2(run_dir, labelled_folder, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("red_0.png,Spiral\n")
    assert main(["--run", str(run_dir), "--labels", str(bad), str(labelled_folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "unknown class 'Spiral'" in err and "Barred Spiral" in err
    assert main(["--run", str(run_dir), "--labels", str(tmp_path / "none.csv"), str(labelled_folder)]) == 2
    with pytest.raises(SystemExit) as info:
        main(["--run", str(run_dir), "--labels", str(bad), "--format", "csv", str(labelled_folder)])
    assert info.value.code == 2


# --------------------------------------------------------------------------------------------
# Issue 25: hostile labels CSVs, files matched by the path the CSV gives
# --------------------------------------------------------------------------------------------
def test_a_labels_field_over_128_kib_is_a_clear_error(run_dir, labelled_folder, tmp_path, capsys):
    big = ("a.png,1\n" + "b.png," + "x" * (200 * 1024) + "\n").encode()
    with pytest.raises(LabelsError, match="line 2: a field is longer than 128 KiB"):
        read_labels(big, CLASS_NAMES)
    path = tmp_path / "big.csv"
    path.write_bytes(b'a.png,"1\n' + b"y" * (200 * 1024))  # an unclosed quote
    assert main(["--run", str(run_dir), "--labels", str(path), str(labelled_folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "longer than 128 KiB" in err and "Traceback" not in err


@pytest.fixture
def two_folders(tmp_path):
    """dA/x.png (red: predicted 0) and dB/x.png (green: predicted 1): one name, two galaxies."""
    for folder, channel in (("dA", 0), ("dB", 1)):
        (tmp_path / folder).mkdir()
        assert cv2.imwrite(str(tmp_path / folder / "x.png"), cv2.cvtColor(colour_image(channel, 7), cv2.COLOR_RGB2BGR))
    return tmp_path


def test_labels_match_by_the_path_the_csv_gives(run_dir, two_folders, capsys):
    csv_path = two_folders / "labels.csv"
    csv_path.write_text("dA/x.png,2\n")
    inputs = [str(two_folders / "dA" / "x.png"), str(two_folders / "dB" / "x.png")]
    assert main(["--run", str(run_dir), "--labels", str(csv_path), "--format", "json", *inputs]) == 1
    score = json.loads(capsys.readouterr().out)
    assert score["n_scored"] == 1 and [row["file"] for row in score["rows"]] == [inputs[0]]
    assert score["unlabelled"] == [inputs[1]]  # not scored with dA/x.png's label
    # Relative to the CSV's own folder, wherever the CSV lives.
    elsewhere = two_folders / "csvs"
    elsewhere.mkdir()
    (elsewhere / "labels.csv").write_text("../dB/x.png,1\n")
    assert main(["--run", str(run_dir), "--labels", str(elsewhere / "labels.csv"), "--format", "json",
                 *inputs]) == 1
    score = json.loads(capsys.readouterr().out)
    assert [row["file"] for row in score["rows"]] == [inputs[1]] and score["metrics"]["accuracy"] == 1.0


def test_an_ambiguous_base_name_is_left_out_and_reported(run_dir, two_folders, capsys):
    csv_path = two_folders / "labels.csv"
    csv_path.write_text("x.png,0\n")
    inputs = [str(two_folders / "dA" / "x.png"), str(two_folders / "dB" / "x.png")]
    assert main(["--run", str(run_dir), "--labels", str(csv_path), *inputs]) == 1
    out, err = capsys.readouterr()
    assert "scored 0 of 2" in out and out.count("left out (ambiguous: the CSV's 'x.png'") == 2
    assert "2 of 2 file(s) left out" in err
    # Uploads have bare names: one that fits two CSV paths is ambiguous too.
    rows = [{"file": "x.png", "probs": [1.0] + [0.0] * 9, "error": None}]
    score = score_rows(rows, {"dA/x.png": 0, "dB/x.png": 1}, CLASS_NAMES)
    assert score["n_scored"] == 0 and [a["file"] for a in score["ambiguous"]] == ["x.png"]
    assert score_rows(rows, {"dA/x.png": 0}, CLASS_NAMES)["n_scored"] == 1
