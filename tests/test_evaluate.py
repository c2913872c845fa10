"""Tests of galaxy_core.evaluate: re-evaluation of a saved run bundle (`train.py --evaluate`)."""

import json
import os
import shutil
import stat

import h5py
import numpy as np
import pytest

from galaxy_core import bundle as bundle_mod
from galaxy_core import evaluate
from galaxy_core.bundle import load_bundle
from galaxy_core.metrics import evaluate_split

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
    expected = evaluate_split(model, images, labels, names, tta=True)
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
