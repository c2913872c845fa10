"""AppTest (streamlit.testing.v1) tests of every view of the Streamlit explorer.

A tiny run bundle is built once per session (a small flat CNN, untrained; synthetic galaxies as the
test images; probabilities drawn at random with a known confusion pattern), so no training is needed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
TINY_SIZE = 64
PER_CLASS = 3


# --- the tiny bundle ------------------------------------------------------------------------------
def tiny_model(image_size: int, num_classes: int):
    """A small flat CNN: [0, 1] input (S, S, 3) -> two convolutions -> softmax (C,)."""
    import keras

    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny_test_cnn")


def build_tiny_bundle(out_dir, image_size: int = TINY_SIZE, per_class: int = PER_CLASS, seed: int = 0,
                      name: str = "tiny-synthetic", members: bool = False,
                      class_names: tuple[str, ...] | None = None) -> Path:
    """Write a small, valid run bundle (labelled synthetic) under `out_dir/name`.

    Test images are synthetic galaxies (`per_class` per class, preprocessed like training); the
    probabilities are random with the true class most likely for about 2 of 3 images, so every view
    has both correct and misclassified images. With `members`, the bundle also holds issue 13's
    optional members: the test images' sky columns (from the dataset file), their penultimate-layer
    features and 2-D map (t-SNE), and a temperature fitted on random "validation" probabilities.
    `class_names`: other class names (the hostile-input tests plant Markdown and HTML in them).
    """
    import keras

    from galaxy_core import explain, synthetic
    from galaxy_core.bundle import write as bundle
    from galaxy_core.evaluation import metrics as metrics_mod
    from galaxy_core.preprocessing import preprocess
    from galaxy_core.config import Config

    keras.utils.set_random_seed(seed)
    cfg = Config(image_size=image_size, backbone="tiny-test-cnn", weights="none", epochs=3,
                 **({"class_names": tuple(class_names)} if class_names else {}))
    c = cfg.num_classes
    labels = np.repeat(np.arange(c), per_class).astype(np.int64)
    raw = synthetic.generate_images(labels, image_size, seed)
    images = preprocess.preprocess_batch(raw, cfg)
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, size=(len(labels), c))
    correct = rng.random(len(labels)) < 0.67
    logits[np.arange(len(labels))[correct], labels[correct]] += 3.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    history = {"loss": [2.3, 2.0, 1.8], "accuracy": [0.1, 0.2, 0.3],
               "val_loss": [2.2, 2.1, 2.0], "val_accuracy": [0.15, 0.2, 0.25]}
    test = {"plain": metrics_mod.compute_metrics(labels, probs, cfg.class_names), "tta": None}
    # metrics.json and run.json with the keys galaxy_core.training.train writes (run facts in run.json).
    metrics = metrics_mod.assemble_metrics(test, None)
    # The "dataset": the raw images, in Galaxy10 format, beside the bundle (run.json points to it).
    from conftest import write_galaxy10_like

    dataset = write_galaxy10_like(Path(out_dir) / f"{name}-dataset.h5", n=len(labels), size=image_size,
                                  labels=labels, images=raw)
    run_info = {
        "synthetic": True,
        "dataset_path": str(dataset),
        "split_sizes": {"train": 8 * len(labels), "val": len(labels), "test": len(labels)},
        "best_epoch": 3,
        "epochs_run": 3,
        "wall_time_s": 12.5,
        "train_images_per_s": 40.0,
    }
    indices = np.arange(len(labels))
    predictions = {"indices": indices, "labels": labels, "probs": probs.astype(np.float32), "images": images}
    model = tiny_model(image_size, c)
    if members:
        from galaxy_core.evaluation import calibration
        from galaxy_core.evaluation import embedding
        from galaxy_core.data import properties

        predictions.update(properties.sky_columns(dataset, indices))
        predictions["features"] = embedding.penultimate_features(model, images)
        predictions["embedding_2d"] = embedding.project_2d(predictions["features"], "tsne", seed=seed)
        val_logits = rng.normal(0.0, 1.0, size=(len(labels), c))
        val_logits[np.arange(len(labels)), labels] += 4.0 * (rng.random(len(labels)) < 0.67)
        val_probs = np.exp(3 * val_logits) / np.exp(3 * val_logits).sum(axis=1, keepdims=True)
        metrics["calibration"] = calibration.calibration_summary(labels, val_probs, labels, probs)
    # Maps stored for the 4 most confident errors (+2 correct rows); the other errors are computed
    # on demand by the app.
    explanations = explain.compute_explanations(model, images, labels, probs.astype(np.float32), indices,
                                                cfg.class_names, cap=4, n_correct=2, smooth_samples=4,
                                                steps=8, progress=False)
    return bundle.write_bundle(Path(out_dir) / name, config=cfg, model=model, history=history,
                               metrics=metrics, run_info=run_info, predictions=predictions,
                               explanations=explanations)


_TINY_RUNS: list[Path] = []  # built once per session, shared with test_e2e.py


def shared_tiny_runs(tmp_path_factory) -> Path:
    """A runs folder holding one tiny synthetic bundle (built once per test session; read only)."""
    if not _TINY_RUNS:
        runs = tmp_path_factory.mktemp("runs")
        build_tiny_bundle(runs)
        _TINY_RUNS.append(runs)
    return _TINY_RUNS[0]


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    return shared_tiny_runs(tmp_path_factory)


@pytest.fixture
def app_with_run(tiny_runs, monkeypatch):
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(tiny_runs))
    return new_app().run()


def new_app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(APP, default_timeout=120)


def run_view(at, view: str):
    """Switch to `pages/views/<view>.py`, run, and fail on any uncaught exception."""
    at.switch_page(f"pages/views/{view}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def png_bytes(image: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", image[..., ::-1] if image.ndim == 3 and image.shape[2] == 3 else image)
    assert ok
    return data.tobytes()


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


# --- AppTest: no run at all ---------------------------------------------------------------------
def test_no_run_shows_the_start_view_and_the_lab_works(tmp_path, monkeypatch):
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(tmp_path / "runs"))  # does not even exist
    at = new_app().run()
    assert not at.exception
    assert texts(at.title) == ["Galaxy10 explorer"]
    assert any("No trained run yet" in t for t in texts(at.info))
    assert any(b.label == "Build the demo run" for b in at.button)
    assert any("python train.py --demo" in c for c in texts(at.code))
    assert any("No valid run" in t for t in texts(at.sidebar.caption))
    with pytest.raises(ValueError):  # views that need a run are not registered
        at.switch_page("pages/views/overview.py")

    run_view(at, "preprocessing_lab")
    assert texts(at.title) == ["Preprocessing lab"]
    assert at.radio(key="lab_source").options == ["Generated sample", "Upload"]
    assert any("One generated (synthetic) galaxy per class" in t for t in texts(at.markdown))
    (command,) = [c for c in texts(at.code) if c.startswith("python train.py")]
    assert "--clahe-clip-limit 2.0" in command  # Config's default


def test_invalid_bundles_are_listed_with_their_reason(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    (runs / "half-written").mkdir(parents=True)
    (runs / "half-written" / "config.json").write_text("{}")
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(runs))
    at = new_app().run()
    assert not at.exception
    (expander,) = at.sidebar.expander
    assert expander.label == "1 invalid run(s)"
    (reason,) = texts(expander.markdown)
    assert reason.startswith("**half-written**") and "missing" in reason and "Traceback" not in reason


# --- AppTest: with the tiny bundle --------------------------------------------------------------------
def test_sidebar_lists_the_run_with_backbone_accuracy_and_synthetic(app_with_run, tiny_runs):
    from galaxy_core.bundle import read as bundle

    at = app_with_run
    assert not at.exception
    accuracy = bundle.load_bundle(tiny_runs / "tiny-synthetic").metrics["test"]["accuracy"]
    selector = at.sidebar.selectbox(key="run_path")
    assert selector.options == [f"tiny-synthetic · tiny-test-cnn · {100 * accuracy:.1f}% test acc · synthetic"]
    assert selector.value == str(tiny_runs / "tiny-synthetic")


def test_overview_shows_the_bundles_metrics(app_with_run, tiny_runs):
    from galaxy_core.bundle import read as bundle

    at = app_with_run  # Overview is the default view when a run exists
    assert texts(at.title) == ["Overview: tiny-synthetic"]
    run = bundle.load_bundle(tiny_runs / "tiny-synthetic")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Test accuracy"] == f"{100 * run.metrics['test']['accuracy']:.1f}%"
    assert metrics["Macro F1"] == f"{run.metrics['test']['macro_f1']:.3f}"
    assert metrics["Weights"] == "best 3" and metrics["Training time"] == "12.5 s"
    assert any("Synthetic run" in w for w in texts(at.warning))
    splits = at.dataframe[0].value
    assert list(splits["images"]) == [240, 30, 30]


def test_preprocessing_lab_follows_the_sliders(app_with_run):
    at = run_view(app_with_run, "preprocessing_lab")
    assert at.radio(key="lab_source").options == ["Generated sample", "Test image of the run", "Upload"]
    stages = at.image[:4]
    assert [i.captions[0] for i in stages] == ["original: synthetic Disturbed (seed 0)",
                                               "galaxy crop: off (crop_scale 0)", "CLAHE", "CLAHE + opening"]
    before = [i.value[0] for i in stages]  # media URLs are content hashes
    assert len(_image_captions(at)) == 4 + 10  # the four stages, then one image per class
    at.slider(key="lab_clahe_clip_limit").set_value(9.5)  # (at 64 px with 8x8 tiles, OpenCV rounds small limits alike)
    at.select_slider(key="lab_opening_kernel_size").set_value(7)
    at.selectbox(key="lab_opening_kernel_shape").set_value("cross")
    at.run()
    assert not at.exception
    (command,) = [c for c in texts(at.code) if c.startswith("python train.py")]
    assert "--clahe-clip-limit 9.5" in command and "--opening-kernel-size 7" in command
    assert "--opening-kernel-shape cross" in command
    after = [i.value[0] for i in at.image[:4]]
    assert after[:2] == before[:2] and after[2] != before[2] and after[3] != before[3]
    at.slider(key="lab_crop_scale").set_value(3.0).run()  # the galaxy crop: a smaller square, enlarged
    assert not at.exception
    cropped = [i.value[0] for i in at.image[:4]]
    assert cropped[0] == before[0] and cropped[1] != before[1]
    assert re.fullmatch(r"galaxy crop: \d+ x \d+ of 256 x 256 px", at.image[1].captions[0])
    (command,) = [c for c in texts(at.code) if c.startswith("python train.py")]
    assert "--crop-scale 3.0" in command
    at.radio(key="lab_source").set_value("Test image of the run").run()
    assert not at.exception
    assert at.image[0].captions[0] == "original: synthetic image #0, Disturbed"  # from the dataset file
    assert any("One test image per class" in t for t in texts(at.markdown))
    at.button[0].click().run()  # Reset to defaults
    (command,) = [c for c in texts(at.code) if c.startswith("python train.py")]
    assert "--clahe-clip-limit 2.0" in command and "--opening-kernel-size 3" in command
    assert "--crop-scale 0.0" in command  # reset turns the crop off again


def test_classify_uploads_png_and_reports_a_bad_file(app_with_run):
    from galaxy_core import synthetic
    from galaxy_core.config import CLASS_NAMES

    at = run_view(app_with_run, "classify")
    galaxy = synthetic.render_galaxy(5, 300, np.random.default_rng(3))  # larger than the model input
    rgba = np.dstack([galaxy, np.full(galaxy.shape[:2], 255, np.uint8)])
    gray = galaxy.mean(axis=2).astype(np.uint8)
    at.file_uploader(key="cls_upload").set_value([
        ("galaxy.png", png_bytes(galaxy), "image/png"),
        ("broken.png", b"\x89PNG but not really", "image/png"),
        ("rgba.png", png_bytes(rgba[..., [2, 1, 0, 3]]), "image/png"),  # png_bytes flips only 3 channels
        ("gray.png", png_bytes(gray), "image/png"),
    ])
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    (error,) = texts(at.error)
    assert error.startswith("**broken.png**") and "Cannot decode" in error
    assert "Classified with ONNX Runtime." in texts(at.caption)  # exported on first use (issue 12)
    headers = [t for t in texts(at.markdown) if "predicted **" in t]
    assert [h.split("**")[1] for h in headers] == ["galaxy.png", "rgba.png", "gray.png"]
    for h in headers:
        assert h.split("predicted **")[1].split("**")[0] in CLASS_NAMES
    table = at.dataframe[0].value
    assert list(table["file"]) == ["galaxy.png", "broken.png", "rgba.png", "gray.png"]
    assert table["predicted"].isna().tolist() == [False, True, False, False]
    assert set(table.loc[~table["predicted"].isna(), "predicted"]) <= set(CLASS_NAMES)
    assert table["confidence"].dropna().between(0, 1).all()

    at.toggle(key="cls_cam_0_galaxy.png").set_value(True).run()  # Grad-CAM overlay on demand
    assert not at.exception, [e.message for e in at.exception]
    assert any(t.startswith("Grad-CAM") for t in _image_captions(at))


def test_classify_scores_uploads_against_a_labels_csv(app_with_run):
    from galaxy_core import synthetic
    from galaxy_core.config import CLASS_NAMES

    at = run_view(app_with_run, "classify")
    rng = np.random.default_rng(4)
    at.file_uploader(key="cls_upload").set_value([
        ("a.png", png_bytes(synthetic.render_galaxy(2, 64, rng)), "image/png"),
        ("b.png", png_bytes(synthetic.render_galaxy(6, 64, rng)), "image/png"),
        ("broken.png", b"\x89PNG but not really", "image/png"),
    ]).run()
    table = at.dataframe[0].value
    pred = dict(zip(table["file"], table["predicted"]))
    wrong = next(c for c in CLASS_NAMES if c != pred["b.png"])
    # a.png labelled with its predicted class (right), b.png with another (wrong), one file not uploaded.
    csv = (f"filename,label_index\na.png,{CLASS_NAMES.index(pred['a.png'])}\nb.png,{wrong.lower()}\n"
           f"broken.png,0\nnot-uploaded.png,3\n")
    at.file_uploader(key="cls_labels").set_value([("labels.csv", csv.encode(), "text/csv")]).run()
    assert not at.exception, [e.message for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Accuracy": "50.0%", "Balanced accuracy": "50.0%", "Scored images": "2 of 3"}
    captions = texts(at.caption)
    assert any("broken.png (unreadable)" in c for c in captions)
    assert any("not-uploaded.png" in c and "were not uploaded" in c for c in captions)

    bad = "filename,label_index\na.png,Spiral Galaxy\n"
    at.file_uploader(key="cls_labels").set_value([("labels.csv", bad.encode(), "text/csv")]).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("labels CSV cannot be used" in e and "Spiral Galaxy" in e and "Round Smooth" in e
               for e in texts(at.error))


def _image_captions(at) -> list[str]:
    return [caption for image in at.image for caption in image.captions]


def test_confusion_matrix_gallery_follows_the_selected_cell(app_with_run, tiny_runs):
    from galaxy_core.bundle import read as bundle

    at = run_view(app_with_run, "confusion_matrix")
    run = bundle.load_bundle(tiny_runs / "tiny-synthetic")
    matrix = np.asarray(run.metrics["test"]["confusion_matrix"])
    names = list(run.config.class_names)
    cells = at.dataframe(key="cm_cell").value
    assert cells["images"].sum() == matrix.sum() == run.num_test
    for t, p, n in zip(cells["true_index"], cells["pred_index"], cells["images"]):
        assert matrix[t, p] == n > 0

    def cell_text():
        (line,) = [t for t in texts(at.markdown) if t.startswith("**True ")]
        return line

    off = matrix.copy()
    np.fill_diagonal(off, -1)
    assert off.max() == cells["images"].iloc[0]  # default: the most frequent confusion
    i, j = int(cells["true_index"].iloc[0]), int(cells["pred_index"].iloc[0])
    assert cell_text().startswith(f"**True {names[i]} → predicted {names[j]}**: {matrix[i, j]} misclassified")
    assert len(_image_captions(at)) == matrix[i, j]

    diagonal = int(np.flatnonzero(cells["true_index"] == cells["pred_index"])[0])
    at.session_state["cm_cell"] = {"selection": {"rows": [diagonal], "columns": [], "cells": []}}
    at.run()
    k = int(cells["true_index"].iloc[diagonal])
    assert cell_text().startswith(f"**True {names[k]} → predicted {names[k]}**: {matrix[k, k]} correct")
    assert len(_image_captions(at)) == matrix[k, k]
    at.button_group(key="cm_mode").set_value("row shares").run()
    assert not at.exception
    per_class = at.dataframe[1].value
    assert list(per_class.index) == names
    np.testing.assert_allclose(per_class["recall"], np.diag(matrix) / matrix.sum(axis=1))
    assert any("precision" in c and "recall" in c for c in texts(at.code))


def test_explain_errors_uses_stored_maps_and_computes_the_others(app_with_run, tiny_runs):
    from galaxy_core.bundle import read as bundle

    at = run_view(app_with_run, "explain_errors")
    run = bundle.load_bundle(tiny_runs / "tiny-synthetic")
    labels, probs = run.predictions["labels"], run.predictions["probs"]
    n_errors = int((probs.argmax(axis=1) != labels).sum())
    table = at.dataframe(key="err_table").value
    assert len(table) == n_errors
    assert table["confidence"].is_monotonic_decreasing  # most confident first
    assert table["precomputed"].tolist()[:4] == [True] * 4  # the fixture stored the top 4 errors
    assert any("Maps from `explanations.h5`" in c for c in texts(at.caption))

    def map_captions():
        return [t for t in texts(at.markdown) if t.startswith("**") and " ↓ · ins " in t]

    assert len(map_captions()) == 4

    at.selectbox(key="err_sort").set_value("least confident first").run()  # an error not stored
    assert not at.exception, [e.message for e in at.exception]
    assert any("Maps computed now" in c for c in texts(at.caption))
    assert len(map_captions()) == 4
    at.button_group(key="err_target").set_value("true class").run()
    assert not at.exception
    row = int(at.dataframe(key="err_table").value.index[0])
    assert any(f"Explaining **{run.config.class_names[labels[row]]}**" in c for c in texts(at.caption))

    pair = at.selectbox(key="err_pair").options[1]
    at.selectbox(key="err_pair").set_value(pair).run()
    filtered = at.dataframe(key="err_table").value
    assert len(filtered) >= 1
    assert set(filtered["true"] + " → " + filtered["predicted"]) == {pair.rsplit(" (", 1)[0]}


def fake_demo(script: str):
    """A stand-in for `train.py --demo`: a Python one-liner run instead (same streaming path)."""
    import sys

    return lambda out_dir: [sys.executable, "-c", script.replace("OUT", str(out_dir))]


def test_start_view_streams_the_demo_and_reports_failures(tmp_path, monkeypatch):
    from pages.lib import jobs

    monkeypatch.setenv("GALAXY_RUNS_DIR", str(tmp_path / "runs"))
    script = (  # the CLIs' one progress format: galaxy_core.io's tqdm bars
        "import sys, time\n"
        "from galaxy_core.io import progress_bar\n"
        "with progress_bar(100, desc='demo') as bar:\n"
        "    for step in (10, 40, 50):\n"
        "        bar.update(step); bar.refresh(); time.sleep(0.05)\n"
        "print('epoch done')\n"
    )
    monkeypatch.setattr(jobs, "demo_command", fake_demo(script))
    at = new_app().run()
    at.button[0].click().run()  # "Build the demo run": exits 0 but writes no bundle
    assert not at.exception
    (log,) = [c for c in texts(at.code) if "epoch done" in c]
    assert "demo: 100%" in log and "demo:  50%" not in log  # carriage-return redraws collapsed
    (error,) = texts(at.error)
    assert "finished but" in error and "is not a valid run bundle" in error

    monkeypatch.setattr(jobs, "demo_command", fake_demo("import sys; print('boom'); sys.exit(3)"))
    at.button[0].click().run()
    (error,) = texts(at.error)
    assert "exit code 3" in error and any(c.strip() == "boom" for c in texts(at.code))


def test_start_view_opens_a_built_demo_run(tmp_path, monkeypatch, tiny_runs):
    import shutil

    from pages.lib import jobs

    monkeypatch.setenv("GALAXY_RUNS_DIR", str(tmp_path / "runs"))
    source = tiny_runs / "tiny-synthetic"
    copy = f"import shutil; shutil.copytree({str(source)!r}, r'OUT'); print('written')"
    monkeypatch.setattr(jobs, "demo_command", fake_demo(copy))
    at = new_app().run()
    at.button[0].click().run()
    assert not at.exception
    assert any(s.startswith("Demo run written to") for s in texts(at.success))
    at.button(key="open_demo").click().run()
    assert not at.exception
    assert texts(at.title)[0].startswith("Overview: demo-")
    assert at.sidebar.selectbox(key="run_path").value.startswith(str(tmp_path / "runs" / "demo-"))
    shutil.rmtree(tmp_path / "runs")


def test_a_run_deleted_after_listing_gives_a_message_not_a_traceback(tmp_path, monkeypatch, tiny_runs):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(tiny_runs / "tiny-synthetic", runs / "copy")
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(runs))
    at = new_app().run()
    assert texts(at.title) == ["Overview: copy"]
    (runs / "copy" / "metrics.json").unlink()  # broken while the session holds it
    os.utime(runs / "copy", (1, 1))  # (the folder mtime alone no longer matters: the member set does)
    at.run()
    assert not at.exception
    (error,) = texts(at.error)
    assert error.startswith("Cannot load the run") and "metrics.json" in error


def test_lab_without_the_runs_dataset_says_test_images_are_already_preprocessed(tmp_path, monkeypatch,
                                                                                 tiny_runs):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(tiny_runs / "tiny-synthetic", runs / "moved")
    info_path = runs / "moved" / "run.json"
    info = json.loads(info_path.read_text())
    info["dataset_path"] = str(tmp_path / "elsewhere.h5")  # e.g. a bundle copied to a laptop
    info_path.write_text(json.dumps(info))
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(runs))
    at = run_view(new_app().run(), "preprocessing_lab")
    assert any("One generated (synthetic) galaxy per class" in t for t in texts(at.markdown))
    at.radio(key="lab_source").set_value("Test image of the run").run()
    assert not at.exception
    assert at.image[0].captions[0] == "original: synthetic image #0, Disturbed, already preprocessed"
    assert any("a second time" in w for w in texts(at.warning))


def test_lab_accepts_an_uploaded_grayscale_png_and_rejects_garbage(tmp_path, monkeypatch):
    from galaxy_core import synthetic

    monkeypatch.setenv("GALAXY_RUNS_DIR", str(tmp_path / "runs"))
    at = run_view(new_app().run(), "preprocessing_lab")
    at.radio(key="lab_source").set_value("Upload").run()
    assert any("Choose an image" in t for t in texts(at.info))
    gray = synthetic.render_galaxy(7, 120, np.random.default_rng(2)).mean(axis=2).astype(np.uint8)
    at.file_uploader(key="lab_upload").set_value(("spiral.png", png_bytes(gray), "image/png")).run()
    assert not at.exception
    assert [i.captions[0] for i in at.image[:4]] == ["original: spiral.png", "galaxy crop: off (crop_scale 0)",
                                                     "CLAHE", "CLAHE + opening"]
    at.file_uploader(key="lab_upload").set_value(("notes.png", b"hello", "image/png")).run()
    assert not at.exception
    (error,) = texts(at.error)
    assert error.startswith("Cannot read notes.png") and "decode" in error




def test_lab_sliders_span_the_configs_validation_ranges(tmp_path, monkeypatch):
    from galaxy_core.config import FIELD_RANGES

    monkeypatch.setenv("GALAXY_RUNS_DIR", str(tmp_path / "runs"))
    at = run_view(new_app().run(), "preprocessing_lab")
    for field in ("crop_scale", "crop_min_fraction", "clahe_clip_limit", "clahe_tile_grid", "opening_iterations"):
        key = f"lab_{field}"
        assert (at.slider(key=key).min, at.slider(key=key).max) == FIELD_RANGES[field], key
    low, high = FIELD_RANGES["opening_kernel_size"]
    assert at.select_slider(key="lab_opening_kernel_size").options == [str(k) for k in range(low, high + 1, 2)]
    at.slider(key="lab_clahe_tile_grid").set_value(64).run()  # the config's largest grid, refused by the old lab
    assert not at.exception
    (command,) = [c for c in texts(at.code) if c.startswith("python train.py")]
    assert "--clahe-tile-grid 64" in command


def test_classify_caption_states_the_formats_and_the_pixel_limit(app_with_run):
    at = run_view(app_with_run, "classify")
    (caption,) = [c for c in texts(at.caption) if "Mpx" in c]
    assert caption.startswith("PNG, JPEG, TIFF, BMP or WebP") and "up to 40 Mpx" in caption and "any size" not in caption


def _copy_of_tiny_run(tiny_runs, runs, name="copy"):
    import shutil

    shutil.copytree(tiny_runs / "tiny-synthetic", runs / name)
    return runs / name


def test_a_model_that_cannot_load_gives_the_runs_reason_not_a_traceback(tmp_path, monkeypatch, tiny_runs):
    import zipfile

    from galaxy_core import synthetic

    runs = tmp_path / "runs"
    # A zip without config.json is refused by the bundle check: listed as invalid, never chosen.
    no_config = _copy_of_tiny_run(tiny_runs, runs, "no-config")
    (no_config / "model.keras").unlink()
    with zipfile.ZipFile(no_config / "model.keras", "w") as archive:
        archive.writestr("metadata.json", "{}")
    # A model whose config passes the check but whose weights are damaged fails only on loading.
    broken = _copy_of_tiny_run(tiny_runs, runs, "bad-weights")
    with zipfile.ZipFile(tiny_runs / "tiny-synthetic" / "model.keras") as src, \
            zipfile.ZipFile(broken / "model.keras", "w") as archive:
        for item in src.infolist():
            data = src.read(item)
            archive.writestr(item, b"not an HDF5 file" if item.filename.endswith(".h5") else data)
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(runs))
    at = new_app().run()
    assert not at.exception and texts(at.title) == ["Overview: bad-weights"]  # views without the model work

    at = run_view(at, "classify")
    galaxy = synthetic.render_galaxy(2, 120, np.random.default_rng(0))
    at.file_uploader(key="cls_upload").set_value([("galaxy.png", png_bytes(galaxy), "image/png")]).run()
    assert not at.exception, [e.message for e in at.exception]
    (error,) = texts(at.error)
    assert "model of run **bad-weights** cannot be loaded" in error
    assert "Traceback" not in error

    at = run_view(at, "explain_errors")  # the first errors have stored maps: no model needed
    assert any("Maps from `explanations.h5`" in c for c in texts(at.caption))
    at.selectbox(key="err_sort").set_value("least confident first").run()  # maps to compute
    assert not at.exception, [e.message for e in at.exception]
    (error,) = texts(at.error)
    assert "model of run **bad-weights** cannot be loaded" in error


def test_a_bundle_with_only_the_required_run_keys_still_loads(tmp_path, monkeypatch, tiny_runs):
    runs = tmp_path / "runs"
    old = _copy_of_tiny_run(tiny_runs, runs, "minimal")
    info = json.loads((old / "run.json").read_text())
    (old / "run.json").write_text(json.dumps({k: info[k] for k in ("format_version", "created", "synthetic")}))
    metrics = json.loads((old / "metrics.json").read_text())
    (old / "metrics.json").write_text(json.dumps({"format_version": 1, "test": metrics["test"]}))
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(runs))
    at = new_app().run()
    assert not at.exception, [e.message for e in at.exception]
    assert texts(at.title) == ["Overview: minimal"]
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["Weights"] == "n/a" and tiles["Training time"] == "n/a" and tiles["TTA accuracy"] == "n/a"
    assert list(at.dataframe[0].value["images"].fillna(-1)) == [-1, -1, 30]  # test size from predictions
    assert any("data: n/a \\(synthetic\\)" in c for c in texts(at.caption))  # Markdown-escaped (issue 25)
    for view in ("preprocessing_lab", "confusion_matrix", "explain_errors"):
        run_view(at, view)


# --- AppTest: the views of issue 13 (compare, embedding map, calibration, galaxy properties) -------
_RICH_RUNS: list[Path] = []


def shared_rich_runs(tmp_path_factory) -> Path:
    """A runs folder with two tiny bundles on the same test set holding every optional member
    (sky columns, features + 2-D map, calibration); built once per session, read only."""
    if not _RICH_RUNS:
        runs = tmp_path_factory.mktemp("rich_runs")
        build_tiny_bundle(runs, seed=0, name="full-a", members=True)
        build_tiny_bundle(runs, seed=1, name="full-b", members=True)
        _RICH_RUNS.append(runs)
    return _RICH_RUNS[0]


@pytest.fixture(scope="session")
def rich_runs(tmp_path_factory):
    return shared_rich_runs(tmp_path_factory)


def rich_app(rich_runs, monkeypatch, run: str = "full-a"):
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(rich_runs))
    at = new_app()
    at.session_state["run_path"] = str(rich_runs / run)
    return at.run()


def copy_runs(tmp_path, *sources) -> Path:
    """A fresh runs folder with copies of the given bundle folders (views may write into them)."""
    import shutil

    runs = tmp_path / "runs"
    for source in sources:
        shutil.copytree(source, runs / Path(source).name)
    return runs


def charts(at) -> list:
    return at.get("plotly_chart")


def select_points(at, key: str, rows) -> None:
    """What a box/lasso selection of these test rows on a map sends back (customdata[0] = row)."""
    at.session_state[key] = {"selection": {"points": [{"customdata": [int(r)]} for r in rows],
                                           "point_indices": list(range(len(rows))), "box": [],
                                           "lasso": []}}


def sky_link_texts(at) -> list[str]:
    return [t for t in texts(at.markdown) if "legacysurvey.org/viewer?ra=" in t]


def test_compare_runs_shows_two_runs_side_by_side(rich_runs, monkeypatch):
    from galaxy_core.bundle import read as bundle
    from galaxy_core.runs import compare

    at = run_view(rich_app(rich_runs, monkeypatch), "compare_runs")
    assert texts(at.title) == ["Compare runs"]
    assert any("Synthetic run" in w for w in texts(at.warning))
    assert at.multiselect(key="cmp_runs").value == [str(rich_runs / "full-a"), str(rich_runs / "full-b")]
    a, b = bundle.load_bundle(rich_runs / "full-a"), bundle.load_bundle(rich_runs / "full-b")
    table = at.dataframe[0].value
    assert list(table.index) == ["full-a", "full-b"]
    np.testing.assert_allclose(table["accuracy"], [a.metrics["test"]["accuracy"], b.metrics["test"]["accuracy"]])
    np.testing.assert_allclose(table["ECE"], [a.calibration["test"]["ece_before"],
                                              b.calibration["test"]["ece_before"]])
    assert len(charts(at)) == 3  # per-class F1, curves, confusion difference
    a_only, b_only = compare.disagreements(a, b)
    assert [t.label for t in at.tabs] == [f"full-a right, full-b wrong ({a_only.size})",
                                          f"full-b right, full-a wrong ({b_only.size})"]
    captions = _image_captions(at)
    assert len(captions) == min(24, a_only.size) + min(24, b_only.size) > 0
    names = a.config.class_names
    r = int(a_only[0])
    assert captions[0] == f"#{r}: {names[a.predictions['labels'][r]]}; full-b says " \
                          f"{names[b.predictions['probs'][r].argmax()]}"
    assert sky_link_texts(at) == []  # generated galaxies have no survey counterpart: no sky links

    at.selectbox(key="cmp_a").set_value("full-b").run()  # swap: B is now full-a
    assert not at.exception
    assert at.selectbox(key="cmp_b").value == "full-a"
    assert at.tabs[0].label == f"full-b right, full-a wrong ({b_only.size})"


def test_compare_runs_refuses_runs_tested_on_other_images(rich_runs, tmp_path, monkeypatch):
    import h5py

    runs = copy_runs(tmp_path, rich_runs / "full-a", rich_runs / "full-b")
    with h5py.File(runs / "full-b" / "predictions.h5", "r+") as f:
        f["indices"][...] = f["indices"][()] + 100  # other rows of the dataset
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(runs))
    at = new_app()
    at.session_state["run_path"] = str(runs / "full-a")
    at = run_view(at.run(), "compare_runs")
    (error,) = texts(at.error)
    assert error.startswith("These runs cannot be compared") and "different test images" in error
    assert len(charts(at)) == 0


def test_compare_runs_with_a_single_run_says_what_is_needed(app_with_run):
    at = run_view(app_with_run, "compare_runs")
    assert any("at least 2 valid runs" in t for t in texts(at.info))
    assert any("Synthetic run" in w for w in texts(at.warning))


def test_embedding_map_shows_selected_points_and_look_alikes(rich_runs, monkeypatch):
    from galaxy_core.bundle import read as bundle
    from galaxy_core.evaluation import embedding

    at = run_view(rich_app(rich_runs, monkeypatch), "embedding_map")
    run = bundle.load_bundle(rich_runs / "full-a")
    assert any("mapped to 2-D with t-SNE" in c for c in texts(at.caption))
    (chart,) = charts(at)
    labels, names = run.predictions["labels"], run.config.class_names
    # no selection yet: only the look-alikes of the default test image (row 0), 8 of them
    near, _ = embedding.nearest_neighbours(run.features, run.features[0], k=8, exclude=[0])
    look = [c for c in _image_captions(at) if " · d " in c]
    assert [int(c.split(":")[0][1:]) for c in look] == near[0].tolist()
    assert any(f"of 8 look-alikes share its true class" in c for c in texts(at.caption))

    select_points(at, "emb_map", [5, 2, 5])
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert any(t.startswith("**2 selected test image(s)**") for t in texts(at.markdown))
    preds = run.predictions["probs"].argmax(axis=1)
    gallery = [c for c in _image_captions(at) if " · d " not in c][:2]
    assert gallery == [f"#{r}: {names[labels[r]]}" + ("" if preds[r] == labels[r] else f" → {names[preds[r]]}")
                       for r in (5, 2)]
    # the look-alike picker lists the selection first
    assert [o.split(":")[0] for o in at.selectbox(key="emb_row").options[:3]] == ["#5", "#2", "#0"]

    at.button_group(key="emb_colour").set_value("predicted").run()
    assert not at.exception
    at.radio(key="emb_source").set_value("an uploaded image").run()
    assert any("Upload a JPEG or PNG" in t for t in texts(at.info))
    from galaxy_core import synthetic

    galaxy = synthetic.render_galaxy(3, 120, np.random.default_rng(1))
    at.file_uploader(key="emb_upload").set_value([("mine.png", png_bytes(galaxy), "image/png")]).run()
    assert not at.exception, [e.message for e in at.exception]
    assert "mine.png (preprocessed)" in _image_captions(at)
    assert len([c for c in _image_captions(at) if " · d " in c]) == 8


def test_embedding_map_computes_features_for_an_older_bundle(tiny_runs, tmp_path, monkeypatch):
    from galaxy_core.bundle import read as bundle

    runs = copy_runs(tmp_path, tiny_runs / "tiny-synthetic")
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(runs))
    at = run_view(new_app().run(), "embedding_map")
    assert any("keeps no penultimate-layer features" in t for t in texts(at.info))
    assert len(charts(at)) == 0
    at.button(key="emb_compute").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert len(charts(at)) == 1
    stored = bundle.load_bundle(runs / "tiny-synthetic")  # the core cached them into the bundle
    assert stored.features is not None and stored.embedding_2d.shape == (stored.num_test, 2)


def test_calibration_view_with_a_fitted_temperature(rich_runs, monkeypatch):
    from galaxy_core.bundle import read as bundle
    from galaxy_core.evaluation import calibration

    at = run_view(rich_app(rich_runs, monkeypatch), "calibration")
    run = bundle.load_bundle(rich_runs / "full-a")
    metrics = {m.label: m.value for m in at.metric}
    n_bins = run.calibration["n_bins"]
    ece = calibration.expected_calibration_error(run.predictions["labels"], run.predictions["probs"], n_bins)
    assert metrics["ECE · full-a"] == f"{ece:.3f}"
    assert metrics["Temperature T"] == f"{run.temperature:.3f}"
    assert metrics["Test ECE"] == f"{run.calibration['test']['ece_after']:.3f}"
    assert len(charts(at)) == 3  # reliability per run, temperature bars, before/after
    at.multiselect(key="cal_runs").set_value([str(rich_runs / "full-a"), str(rich_runs / "full-b")]).run()
    assert not at.exception
    assert {"ECE · full-a", "ECE · full-b"} <= {m.label for m in at.metric}


def test_calibration_view_of_a_run_without_temperature_says_it_predates_it(app_with_run, tiny_runs):
    from galaxy_core.bundle import read as bundle
    from galaxy_core.evaluation import calibration

    at = run_view(app_with_run, "calibration")
    run = bundle.load_bundle(tiny_runs / "tiny-synthetic")
    ece = calibration.expected_calibration_error(run.predictions["labels"], run.predictions["probs"], 15)
    assert {m.label: m.value for m in at.metric}["ECE · tiny-synthetic"] == f"{ece:.3f}"
    assert any("predates temperature scaling" in t for t in texts(at.info))
    assert len(charts(at)) == 1
    assert any("Synthetic run" in w for w in texts(at.warning))


def test_classify_shows_calibrated_probabilities_when_the_run_has_a_temperature(rich_runs, monkeypatch):
    from galaxy_core import synthetic
    from galaxy_core.bundle import read as bundle

    at = run_view(rich_app(rich_runs, monkeypatch), "classify")
    run = bundle.load_bundle(rich_runs / "full-a")
    galaxy = synthetic.render_galaxy(1, 100, np.random.default_rng(2))
    at.file_uploader(key="cls_upload").set_value([("g.png", png_bytes(galaxy), "image/png")]).run()
    raw_table = at.dataframe[0].value
    raw = float(raw_table["confidence"].iloc[0])
    box = at.checkbox(key="cls_calibrated")
    assert not box.disabled
    box.check().run()
    assert not at.exception, [e.message for e in at.exception]
    table = at.dataframe[0].value
    calibrated = float(table["confidence"].iloc[0])
    assert any("(calibrated)" in t for t in texts(at.markdown))
    # the top probability moves towards 1/C for T > 1 (away from it for T < 1); the class stays
    assert calibrated != raw and (calibrated < raw) == (run.temperature > 1)
    assert table["predicted"].iloc[0] == raw_table["predicted"].iloc[0]


def test_classify_calibration_checkbox_is_off_for_a_run_without_temperature(app_with_run):
    at = run_view(app_with_run, "classify")
    assert at.checkbox(key="cls_calibrated").disabled


def test_galaxy_properties_with_sky_columns(rich_runs, monkeypatch):
    from galaxy_core.bundle import read as bundle

    at = run_view(rich_app(rich_runs, monkeypatch), "galaxy_properties")
    run = bundle.load_bundle(rich_runs / "full-a")
    assert any("Synthetic run" in w for w in texts(at.warning))
    assert len(charts(at)) == 2  # accuracy by redshift, sky map
    labels, probs = run.predictions["labels"], run.predictions["probs"]
    wrong = np.flatnonzero(probs.argmax(axis=1) != labels)
    assert any(t.startswith(f"**Misclassified galaxies** ({wrong.size})") for t in texts(at.markdown))
    assert len(_image_captions(at)) == min(24, wrong.size)
    assert sky_link_texts(at) == []  # synthetic positions: no sky-viewer links
    first = wrong[np.argsort(-probs[wrong].max(axis=1), kind="stable")][0]
    assert _image_captions(at)[0].startswith(f"#{first}:")

    select_points(at, "prop_sky", [0, 1, 2])
    at.slider(key="prop_bins").set_value(3)
    at.run()
    assert not at.exception
    assert any(t.startswith("**3 selected galaxies**") for t in texts(at.markdown))
    assert [c.split(":")[0] for c in _image_captions(at)] == ["#0", "#1", "#2"]


def test_galaxy_properties_without_sky_columns_says_so(app_with_run):
    at = run_view(app_with_run, "galaxy_properties")
    assert any("keeps no sky columns" in t for t in texts(at.info))
    assert len(charts(at)) == 0


def test_confusion_gallery_and_explain_errors_link_each_galaxy_to_the_sky_viewer(rich_runs, tmp_path,
                                                                                  monkeypatch):
    import shutil

    from galaxy_core.bundle import read as bundle
    from galaxy_core.data import properties

    # The rich runs are synthetic: their positions are generated, so no gallery links to the survey.
    at = run_view(rich_app(rich_runs, monkeypatch), "confusion_matrix")
    assert _image_captions(at) and sky_link_texts(at) == []
    # The same bundle said to come from the real dataset (run.json's flag): every galaxy links.
    runs = tmp_path / "runs"
    shutil.copytree(rich_runs / "full-a", runs / "real-a")
    info = json.loads((runs / "real-a" / "run.json").read_text())
    (runs / "real-a" / "run.json").write_text(json.dumps({**info, "synthetic": False}))
    at = run_view(rich_app(runs, monkeypatch, run="real-a"), "confusion_matrix")
    assert len(sky_link_texts(at)) == len(_image_captions(at)) > 0
    real = bundle.load_bundle(runs / "real-a")
    at = run_view(at, "galaxy_properties")
    links = sky_link_texts(at)
    assert len(links) == len(_image_captions(at)) > 0
    first = int(_image_captions(at)[0].split(":")[0].lstrip("#"))
    assert properties.legacy_survey_url(real.sky["ra"][first], real.sky["dec"][first]) in links[0]
    at = run_view(at, "explain_errors")
    assert any("legacysurvey.org/viewer?ra=" in t and t.startswith("**Test image #") for t in texts(at.markdown))


def test_galleries_of_a_run_without_sky_columns_have_no_links(app_with_run):
    at = run_view(app_with_run, "confusion_matrix")
    assert _image_captions(at) and sky_link_texts(at) == []
    at = run_view(at, "explain_errors")
    assert sky_link_texts(at) == [] and not any("legacysurvey" in t for t in texts(at.markdown))


def test_classify_blends_the_morphology_classifier_of_a_run_that_has_one(tmp_path, monkeypatch, morphology_bundle):
    from galaxy_core import predict, synthetic
    from galaxy_core.bundle import read as bundle

    runs = copy_runs(tmp_path, morphology_bundle)
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(runs))
    at = run_view(new_app().run(), "classify")
    galaxy = synthetic.render_galaxy(7, 128, np.random.default_rng(5))
    at.file_uploader(key="cls_upload").set_value([("g.png", png_bytes(galaxy), "image/png")]).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("blend two models" in t and "weight 0.5" in t for t in texts(at.caption))
    # The page's probabilities are the CLI's for the same file: CNN and morphology classifier, blended.
    path = tmp_path / "g.png"
    path.write_bytes(png_bytes(galaxy))
    (row,) = predict.classify_files(bundle.load_bundle(runs / morphology_bundle.name), [path])
    table = at.dataframe[0].value
    assert table["predicted"].iloc[0] == row["predicted"]
    assert abs(float(table["confidence"].iloc[0]) - row["confidence"]) < 1e-4
    (cnn,) = predict.classify_files(bundle.load_bundle(runs / morphology_bundle.name), [path], morphology=False)
    assert table["CNN alone"].iloc[0] == cnn["predicted"]


def test_overview_names_the_tensorboard_command_when_the_run_has_logs(tmp_path, monkeypatch, tiny_runs):
    runs = copy_runs(tmp_path, tiny_runs / "tiny-synthetic")
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(runs))
    at = run_view(new_app().run(), "overview")
    assert any("no TensorBoard logs" in t for t in texts(at.caption)) and not at.code
    (runs / "tiny-synthetic" / "tensorboard" / "train").mkdir(parents=True)
    at = run_view(new_app().run(), "overview")
    assert [c.value for c in at.code] == [f"tensorboard --logdir {runs}"]


def test_overview_of_a_blended_run_shows_the_blend_next_to_the_cnn(tmp_path, monkeypatch, morphology_bundle):
    import json

    runs = copy_runs(tmp_path, morphology_bundle)
    metrics_path = runs / morphology_bundle.name / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["morphology"] = {"weight": 0.5, "test": dict(metrics["test"], accuracy=0.25),
                             "test_blend": dict(metrics["test"], accuracy=0.5, balanced_accuracy=0.375)}
    metrics_path.write_text(json.dumps(metrics))
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(runs))
    at = run_view(new_app().run(), "overview")
    shown = {m.label: m.value for m in at.metric}
    assert shown["Blended test accuracy"] == "50.0%" and shown["Blended balanced accuracy"] == "37.5%"
    assert shown["Morphology model alone"] == "25.0%"
    assert any("are the CNN's alone" in t for t in texts(at.caption))
    at = run_view(at, "confusion_matrix")
    assert any("This matrix is the CNN's alone" in t and "scores 50.0%" in t for t in texts(at.caption))
    for view, words in (("explain_errors", "These errors and maps are the CNN's alone"),
                        ("calibration", "These reliability curves and ECEs are the CNN's alone")):
        at = run_view(at, view)
        assert any(words in t and morphology_bundle.name in t for t in texts(at.caption)), view


def test_classify_calibrates_a_blended_run_with_the_blend_s_own_temperature(tmp_path, monkeypatch, morphology_bundle):
    import json

    from galaxy_core import synthetic

    runs = copy_runs(tmp_path, morphology_bundle)
    metrics_path = runs / morphology_bundle.name / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    part = {"n": 12, "ece_before": 0.2, "ece_after": 0.1, "nll_before": 2.0, "nll_after": 1.9}
    metrics["calibration"] = {"method": "temperature", "fitted_on": "val", "temperature": 0.5, "n_bins": 15,
                              "val": part, "test": part}  # the CNN's: must not be used for the blend
    metrics["morphology"] = {"weight": 0.5, "test": metrics["test"], "test_blend": metrics["test"],
                             "calibration": dict(metrics["calibration"], temperature=3.0)}
    metrics_path.write_text(json.dumps(metrics))
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(runs))
    at = run_view(new_app().run(), "classify")
    galaxy = synthetic.render_galaxy(3, 128, np.random.default_rng(6))
    at.file_uploader(key="cls_upload").set_value([("g.png", png_bytes(galaxy), "image/png")]).run()
    raw = at.dataframe[0].value
    box = at.checkbox(key="cls_calibrated")
    assert not box.disabled and "T = 3.00" in box.help and "blended probabilities" in box.help
    box.check().run()
    assert not at.exception, [e.message for e in at.exception]
    table = at.dataframe[0].value
    assert table["predicted"].iloc[0] == raw["predicted"].iloc[0]
    # T = 3 on the blended top probability p: softmax(log(p) / 3) flattens it towards 1/C.
    assert float(table["confidence"].iloc[0]) < float(raw["confidence"].iloc[0])


def test_classify_reports_an_unreadable_morphology_classifier_without_a_traceback(tmp_path, monkeypatch,
                                                                                  morphology_bundle):
    from galaxy_core import synthetic

    runs = copy_runs(tmp_path, morphology_bundle)
    (runs / morphology_bundle.name / "morphology.skops").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # empty zip
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(runs))
    at = run_view(new_app().run(), "classify")
    galaxy = synthetic.render_galaxy(3, 64, np.random.default_rng(7))
    at.file_uploader(key="cls_upload").set_value([("g.png", png_bytes(galaxy), "image/png")]).run()
    assert not at.exception, [e.message for e in at.exception]
    (error,) = texts(at.error)
    assert "morphology classifier of run" in error and "cannot be loaded" in error and "re-run training" in error


# --- issue 25: names, errors and class names from a bundle or an upload are shown as text -------------
HOSTILE_NAME = "[click](javascript:alert(1)) **bold**"
HOSTILE_KEY = "![b](http://127.0.0.1:9/beacon.png)"


def plant_invalid_bundle(src: Path, runs: Path, name: str, key: str) -> Path:
    """A copy of a valid bundle named `name` whose config.json has the unknown key `key` (quoted in its error)."""
    import json
    import shutil

    bad = Path(shutil.copytree(src, runs / name))
    config = json.loads((bad / "config.json").read_text())
    config[key] = 1
    (bad / "config.json").write_text(json.dumps(config))
    return bad


def test_an_invalid_bundles_name_and_error_are_shown_as_text(tmp_path, monkeypatch, tiny_runs):
    from pages.lib.captions import md

    runs = tmp_path / "runs"
    runs.mkdir()
    plant_invalid_bundle(tiny_runs / "tiny-synthetic", runs, HOSTILE_NAME, HOSTILE_KEY)
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(runs))
    at = new_app().run()
    assert not at.exception
    (reason,) = texts(at.sidebar.expander[0].markdown)
    assert reason.startswith(f"**{md(HOSTILE_NAME)}**") and md(HOSTILE_KEY) in reason
    assert HOSTILE_NAME not in reason and HOSTILE_KEY not in reason  # never as Markdown


def test_hostile_class_and_file_names_are_shown_as_text_in_classify(tmp_path, monkeypatch):
    from galaxy_core import synthetic
    from galaxy_core.config import CLASS_NAMES
    from pages.lib.captions import md

    hostile = ("![c](http://127.0.0.1:9/class.png)", "<img src=x onerror=alert(1)> **b**") + CLASS_NAMES[2:]
    runs = tmp_path / "runs"
    runs.mkdir()
    build_tiny_bundle(runs, name=HOSTILE_NAME, class_names=hostile, per_class=1)
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(runs))
    at = new_app().run()
    assert not at.exception
    assert texts(at.title) == [f"Overview: {md(HOSTILE_NAME)}"]
    caption = texts(at.sidebar.caption)[0]
    assert caption.startswith(md(HOSTILE_NAME)) and HOSTILE_NAME not in caption
    run_view(at, "classify")
    image = png_bytes(synthetic.render_galaxy(2, TINY_SIZE, np.random.default_rng(1)))
    at.file_uploader(key="cls_upload").set_value([("[u](javascript:x) **up**.png", image, "image/png"),
                                                  ("![g](http://127.0.0.1:9/g.png).png", b"junk", "image/png")])
    at.run()
    assert not at.exception
    (error,) = [e for e in texts(at.error) if "g.png" in e]
    assert error.startswith(f"**{md('![g](http://127.0.0.1:9/g.png).png')}**")
    (line,) = [m for m in texts(at.markdown) if "predicted" in m]
    assert line.startswith(f"**{md('[u](javascript:x) **up**.png')}** — predicted **")
    predicted = line.split(" — predicted **", 1)[1].split("** with", 1)[0]
    assert predicted in [md(c) for c in hostile]


def test_classify_refuses_another_runs_onnx_with_its_reason(tmp_path, monkeypatch, tiny_runs):
    """Issue 25 items 1, 2: a model.onnx of another input size copied into a bundle that cannot be
    written: not used (an exception before), Keras classifies and the caption says why."""
    import keras

    from galaxy_core import synthetic
    from galaxy_core.models import predictor as predictor_module
    from galaxy_core.models.onnx_export import export_model

    runs = tmp_path / "runs"
    run = _copy_of_tiny_run(tiny_runs, runs, "copied-onnx")
    other = keras.Sequential([keras.Input((48, 48, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10, activation="softmax")])
    export_model(other, run / "model.onnx", source_sha256="0" * 64)
    monkeypatch.setattr(predictor_module, "_writable", lambda folder: False)  # a read-only runs folder, no cache
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(runs))
    at = run_view(new_app().run(), "classify")
    galaxy = synthetic.render_galaxy(2, 120, np.random.default_rng(0))
    at.file_uploader(key="cls_upload").set_value([("galaxy.png", png_bytes(galaxy), "image/png")]).run()
    assert not at.exception, [e.message for e in at.exception]
    (caption,) = [c for c in texts(at.caption) if c.startswith("Classified with")]
    assert caption.startswith("Classified with Keras") and "made from another model" in caption
    assert any("predicted **" in m for m in texts(at.markdown))


# --- a run on your own labels: 3 classes from a class folder, no sky positions (issue 27) -----------
VIEWS = ("overview", "confusion_matrix", "explain_errors", "embedding_map", "calibration", "galaxy_properties",
         "classify", "compare_runs", "preprocessing_lab", "start")


def test_every_view_renders_a_three_class_run_on_labelled_images(labelled_run, transfer_run, tmp_path,
                                                                 monkeypatch):
    from galaxy_core.bundle import read as bundle

    runs = copy_runs(tmp_path, labelled_run, transfer_run)
    names = list(bundle.load_bundle(labelled_run).config.class_names)
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(runs))
    at = new_app()
    at.session_state["run_path"] = str(runs / labelled_run.name)
    at.run()
    seen, n_charts = {}, {}
    for view in VIEWS:
        at = run_view(at, view)
        seen[view] = texts(at.info) + texts(at.error) + texts(at.caption) + texts(at.markdown)
        n_charts[view] = len(charts(at))
    assert any(t.startswith("Trained on labelled images from") and "36 images in 3 classes, 1 unreadable" in t
               for t in seen["overview"])
    assert any("has no sky positions" in t for t in seen["galaxy_properties"]) and n_charts["galaxy_properties"] == 0
    assert any("trained on different classes" in t and "'lens', 'no lens'" in t for t in seen["compare_runs"])
    assert n_charts["confusion_matrix"] >= 1 and n_charts["embedding_map"] >= 1
    assert any("centred cutouts like the run's own labelled images" in t for t in seen["classify"])
    assert at.session_state["run_path"] == str(runs / labelled_run.name) and len(names) == 3

    at.session_state["run_path"] = str(runs / transfer_run.name)
    at = run_view(at.run(), "overview")
    assert any(t.startswith(f"Started from run `{labelled_run.name}`") for t in texts(at.caption))
