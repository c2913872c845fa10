"""Tests of galaxy_core.bundle: write/load round trip, atomic writes, validation, listing."""

import json
import shutil

import h5py
import numpy as np
import pytest

from galaxy_core import bundle as bundle_mod
from galaxy_core.bundle import BundleError, list_bundles, load_bundle, write_bundle
from galaxy_core.config import Config
from galaxy_core.evaluate import assemble_metrics, evaluate_split

SIZE = 32
N_TEST = 12


def tiny_model(num_classes=10, seed=0):
    """Conv -> global pooling -> softmax on 32x32x3 [0, 1] input (a few hundred weights)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def parts():
    """Everything write_bundle needs, from a tiny untrained model (built once for the module)."""
    cfg = Config(image_size=SIZE, weights="none", epochs=3)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N_TEST, SIZE, SIZE, 3), dtype=np.uint8)
    labels = np.arange(N_TEST) % cfg.num_classes
    model = tiny_model()
    test = evaluate_split(model, images, labels, cfg.class_names, batch_size=8, tta=False)
    history = {"loss": [2.3, 2.2, 2.1], "accuracy": [0.1, 0.2, 0.3], "val_loss": [2.31, 2.25, 2.2],
               "val_accuracy": [0.1, 0.15, 0.2], "learning_rate": [1e-3, 1e-3, 5e-4],
               "epoch_time_s": [1.0, 0.9, 0.95]}
    return dict(
        config=cfg, model=model, history=history,
        metrics=assemble_metrics(test, best_epoch=3, wall_time_s=3.0),
        run_info={"synthetic": True, "dataset": "tiny.h5", "split_sizes": {"test": N_TEST}},
        predictions={"indices": np.arange(100, 100 + N_TEST), "labels": labels,
                     "probs": test["probs"], "images": images},
    )


def write(path, parts, **changes):
    return write_bundle(path, **{**parts, **changes})


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory, parts):
    """One valid bundle written once; tests copy it (cheaper than writing one each)."""
    return write(tmp_path_factory.mktemp("shared") / "good", parts)


def copy_bundle(src, dest):
    shutil.copytree(src, dest)
    return dest


def test_round_trip(good_bundle, parts):
    out = good_bundle
    assert sorted(p.name for p in out.iterdir()) == sorted(bundle_mod.REQUIRED_MEMBERS)
    b = load_bundle(out)
    assert b.name == "good" and b.config == parts["config"] and b.backbone == "DenseNet201"
    assert b.is_synthetic is True and b.run_info["format_version"] == bundle_mod.RUN_FORMAT_VERSION
    assert b.created.tzinfo is not None
    assert b.test_accuracy == parts["metrics"]["test"]["accuracy"]
    assert b.metrics == parts["metrics"]
    assert b.history["epoch"] == [1, 2, 3] and b.history["val_accuracy"] == [0.1, 0.15, 0.2]
    assert b.history["learning_rate"] == [1e-3, 1e-3, 5e-4]
    pred = b.predictions
    assert pred["indices"].dtype == np.int64 and pred["labels"].dtype == np.int64
    assert pred["probs"].dtype == np.float32 and pred["probs"].shape == (N_TEST, 10)
    np.testing.assert_array_equal(pred["indices"], np.arange(100, 100 + N_TEST))
    assert not b.has_explanations and b.explanations_path is None

    images = parts["predictions"]["images"]
    np.testing.assert_array_equal(b.read_test_images([5, 0, 5, 11]), images[[5, 0, 5, 11]])
    np.testing.assert_array_equal(b.read_test_images(3), images[3])
    assert b.read_test_images([]).shape == (0, SIZE, SIZE, 3)
    with pytest.raises(IndexError):
        b.read_test_images([N_TEST])
    with h5py.File(out / "predictions.h5") as f:
        assert f["images"].chunks == (1, SIZE, SIZE, 3) and f["images"].compression == "gzip"
        assert list(f.attrs["class_names"]) == list(parts["config"].class_names)

    # The saved model predicts exactly the stored probabilities.
    model = b.load_model()
    probs = model.predict_on_batch(b.read_test_images(range(N_TEST)).astype(np.float32) / 255)
    np.testing.assert_allclose(probs, pred["probs"], rtol=1e-5, atol=1e-6)

    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (out / "history.csv").read_text().splitlines()
    assert lines[0] == "epoch,loss,accuracy,val_loss,val_accuracy,learning_rate,epoch_time_s"


def test_overwrite_replaces_bundle_and_leaves_no_hidden_folders(tmp_path, parts):
    runs = tmp_path / "runs"
    write(runs / "run", parts)
    (runs / "run" / "stale.txt").write_text("old")
    write(runs / "run", parts, run_info={"synthetic": np.bool_(False), "note": "second"})
    assert not (runs / "run" / "stale.txt").exists()
    assert load_bundle(runs / "run").run_info["note"] == "second"
    assert load_bundle(runs / "run").is_synthetic is False
    assert [p.name for p in runs.iterdir()] == ["run"]


def test_failure_mid_write_leaves_nothing(tmp_path, parts, monkeypatch):
    runs = tmp_path / "runs"

    def boom(*args, **kwargs):
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(bundle_mod, "_write_predictions", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        write(runs / "run", parts)
    assert not (runs / "run").exists()
    assert list(runs.iterdir()) == []  # the partial folder was removed too
    assert list_bundles(runs) == []


def test_failure_mid_overwrite_keeps_previous_bundle(tmp_path, parts, monkeypatch):
    runs = tmp_path / "runs"
    write(runs / "run", parts, run_info={"synthetic": True, "note": "first"})
    monkeypatch.setattr(bundle_mod, "plot_curves", lambda *a, **k: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        write(runs / "run", parts, run_info={"synthetic": True, "note": "second"})
    assert load_bundle(runs / "run").run_info["note"] == "first"
    assert [p.name for p in runs.iterdir()] == ["run"]


def test_partial_folder_is_hidden_from_listing(tmp_path, parts, monkeypatch):
    """A bundle caught in the middle of writing (hidden partial folder) is not listed."""
    runs = tmp_path / "runs"
    seen = {}

    def spy(*args, **kwargs):
        seen["entries"] = list_bundles(runs)
        seen["folders"] = sorted(p.name for p in runs.iterdir())
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle_mod, "_write_history_csv", spy)
    with pytest.raises(KeyboardInterrupt):
        write(runs / "run", parts)
    assert seen["entries"] == [] and seen["folders"][0].startswith(".run.partial-")
    assert list(runs.iterdir()) == []


@pytest.mark.parametrize("change", [
    {"predictions": "probs_shape"}, {"predictions": "image_size"}, {"run_info": {"dataset": "x"}},
    {"metrics": {"val": {}}},
])
def test_write_rejects_bad_arguments_before_writing(tmp_path, parts, change):
    kwargs = dict(parts)
    if change.get("predictions") == "probs_shape":
        kwargs["predictions"] = {**parts["predictions"], "probs": parts["predictions"]["probs"][:, :9]}
    elif change.get("predictions") == "image_size":
        kwargs["config"] = parts["config"].replace(image_size=64)
    else:
        kwargs.update(change)
    with pytest.raises(BundleError):
        write_bundle(tmp_path / "runs" / "bad", **kwargs)
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def corrupt_missing_metrics(path):
    (path / "metrics.json").unlink()


def corrupt_bad_json(path):
    (path / "metrics.json").write_text("{not json")


def corrupt_prob_shape(path):
    with h5py.File(path / "predictions.h5", "r+") as f:
        probs = f["probs"][()]
        del f["probs"]
        f.create_dataset("probs", data=probs[:, :7])


def corrupt_config(path):
    data = json.loads((path / "config.json").read_text())
    data["image_size"] = 8
    (path / "config.json").write_text(json.dumps(data))


def corrupt_version(path):
    data = json.loads((path / "run.json").read_text())
    data["format_version"] = 99
    (path / "run.json").write_text(json.dumps(data))


def corrupt_image_count(path):
    with h5py.File(path / "predictions.h5", "r+") as f:
        images = f["images"][()]
        del f["images"]
        f.create_dataset("images", data=images[:-1])


def corrupt_history(path):
    (path / "history.csv").write_text("epoch,loss\n1,abc\n")


def corrupt_predictions_file(path):
    (path / "predictions.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")


def corrupt_model(path):
    (path / "model.keras").write_bytes(b"not a zip")


@pytest.mark.parametrize("corrupt, reason", [
    (corrupt_missing_metrics, "missing metrics.json"),
    (corrupt_bad_json, "metrics.json is not valid JSON"),
    (corrupt_prob_shape, r"probs has shape \(12, 7\), expected \(12, 10\)"),
    (corrupt_config, "config.json is invalid"),
    (corrupt_version, "format_version 99 is newer"),
    (corrupt_image_count, "images have shape"),
    (corrupt_history, "history.csv line 2"),
    (corrupt_model, "model.keras is not a Keras archive"),
    (corrupt_predictions_file, "predictions.h5 cannot be read"),
])
def test_corrupted_bundle_raises_and_is_listed_invalid(tmp_path, good_bundle, corrupt, reason):
    runs = tmp_path / "runs"
    copy_bundle(good_bundle, runs / "good")
    copy_bundle(good_bundle, runs / "broken")
    corrupt(runs / "broken")
    with pytest.raises(BundleError, match=reason) as info:
        load_bundle(runs / "broken")
    assert "broken" in str(info.value)
    entries = list_bundles(runs)
    assert [(e.name, e.ok) for e in entries] == [("good", True), ("broken", False)]
    assert entries[1].bundle is None and "broken" in entries[1].error


def set_created(path, created):
    data = json.loads((path / "run.json").read_text())
    data["created"] = created
    (path / "run.json").write_text(json.dumps(data))


def test_list_bundles_order_hidden_and_env(tmp_path, good_bundle, monkeypatch):
    runs = tmp_path / "myruns"
    set_created(copy_bundle(good_bundle, runs / "older"), "2025-01-01T00:00:00+00:00")
    set_created(copy_bundle(good_bundle, runs / "newer"), "2026-01-01T00:00:00")  # naive = UTC
    (runs / "aaa-empty").mkdir()
    (runs / ".x.work").mkdir()
    (runs / ".y.partial-1234").mkdir()
    (runs / "notes.txt").write_text("not a folder")
    entries = list_bundles(runs)
    assert [e.name for e in entries] == ["newer", "older", "aaa-empty"]
    assert "missing config.json" in entries[2].error
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(runs))
    assert [e.name for e in list_bundles()] == ["newer", "older", "aaa-empty"]
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(tmp_path / "nowhere"))
    assert list_bundles() == []


def test_load_bundle_missing_folder(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")


def test_model_path_is_copied(tmp_path, parts):
    src = tmp_path / "ckpt.keras"
    parts["model"].save(src)
    out = write(tmp_path / "runs" / "fromfile", parts, model=str(src))
    assert (out / "model.keras").read_bytes() == src.read_bytes()


def test_reevaluate_bundle_rewrites_metrics_and_probs(tmp_path, good_bundle, parts, monkeypatch):
    from galaxy_core import evaluate

    run = copy_bundle(good_bundle, tmp_path / "runs" / "run")
    # Spoil the stored numbers so that a rewrite is visible.
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["val"] = {**metrics["test"], "accuracy": 0.456}
    metrics["test"]["accuracy"] = 0.123
    (run / "metrics.json").write_text(json.dumps(metrics))
    with h5py.File(run / "predictions.h5", "r+") as f:
        f["probs"][...] = 0.1

    # A failure while rewriting leaves predictions.h5 and metrics.json as they were, no temp files.
    monkeypatch.setattr(evaluate, "_rewrite_probs", lambda *a: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        evaluate.reevaluate_bundle(run, progress=False)
    monkeypatch.undo()
    assert json.loads((run / "metrics.json").read_text())["test"]["accuracy"] == 0.123
    assert sorted(p.name for p in run.iterdir()) == sorted(bundle_mod.REQUIRED_MEMBERS)

    new = evaluate.reevaluate_bundle(run, tta=True, progress=False)
    images, labels = parts["predictions"]["images"], parts["predictions"]["labels"]
    names = parts["config"].class_names
    model = parts["model"]
    expected = evaluate.evaluate_split(model, images, labels, names, tta=True)
    assert new["test"]["accuracy"] == pytest.approx(expected["plain"]["accuracy"])
    assert new["test"]["loss"] == pytest.approx(expected["plain"]["loss"], rel=1e-5)
    assert new["test_tta"]["loss"] == pytest.approx(expected["tta"]["loss"], rel=1e-5)
    assert new["val"]["accuracy"] == 0.456 and new["best_epoch"] == 3 and "reevaluated_at" in new
    b = load_bundle(run)
    assert b.metrics == new
    np.testing.assert_allclose(b.predictions["probs"], expected["probs"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.predictions["probs_tta"], expected["probs_tta"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(b.read_test_images(range(N_TEST)), images)
    assert sorted(p.name for p in run.iterdir()) == sorted(bundle_mod.REQUIRED_MEMBERS)


def test_explanations_member(tmp_path, parts, monkeypatch):
    import sys
    import types

    calls = []

    def fake_save(path, data):  # stands in for galaxy_core.explain.save_explanations
        calls.append((path, data))
        with h5py.File(path, "w") as f:
            f.attrs["n"] = data["n"]

    monkeypatch.setitem(sys.modules, "galaxy_core.explain", types.SimpleNamespace(save_explanations=fake_save))
    out = write(tmp_path / "runs" / "exp", parts, explanations={"n": 3})
    assert len(calls) == 1 and calls[0][0].name == "explanations.h5" and calls[0][0].parent.name.startswith(".exp.partial-")
    b = load_bundle(out)
    assert b.has_explanations and b.explanations_path == out / "explanations.h5"
    (out / "explanations.h5").write_bytes(b"junk")
    with pytest.raises(BundleError, match="explanations.h5 is not an HDF5 file"):
        load_bundle(out)


def test_typed_fields_read_the_keys_the_trainer_writes(tmp_path, parts):
    run_info = {"synthetic": False, "dataset_path": "/data/Galaxy10_DECals.h5",
                "split_sizes": {"train": 80, "val": 10, "test": N_TEST}, "best_epoch": 2, "epochs_run": 3,
                "wall_time_s": 95.5, "train_images_per_s": 41.0}
    b = load_bundle(write(tmp_path / "typed", parts, run_info=run_info,
                          metrics=assemble_metrics(*parts_results(parts), best_epoch=2)))
    assert b.dataset_path.name == "Galaxy10_DECals.h5"
    assert b.split_sizes == {"train": 80, "val": 10, "test": N_TEST}
    assert b.best_epoch == 2 and b.epochs_run == 3  # 1-based, like history.csv's epoch column
    assert b.wall_time_s == 95.5 and b.train_images_per_s == 41.0
    assert b.val_accuracy is None and b.test_tta_accuracy is None  # no val split, no TTA here


def test_typed_fields_are_none_for_a_bundle_without_the_optional_keys(good_bundle, tmp_path):
    out = copy_bundle(good_bundle, tmp_path / "old")
    info = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({k: info[k] for k in ("format_version", "created", "synthetic")}))
    metrics = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").write_text(json.dumps({"test": metrics["test"]}))
    b = load_bundle(out)
    assert (b.dataset_path, b.split_sizes, b.best_epoch, b.wall_time_s, b.train_images_per_s,
            b.val_accuracy, b.test_tta_accuracy) == (None,) * 7
    assert b.epochs_run == 3


def parts_results(parts):
    """`(test, val)` `evaluate_split` results for `assemble_metrics` from the module's parts."""
    cfg = parts["config"]
    test = evaluate_split(parts["model"], parts["predictions"]["images"], parts["predictions"]["labels"],
                          cfg.class_names, batch_size=8, tta=False)
    return test, None
