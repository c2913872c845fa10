"""Tests of galaxy_core.runs.reevaluate: re-evaluation of a saved run bundle (`train.py --evaluate`)."""

import json
import os
import shutil
import stat
import types

import h5py
import numpy as np
import pytest

from galaxy_core.bundle import schema as bundle_mod
from galaxy_core.bundle import write as bundle_write
from galaxy_core.runs import reevaluate as evaluate
from galaxy_core.bundle.read import load_bundle
from galaxy_core.evaluation.metrics import evaluate_split

N_TEST = 12  # test images of conftest.py's `parts` bundle


def copy_bundle(src, dest):
    shutil.copytree(src, dest)
    return dest


def test_reevaluate_bundle_rewrites_metrics_and_probs(tmp_path, good_bundle, parts, monkeypatch):
    run = copy_bundle(good_bundle, tmp_path / "runs" / "run")
    # Spoil the stored numbers so that a rewrite is visible.
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["val"] = {**metrics["test"], "accuracy": 0.456}
    metrics["test"]["accuracy"] = 0.123
    (run / "metrics.json").write_text(json.dumps(metrics))
    with h5py.File(run / "predictions.h5", "r+") as f:
        f["probs"][...] = 0.1

    # A failure while rewriting leaves predictions.h5 and metrics.json as they were, no temp files.
    def copy_then_fail(src, dst):  # the copy is made, then the disk fills up
        shutil.copyfile(src, dst)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundle_write, "shutil", types.SimpleNamespace(copyfile=copy_then_fail))
    with pytest.raises(OSError):
        evaluate.reevaluate_bundle(run, progress=False)
    monkeypatch.undo()
    assert json.loads((run / "metrics.json").read_text())["test"]["accuracy"] == 0.123
    assert sorted(p.name for p in run.iterdir()) == sorted(bundle_mod.REQUIRED_MEMBERS)

    new = evaluate.reevaluate_bundle(run, tta=True, progress=False)
    images, labels = parts["predictions"]["images"], parts["predictions"]["labels"]
    names = parts["config"].class_names
    model = parts["model"]
    expected = evaluate_split(model, images, labels, names, tta=True)
    assert new["test"]["accuracy"] == pytest.approx(expected["plain"]["accuracy"])
    assert new["test"]["loss"] == pytest.approx(expected["plain"]["loss"], rel=1e-5)
    assert new["test_tta"]["loss"] == pytest.approx(expected["tta"]["loss"], rel=1e-5)
    assert new["val"]["accuracy"] == 0.456 and "reevaluated_at" in new
    b = load_bundle(run)
    assert b.metrics == new
    np.testing.assert_allclose(b.predictions["probs"], expected["probs"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.predictions["probs_tta"], expected["probs_tta"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(b.read_test_images(range(N_TEST)), images)
    assert sorted(p.name for p in run.iterdir()) == sorted(bundle_mod.REQUIRED_MEMBERS)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_reevaluated_files_keep_the_umask_mode(tmp_path, good_bundle, umask):
    """Issue 10 item 6: after --evaluate, metrics.json and predictions.h5 were 0600 (mkstemp)."""
    run = copy_bundle(good_bundle, tmp_path / "runs" / "run")
    old = os.umask(umask)
    try:
        evaluate.reevaluate_bundle(run, tta=False, progress=False)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in run.iterdir()}
    assert modes["metrics.json"] == 0o666 & ~umask and modes["predictions.h5"] == 0o666 & ~umask, modes
    assert load_bundle(run).metrics["test_tta"] is None


# --- bundle_embedding: features and 2-D map on demand for bundles written without them -----------
def test_bundle_embedding_computes_caches_and_then_reads_the_stored_arrays(tmp_path, good_bundle, parts):
    from galaxy_core.evaluation.embedding import penultimate_features

    run = copy_bundle(good_bundle, tmp_path / "runs" / "old")
    seen = []
    emb = evaluate.bundle_embedding(run, on_progress=lambda done, total: seen.append((done, total)))
    expected = penultimate_features(parts["model"], parts["predictions"]["images"])
    assert emb["computed"] and emb["cached"] and emb["method"] == "tsne"  # 12 points: t-SNE
    np.testing.assert_allclose(emb["features"], expected, rtol=1e-5, atol=1e-6)
    assert emb["embedding_2d"].shape == (N_TEST, 2) and emb["embedding_2d"].dtype == np.float32
    assert seen[-1] == (N_TEST, N_TEST)

    b = load_bundle(run)  # cached into predictions.h5: the bundle now carries them, nothing else moved
    np.testing.assert_array_equal(b.features, emb["features"])
    np.testing.assert_array_equal(b.embedding_2d, emb["embedding_2d"])
    assert b.embedding_method == "tsne"
    np.testing.assert_array_equal(b.read_test_images(range(N_TEST)), parts["predictions"]["images"])
    np.testing.assert_array_equal(b.predictions["probs"], load_bundle(good_bundle).predictions["probs"])
    assert sorted(p.name for p in run.iterdir()) == sorted(bundle_mod.REQUIRED_MEMBERS)

    class NoModel:  # stored arrays are returned without touching a model
        def __getattr__(self, name):
            raise AssertionError("the model must not be used when features are stored")

    again = evaluate.bundle_embedding(b, model=NoModel())
    assert not again["computed"] and not again["cached"] and again["method"] == "tsne"
    np.testing.assert_array_equal(again["embedding_2d"], emb["embedding_2d"])


def test_bundle_embedding_maps_stored_features_that_lack_a_map(tmp_path, good_bundle):
    run = copy_bundle(good_bundle, tmp_path / "feat")
    feats = np.random.default_rng(0).normal(size=(N_TEST, 6)).astype(np.float32)
    with h5py.File(run / "predictions.h5", "r+") as f:
        f.create_dataset("features", data=feats)
    emb = evaluate.bundle_embedding(run, model=object())  # the model is not needed
    np.testing.assert_array_equal(emb["features"], feats)
    assert emb["computed"] and emb["cached"] and emb["embedding_2d"].shape == (N_TEST, 2)
    assert load_bundle(run).embedding_2d is not None


def test_bundle_embedding_of_a_read_only_bundle_is_computed_but_not_cached(tmp_path, good_bundle,
                                                                             monkeypatch):
    run = copy_bundle(good_bundle, tmp_path / "ro")
    before = (run / "predictions.h5").read_bytes()

    def read_only(path):  # a read-only file system (tests may run as root, where chmod does not bite)
        raise PermissionError(13, "Read-only file system", str(path))

    monkeypatch.setattr(bundle_write, "atomic_path", read_only)
    emb = evaluate.bundle_embedding(run)
    assert emb["computed"] and not emb["cached"] and emb["features"].shape[0] == N_TEST
    assert (run / "predictions.h5").read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == sorted(bundle_mod.REQUIRED_MEMBERS)
    monkeypatch.undo()

    monkeypatch.setattr(evaluate.os, "access", lambda path, mode: False)  # folder not writable
    assert evaluate.bundle_embedding(run, cache=True)["cached"] is False
    assert evaluate.bundle_embedding(run, cache=False)["cached"] is False
    assert (run / "predictions.h5").read_bytes() == before


def test_reevaluate_keeps_the_temperature_and_rescores_the_test_split(tmp_path, good_bundle, parts):
    from galaxy_core.evaluation.calibration import calibration_scores

    run = copy_bundle(good_bundle, tmp_path / "calib")
    metrics = json.loads((run / "metrics.json").read_text())
    val_part = {"n": 7, "ece_before": 0.2, "ece_after": 0.1, "nll_before": 2.0, "nll_after": 1.9}
    metrics["calibration"] = {"method": "temperature", "fitted_on": "val", "temperature": 1.5,
                              "n_bins": 10, "val": val_part, "test": {"n": 0, "ece_before": 9.0}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    feats = np.ones((N_TEST, 3), np.float32)
    with h5py.File(run / "predictions.h5", "r+") as f:
        f.create_dataset("features", data=feats)
    new = evaluate.reevaluate_bundle(run, tta=False, progress=False)
    calib = new["calibration"]
    assert (calib["temperature"], calib["n_bins"], calib["val"]) == (1.5, 10, val_part)
    b = load_bundle(run)
    assert calib["test"] == pytest.approx(calibration_scores(
        parts["predictions"]["labels"], b.predictions["probs"], 1.5, 10))
    assert b.temperature == 1.5
    np.testing.assert_array_equal(b.features, feats)  # the other datasets are kept


def test_bundle_embedding_does_not_cache_into_a_bundle_replaced_meanwhile(tmp_path, good_bundle):
    run = copy_bundle(good_bundle, tmp_path / "replaced")
    b = load_bundle(run)
    with h5py.File(run / "predictions.h5", "r+") as f:  # another run wrote this name since loading
        f["probs"][...] = np.full_like(f["probs"][()], 0.1)
    emb = evaluate.bundle_embedding(b)
    assert emb["computed"] and not emb["cached"] and emb["features"].shape[0] == N_TEST
    assert load_bundle(run).features is None
    assert sorted(p.name for p in run.iterdir()) == sorted(bundle_mod.REQUIRED_MEMBERS)
