"""Tests of the bundle's run facts (stored once, in run.json), its typed accessors, bundles of
release 0.1 (tests/data/bundle-release-0.1, written by that release's write_bundle), and
`galaxy_core.bundle.write.replace_predictions`, the one editor of predictions.h5."""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from galaxy_core.bundle import schema
from galaxy_core.bundle.read import load_bundle
from galaxy_core.bundle.write import PredictionsReplaced, replace_predictions, write_bundle
from galaxy_core.errors import BundleError

OLD_BUNDLE = Path(__file__).parent / "data" / "bundle-release-0.1"
# What release 0.1's RunBundle showed for OLD_BUNDLE (measured with that code when the bundle was made).
OLD_FACTS = json.loads((OLD_BUNDLE.parent / "bundle-release-0.1.facts.json").read_text())


def facts_of(bundle):
    return {"best_epoch": bundle.best_epoch, "epochs_run": bundle.epochs_run, "wall_time_s": bundle.wall_time_s,
            "train_images_per_s": bundle.train_images_per_s, "created": bundle.created.isoformat(),
            "temperature": bundle.effective_temperature, "test_accuracy": bundle.test_accuracy}


def test_a_bundle_of_release_0_1_loads_and_shows_the_same_facts(tmp_path):
    old = load_bundle(shutil.copytree(OLD_BUNDLE, tmp_path / "old"))
    assert set(schema.LEGACY_METRICS_FACTS) <= set(old.metrics)  # the old layout: facts in both files
    assert facts_of(old) == OLD_FACTS

    # Bundles written by other code of that release kept four facts in metrics.json only.
    run = json.loads((old.path / "run.json").read_text())
    for key in schema.LEGACY_METRICS_FACTS:
        del run[key]
    (old.path / "run.json").write_text(json.dumps(run))
    assert facts_of(load_bundle(old.path)) == OLD_FACTS


def test_each_run_fact_is_written_once_in_run_json(tmp_path, parts):
    out = write_bundle(tmp_path / "run", **parts)
    run = json.loads((out / "run.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert run["best_epoch"] == 3 and run["wall_time_s"] == 3.0 and "created" in run
    assert not set(schema.RUN_FACTS) & set(metrics)
    b = load_bundle(out)
    assert (b.best_epoch, b.wall_time_s, b.epochs_run) == (3, 3.0, 3)  # epochs_run: history.csv's rows

    with pytest.raises(BundleError, match=r"metrics hold run facts \['best_epoch'\]; pass them in run_info"):
        write_bundle(tmp_path / "twice", **dict(parts, metrics={**parts["metrics"], "best_epoch": 3}))
    assert not (tmp_path / "twice").exists()


def blended_section(parts, temperature):
    test = parts["metrics"]["test"]
    return {"weight": 0.5, "test": {**test, "accuracy": 0.25}, "test_blend": {**test, "accuracy": 0.75},
            "seconds": 2.0, **({"calibration": {"temperature": temperature}} if temperature else {})}


def test_blend_metrics_and_the_effective_temperature(tmp_path, parts, morphology_bundle, good_bundle):
    run = shutil.copytree(morphology_bundle, tmp_path / "blended")
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["calibration"] = {"temperature": 1.2}  # the CNN's own: not the blend's
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert load_bundle(run).blend_metrics is None and load_bundle(run).effective_temperature is None

    (run / "metrics.json").write_text(json.dumps({**metrics, "morphology": blended_section(parts, 1.7)}))
    b = load_bundle(run)
    blend = b.blend_metrics
    assert (blend.weight, blend.alone["accuracy"], blend.blended["accuracy"], blend.temperature) == (0.5, 0.25, 0.75, 1.7)
    assert b.temperature == 1.2 and b.effective_temperature == 1.7

    plain = shutil.copytree(good_bundle, tmp_path / "plain")  # CNN only: a morphology section is ignored
    (plain / "metrics.json").write_text(json.dumps({**metrics, "morphology": blended_section(parts, 1.7)}))
    b = load_bundle(plain)
    assert b.blend_metrics is None and b.effective_temperature == b.temperature == 1.2


def test_replace_predictions_swaps_datasets_and_keeps_the_rest(tmp_path, good_bundle):
    run = shutil.copytree(good_bundle, tmp_path / "run")
    path = run / "predictions.h5"
    before = load_bundle(run)
    n = before.num_test
    feats, emb = np.ones((n, 3), np.float32), np.zeros((n, 2), np.float32)
    replace_predictions(path, {"features": feats, "embedding_2d": emb}, embedding_method="pca")
    after = load_bundle(run)
    np.testing.assert_array_equal(after.features, feats)
    assert after.embedding_method == "pca"
    np.testing.assert_array_equal(after.predictions["probs"], before.predictions["probs"])
    np.testing.assert_array_equal(after.read_test_images(range(n)), before.read_test_images(range(n)))

    replace_predictions(path, {"features": None, "embedding_2d": None})  # None deletes
    assert load_bundle(run).features is None and load_bundle(run).embedding_2d is None

    content = path.read_bytes()
    with pytest.raises(BundleError, match=r"\['images'\] are not float datasets"):
        replace_predictions(path, {"images": np.zeros((n, 32, 32, 3), np.uint8)})
    with pytest.raises(BundleError, match="first axis must be the 12 test images"):
        replace_predictions(path, {"features": np.ones((n + 1, 3))})
    with pytest.raises(PredictionsReplaced):
        replace_predictions(path, {"features": feats}, expected_probs=before.predictions["probs"] + 1)
    assert path.read_bytes() == content and sorted(p.name for p in run.iterdir()) == sorted(schema.REQUIRED_MEMBERS)
    with h5py.File(path) as f:
        assert "features" not in f
