"""Transfer learning to your own labels: a run trained on a class folder, then `--init-from` it on a
2-class table with the backbone frozen but its last weighted layers (galaxy_core.models.transfer,
galaxy_core.training.inputs)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import LABELLED_CLASSES, labelled_config, write_class_folder

from galaxy_core.bundle.read import load_bundle
from galaxy_core.config import PREPROCESS_FIELDS, ConfigError
from galaxy_core.errors import DatasetError, TrainingError
from galaxy_core.models.transfer import INHERITED_FIELDS, NEW_LAYERS

ROOT = Path(__file__).resolve().parents[1]


def test_a_class_folder_run_takes_its_classes_from_the_data(labelled_run):
    run = load_bundle(labelled_run)
    assert run.config.class_names == tuple(sorted(LABELLED_CLASSES)) and run.config.num_classes == 3
    assert run.predictions["probs"].shape[1] == 3
    assert set(run.metrics["test"]["per_class"]) == set(LABELLED_CLASSES)
    assert run.config.split_by == "random" and run.run_info["has_sky"] is False and run.sky is None
    assert run.run_info["labelled_source"]["images"] == 36 and run.run_info["labelled_source"]["unreadable"] == 1
    assert run.run_info["labelled_source"]["path"].endswith("data")


def test_init_from_keeps_the_parents_network_and_trains_only_the_unfrozen_layers(labelled_run, transfer_run):
    parent, child = load_bundle(labelled_run), load_bundle(transfer_run)
    assert child.config.class_names == ("lens", "no lens")
    # The parent's network and preprocessing win over the asked VGG19 at 48 px.
    for name in INHERITED_FIELDS:
        assert getattr(child.config, name) == getattr(parent.config, name), name
    assert set(PREPROCESS_FIELDS) <= set(INHERITED_FIELDS) and child.config.init_from == str(labelled_run)
    parent_run = child.run_info["parent_run"]
    assert parent_run["path"] == str(labelled_run) and parent_run["class_names"] == list(LABELLED_CLASSES)
    a, b = parent.load_model(), child.load_model()
    assert b.get_layer(NEW_LAYERS[0]).get_weights()[0].shape == (child.config.dense_units, 2)
    same = {layer.name: all(np.array_equal(x, y) for x, y in zip(layer.get_weights(), b.get_layer(layer.name).get_weights()))
            for layer in a.layers if layer.weights and layer.name not in NEW_LAYERS}
    # Frozen backbone layers keep the parent's weights exactly; the last 2 weighted ones and the head train.
    assert [name for name, kept in same.items() if not kept] == ["last_conv", "last_bn", "head_dense"]
    assert same["block1_conv"] and same["block4_bn"]


def test_classes_too_small_for_the_split_are_refused_with_the_minimum(tmp_path):
    from galaxy_core.training.train import train_run

    data = write_class_folder(tmp_path / "data", per_class=6, classes={"bar": 5, "ring": 2})
    with pytest.raises(DatasetError, match=r"'bar': 6, 'ring': 6.*at least 10 images"):
        train_run(labelled_config(), data, tmp_path / "runs" / "small", cache_dir=tmp_path / "cache",
                  progress=False, on_log=lambda t: None)
    assert not (tmp_path / "runs" / "small").exists()


def test_init_from_a_folder_that_is_not_a_run_is_refused(tmp_path):
    from galaxy_core.training.train import train_run

    data = write_class_folder(tmp_path / "data", per_class=10, classes={"bar": 5, "ring": 2})
    with pytest.raises(TrainingError, match="--init-from .*not a readable run bundle"):
        train_run(labelled_config(init_from=str(tmp_path)), data, tmp_path / "runs" / "x",
                  cache_dir=tmp_path / "cache", progress=False, on_log=lambda t: None)
    with pytest.raises(ConfigError, match="unfreeze_last=2 needs --freeze-backbone"):
        labelled_config(unfreeze_last=2)


def test_cli_takes_class_names_and_refuses_a_single_one(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "train.py"), "--data", str(tmp_path), "--class-names", "only"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2 and "at least 2 comma-separated class names" in out.stderr
    assert "Traceback" not in out.stderr
    help_text = subprocess.run([sys.executable, str(ROOT / "train.py"), "--help"], capture_output=True,
                               text=True).stdout
    assert "--init-from" in help_text and "--unfreeze-last" in help_text and "--class-names" in help_text


def test_predict_cli_names_the_runs_own_classes(labelled_run, tmp_path, capsys):
    import cv2

    from galaxy_core import predict
    from galaxy_core.synthetic import render_galaxy

    image = tmp_path / "ring.png"
    assert cv2.imwrite(str(image), render_galaxy(2, 32, np.random.default_rng(1))[..., ::-1])
    assert predict.main(["--run", str(labelled_run), "--backend", "keras", "--format", "csv", str(image)]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert [f"p({name})" for name in sorted(LABELLED_CLASSES)] == [c for c in header.split(",") if c.startswith("p(")]
    assert row.split(",")[2] in LABELLED_CLASSES
