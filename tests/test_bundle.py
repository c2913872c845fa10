"""Tests of galaxy_core.bundle (schema, write, read): round trip, atomic writes, validation, listing, old bundles."""

import json
import shutil

import h5py
import numpy as np
import pytest

from galaxy_core.bundle import schema as bundle_mod
from galaxy_core.bundle import write as bundle_write
from galaxy_core.bundle.read import list_bundles, load_bundle
from galaxy_core.bundle.write import write_bundle
from galaxy_core.errors import BundleError
from galaxy_core.evaluation.metrics import assemble_metrics, evaluate_split

SIZE = 32  # image size and test-set size of conftest.py's `parts` fixture
N_TEST = 12


def write(path, parts, **changes):
    return write_bundle(path, **{**parts, **changes})


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
    assert b.explanations_path is None

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


def test_tensorboard_logs_arrive_inside_the_bundle(tmp_path, parts):
    logs = tmp_path / "work" / "tensorboard"
    (logs / "train").mkdir(parents=True)
    (logs / "train" / "events.out.tfevents.1").write_bytes(b"event")
    out = write(tmp_path / "runs" / "run", parts, tensorboard=logs)
    assert (out / "tensorboard" / "train" / "events.out.tfevents.1").read_bytes() == b"event"
    assert load_bundle(out).name == "run" and [p.name for p in out.parent.iterdir()] == ["run"]
    assert not (write(tmp_path / "runs" / "plain", parts) / "tensorboard").exists()


def test_failure_mid_write_leaves_nothing(tmp_path, parts, monkeypatch):
    runs = tmp_path / "runs"

    def boom(*args, **kwargs):
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(bundle_write, "write_predictions", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        write(runs / "run", parts)
    assert not (runs / "run").exists()
    assert list(runs.iterdir()) == []  # the partial folder was removed too
    assert list_bundles(runs) == []


def test_failure_mid_overwrite_keeps_previous_bundle(tmp_path, parts, monkeypatch):
    runs = tmp_path / "runs"
    write(runs / "run", parts, run_info={"synthetic": True, "note": "first"})
    monkeypatch.setattr(bundle_write, "plot_curves", lambda *a, **k: (_ for _ in ()).throw(OSError("boom")))
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

    monkeypatch.setattr(bundle_write, "_write_history_csv", spy)
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


def corrupt_model_without_config(path):
    """Issue 10 item 4: a zip without config.json was listed as valid (and chosen by default)."""
    import zipfile

    with zipfile.ZipFile(path / "model.keras", "w") as archive:
        archive.writestr("metadata.json", "{}")


def corrupt_model_with_lambda(path):
    """Issue 10 item 4: a model with a Lambda layer (refused by safe mode) was listed as valid."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="evil")(inputs)
    x = keras.layers.Conv2D(4, 3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x)).save(path / "model.keras")


@pytest.mark.parametrize("corrupt, reason", [
    (corrupt_missing_metrics, "missing metrics.json"),
    (corrupt_bad_json, "metrics.json is not valid JSON"),
    (corrupt_prob_shape, r"probs has shape \(12, 7\), expected \(12, 10\)"),
    (corrupt_config, "config.json is invalid"),
    (corrupt_version, "format_version 99 is newer"),
    (corrupt_image_count, "images have shape"),
    (corrupt_history, "history.csv line 2"),
    (corrupt_model, "model.keras is not a Keras archive"),
    (corrupt_model_without_config, "model.keras has no config.json"),
    (corrupt_model_with_lambda, r"model.keras contains a Lambda layer \('evil'\), which Keras safe mode refuses"),
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


def test_valid_bundles_come_first_and_ties_on_created_sort_by_name(tmp_path, good_bundle):
    """Issue 10 item 4: bundles that tie on `created` sorted by name descending, so an unloadable one
    (here "mmm", whose model.keras lacks config.json) could be the default choice."""
    runs = tmp_path / "runs"
    for name in ("zzz", "mmm", "aaa"):
        set_created(copy_bundle(good_bundle, runs / name), "2026-03-01T12:00:00+00:00")
    corrupt_model_without_config(runs / "mmm")
    entries = list_bundles(runs)
    assert [(e.name, e.ok) for e in entries] == [("aaa", True), ("zzz", True), ("mmm", False)]
    assert "no config.json" in entries[2].error


def test_model_that_fails_to_load_raises_model_error_naming_the_run(tmp_path, good_bundle):
    import zipfile

    from galaxy_core.errors import ModelError

    run = copy_bundle(good_bundle, tmp_path / "runs" / "odd")
    with zipfile.ZipFile(run / "model.keras", "w") as archive:  # passes the archive check, cannot load
        archive.writestr("config.json", json.dumps({"class_name": "Functional", "config": {}}))
    b = load_bundle(run)
    with pytest.raises(ModelError, match="Run 'odd': its model cannot be loaded"):
        b.load_model()


def test_check_model_archive_returns_the_model_config(good_bundle):
    from galaxy_core.models.archive import check_model_archive

    config = check_model_archive(good_bundle / "model.keras")
    assert config["class_name"] == "Functional" and config["config"]["layers"]


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_every_bundle_file_has_the_umask_mode(tmp_path, parts, umask):
    """Issue 10 item 6: explanations.h5 was always 0600 (mkstemp), unreadable by another account."""
    r, s = 3, SIZE
    explanations = {
        "attrs": {"format": "galaxy10-explanations", "version": 1, "methods": '["saliency"]',
                  "targets": '["predicted", "true"]', "class_names": json.dumps(list(parts["config"].class_names)),
                  "image_size": s, "steps": 4, "baseline": 0.0, "smooth_samples": 2, "seed": 0,
                  "feature_layer": "conv"},
        "rows": {"row": np.arange(r), "index": np.arange(r), "label": np.zeros(r, np.int64),
                 "pred": np.zeros(r, np.int64), "probs": np.full((r, 10), 0.1, np.float32),
                 "correct": np.ones(r, bool)},
        "maps": {"saliency": {t: np.zeros((r, s, s), np.uint8) for t in ("predicted", "true")}},
        "scores": {"saliency": {t: {"deletion": np.zeros(r, np.float32), "insertion": np.zeros(r, np.float32)}
                                for t in ("predicted", "true")}},
    }
    import os
    import stat

    old = os.umask(umask)
    try:
        out = write(tmp_path / "runs" / "modes", parts, explanations=explanations)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert set(modes) == set(bundle_mod.REQUIRED_MEMBERS) | {"explanations.h5"}
    assert set(modes.values()) == {0o666 & ~umask}, modes
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
    assert load_bundle(out).explanations_path == out / "explanations.h5"


def test_load_bundle_missing_folder(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")


def test_model_path_is_copied(tmp_path, parts):
    src = tmp_path / "ckpt.keras"
    parts["model"].save(src)
    out = write(tmp_path / "runs" / "fromfile", parts, model=str(src))
    assert (out / "model.keras").read_bytes() == src.read_bytes()


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
    assert b.explanations_path == out / "explanations.h5"
    (out / "explanations.h5").write_bytes(b"junk")
    with pytest.raises(BundleError, match="explanations.h5 is not an HDF5 file"):
        load_bundle(out)


def test_typed_fields_read_the_keys_the_trainer_writes(tmp_path, parts):
    run_info = {"synthetic": False, "dataset_path": "/data/Galaxy10_DECals.h5",
                "split_sizes": {"train": 80, "val": 10, "test": N_TEST}, "best_epoch": 2, "epochs_run": 3,
                "wall_time_s": 95.5, "train_images_per_s": 41.0}
    b = load_bundle(write(tmp_path / "typed", parts, run_info=run_info,
                          metrics=assemble_metrics(*parts_results(parts))))
    assert b.dataset_path.name == "Galaxy10_DECals.h5"
    assert b.split_sizes == {"train": 80, "val": 10, "test": N_TEST}
    assert b.best_epoch == 2 and b.epochs_run == 3  # 1-based, like history.csv's epoch column
    assert b.wall_time_s == 95.5 and b.train_images_per_s == 41.0
    assert b.val_accuracy is None and b.test_tta_accuracy is None  # no val split, no TTA here


def test_averaged_epochs_say_which_weights_the_model_holds(tmp_path, parts):
    from pages.lib.captions import run_summary

    cfg = parts["config"]  # its history has 3 epochs
    held = {}
    for start in (0, 2, 4):
        b = load_bundle(write(tmp_path / f"avg{start}", parts, config=cfg.replace(epochs=5, average_from_epoch=start),
                              metrics=assemble_metrics(*parts_results(parts))))
        summary = run_summary(b)
        held[start] = (b.averaged_epochs, summary["weights"])
        assert ("mean of epochs 2-3 (stochastic weight averaging)" in summary["markdown"]) == (start == 2)
    assert held[0] == (None, "best 3")
    assert held[2] == ((2, 3), "avg 2-3")
    assert held[4] == (None, "best 3")  # training ended before the averaging started


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


# --- optional members of issue 13: sky columns, features, 2-D map, calibration, split -------------
def issue13_predictions(parts, **changes):
    """`parts`' predictions plus every optional member (deterministic values)."""
    rng = np.random.default_rng(3)
    extra = {"ra": rng.uniform(0, 360, N_TEST), "dec": rng.uniform(-20, 60, N_TEST),
             "redshift": rng.uniform(0.01, 0.2, N_TEST), "pxscale": np.full(N_TEST, 0.262),
             "features": rng.normal(size=(N_TEST, 5)), "embedding_2d": rng.normal(size=(N_TEST, 2)),
             "embedding_method": "pca"}
    return {**parts["predictions"], **extra, **changes}


def test_optional_members_round_trip_with_typed_accessors(tmp_path, parts):
    preds = issue13_predictions(parts)
    calib = {"method": "temperature", "fitted_on": "val", "temperature": 1.7, "n_bins": 15,
             "val": {"n": 5}, "test": {"n": N_TEST}}
    split = {"split_by": "sky", "twin_radius_arcsec": 1.0, "groups_merged": 2}
    b = load_bundle(write(tmp_path / "full", parts, predictions=preds,
                          metrics={**parts["metrics"], "calibration": calib},
                          run_info={**parts["run_info"], "split": split}))
    assert sorted(b.sky) == ["dec", "pxscale", "ra", "redshift"]
    for key in ("ra", "dec", "redshift", "pxscale"):
        assert b.sky[key].dtype == np.float32 and b.sky[key].shape == (N_TEST,)
        np.testing.assert_allclose(b.sky[key], preds[key], rtol=1e-6)
    assert b.features.dtype == np.float32 and b.features.shape == (N_TEST, 5)
    np.testing.assert_allclose(b.features, preds["features"], rtol=1e-6)
    assert b.embedding_2d.shape == (N_TEST, 2) and b.embedding_method == "pca"
    assert b.calibration == calib and b.temperature == 1.7
    assert b.split_info == split and b.split_by == "sky"
    with h5py.File(tmp_path / "full" / "predictions.h5") as f:
        assert f["embedding_2d"].attrs["method"] == "pca"


def test_bundles_without_the_optional_members_give_none(good_bundle):
    b = load_bundle(good_bundle)
    assert (b.sky, b.features, b.embedding_2d, b.embedding_method, b.calibration, b.temperature,
            b.split_info, b.split_by) == (None,) * 8
    assert sorted(b.predictions) == ["indices", "labels", "probs"]


def test_a_map_without_a_method_is_recorded_as_tsne_and_sky_columns_may_be_partial(tmp_path, parts):
    preds = issue13_predictions(parts)
    for key in ("embedding_method", "redshift", "pxscale", "features"):
        del preds[key]
    b = load_bundle(write(tmp_path / "some", parts, predictions=preds))
    assert sorted(b.sky) == ["dec", "ra"] and b.features is None
    assert b.embedding_2d.shape == (N_TEST, 2) and b.embedding_method == "tsne"


@pytest.mark.parametrize("changes, reason", [
    ({"ra": np.zeros(N_TEST - 1)}, r"ra has shape \(11,\), expected \(12,\)"),
    ({"dec": None}, "ra and dec must be stored together"),
    ({"features": np.zeros(N_TEST)}, r"features has shape \(12,\), expected \(12, D\)"),
    ({"features": np.zeros((N_TEST + 1, 4))}, r"features has shape \(13, 4\)"),
    ({"embedding_2d": np.zeros((N_TEST, 3))}, r"embedding_2d has shape \(12, 3\), expected \(12, 2\)"),
    ({"features": np.full((N_TEST, 4), np.nan)}, "features holds NaN"),
    ({"embedding_method": "umap"}, "embedding_method must be one of"),
    ({"embedding_2d": None}, "embedding_method is given without embedding_2d"),
])
def test_write_rejects_bad_optional_members(tmp_path, parts, changes, reason):
    with pytest.raises(BundleError, match=reason):
        write(tmp_path / "runs" / "bad", parts, predictions=issue13_predictions(parts, **changes))
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def test_load_rejects_bad_optional_members_and_calibration(tmp_path, good_bundle):
    run = copy_bundle(good_bundle, tmp_path / "feat")
    with h5py.File(run / "predictions.h5", "r+") as f:
        f.create_dataset("features", data=np.zeros((N_TEST - 2, 4), np.float32))
    with pytest.raises(BundleError, match=r"predictions.h5: predictions invalid: features has shape"):
        load_bundle(run)
    run = copy_bundle(good_bundle, tmp_path / "calib")
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "calibration": {"temperature": -1}}))
    with pytest.raises(BundleError, match="positive 'temperature'"):
        load_bundle(run)


def test_a_morphology_classifier_round_trips_and_is_required_exactly_when_weighted(tmp_path, parts,
                                                                                    morphology_bundle):
    import dataclasses

    from conftest import fitted_morphology

    from galaxy_core.morphology.statistics import features_batch

    loaded = load_bundle(morphology_bundle)
    assert loaded.has_morphology and (morphology_bundle / "morphology.skops").is_file()
    clf = loaded.load_morphology()
    stats = features_batch([np.full((64, 64, 3), 30, np.uint8)])
    np.testing.assert_array_equal(clf.predict_features(stats), fitted_morphology().predict_features(stats))

    plain = load_bundle(write_bundle(tmp_path / "plain", **parts))
    assert not plain.has_morphology and plain.load_morphology() is None
    assert not (tmp_path / "plain" / "morphology.skops").exists()

    weighted = dataclasses.replace(parts["config"], morphology_weight=0.5)
    with pytest.raises(BundleError, match="morphology_weight is 0.5 but no morphology classifier"):
        write_bundle(tmp_path / "a", **dict(parts, config=weighted))
    with pytest.raises(BundleError, match="morphology_weight is 0.0 but a morphology classifier"):
        write_bundle(tmp_path / "b", **parts, morphology=fitted_morphology())
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()

    broken = shutil.copytree(morphology_bundle, tmp_path / "broken")
    (broken / "morphology.skops").unlink()
    with pytest.raises(BundleError, match="morphology.skops is missing"):
        load_bundle(broken)
    (broken / "morphology.skops").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip
    with pytest.raises(BundleError, match="not a readable morphology classifier"):
        load_bundle(broken).load_morphology()


def test_a_missing_morphology_classifier_does_not_suggest_cnn_only(morphology_bundle, tmp_path):
    """Issue 25 item 14: the hint named --cnn-only, which cannot load a bundle that lacks the file."""
    import shutil

    from galaxy_core.bundle.read import load_bundle

    run = shutil.copytree(morphology_bundle, tmp_path / "blended")
    (run / "morphology.skops").unlink()
    with pytest.raises(BundleError) as err:
        load_bundle(run)
    assert "morphology.skops is missing" in str(err.value) and "--cnn-only" not in str(err.value)
