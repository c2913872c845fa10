"""The offline demo end to end at a reduced size: `python train.py --demo` on synthetic galaxies."""

import h5py
import numpy as np
import pytest

import train
from galaxy_core.bundle.read import load_bundle
from galaxy_core.explain import load_explanations
from galaxy_core.morphology.statistics import features_batch


@pytest.mark.slow
def test_demo_writes_a_synthetic_bundle_with_explanations(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GALAXY10_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "runs" / "demo"
    code = train.main(["--demo", "--demo-images", "300", "--epochs", "2", "--out", str(out),
                       "--cache-dir", str(tmp_path / "cache"), "--explain-errors", "8",
                       "--explain-correct", "4", "--smooth-samples", "4", "--faithfulness-steps", "5"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "SYNTHETIC" in printed

    # The generated data file is Galaxy10-format and says it is synthetic.
    (data_file,) = (tmp_path / "data").glob("synthetic-demo-300-*.h5")
    with h5py.File(data_file) as f:
        assert bool(f.attrs["synthetic"]) and f["images"].shape == (300, 256, 256, 3)  # rendered as cutouts

    bundle = load_bundle(out)
    assert bundle.is_synthetic
    assert bundle.config.backbone == "SmallCNN" and bundle.config.epochs == 2
    assert bundle.config.image_size == 64 and bundle.config.crop_scale == 2.0  # cropped, then 64 px
    assert bundle.config.average_from_epoch == 1  # the last 5 of 2 epochs: both averaged
    assert "weights: mean of 2 epoch(s) from epoch 1 on" in printed
    assert bundle.run_info["demo"] is True
    n_test = len(bundle.predictions["labels"])
    assert n_test == bundle.run_info["split_sizes"]["test"] == 30
    assert np.allclose(bundle.predictions["probs"].sum(axis=1), 1, atol=1e-4)
    assert 0 <= bundle.metrics["test"]["accuracy"] <= 1

    # The morphology classifier, fitted on the training split and blended 50/50 with the CNN.
    assert bundle.config.morphology_weight == 0.5 and bundle.has_morphology
    morph = bundle.metrics["morphology"]
    assert morph["weight"] == 0.5 and set(morph) >= {"test", "test_blend"}
    assert morph["test"]["confusion_matrix"] and sum(map(sum, morph["test_blend"]["confusion_matrix"])) == n_test
    assert "morphology classifier: test accuracy alone" in printed
    # The blend has its own temperature, fitted on its validation probabilities.
    assert morph["calibration"]["fitted_on"] == "val"
    assert morph["calibration"]["val"]["n"] == bundle.run_info["split_sizes"]["val"]
    assert bundle.effective_temperature == bundle.blend_metrics.temperature == morph["calibration"]["temperature"] > 0
    stats = features_batch([np.zeros((256, 256, 3), np.uint8)])
    assert bundle.load_morphology().predict_features(stats).shape == (1, 10)
    # Run facts are run.json's alone.
    assert bundle.run_info["epochs_run"] == 2 and bundle.best_epoch in (1, 2) and bundle.wall_time_s > 0
    assert not {"best_epoch", "epochs_run", "wall_time_s", "train_images_per_s", "created"} & set(bundle.metrics)

    # Explanations: the errors (at most 8) and 4 correct images, every method, scored.
    assert bundle.explanations_path is not None
    found = load_explanations(bundle.explanations_path)
    n_errors = int((bundle.predictions["probs"].argmax(1) != bundle.predictions["labels"]).sum())
    assert len(found.rows["row"]) == min(n_errors, 8) + min(4, n_test - n_errors)
    heat = found.map("gradcam", "predicted", 0)
    assert heat.shape == (64, 64)
