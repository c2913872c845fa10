"""Tests of galaxy_core.predict: batch classification of files, the CLI and its formats."""

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest

from galaxy_core.bundle.read import load_bundle
from galaxy_core.bundle.write import write_bundle
from galaxy_core.config import Config
from galaxy_core.inference.classify import classify_each
from galaxy_core.inference.probabilities import to_model_input
from galaxy_core.evaluation.metrics import assemble_metrics, evaluate_split
from galaxy_core.predict import classify_files, format_rows, main
from galaxy_core.preprocessing.preprocess import preprocess_image

SIZE = 32


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A bundle with a tiny untrained conv model on 32x32 input (synthetic run)."""
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    cfg = Config(image_size=SIZE, weights="none")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, SIZE, SIZE, 3), dtype=np.uint8)
    labels = np.arange(10)
    test = evaluate_split(model, images, labels, cfg.class_names, tta=False)
    return write_bundle(
        tmp_path_factory.mktemp("runs") / "tiny", config=cfg, model=model,
        history={"loss": [2.3], "accuracy": [0.1], "val_loss": [2.3], "val_accuracy": [0.1]},
        metrics=assemble_metrics(test), run_info={"synthetic": True, "best_epoch": 1},
        predictions={"indices": np.arange(10), "labels": labels, "probs": test["probs"], "images": images})


def test_classify_files_mixed(run_dir, image_files):
    files = image_files
    bundle = load_bundle(run_dir)
    model = bundle.load_model()
    kinds = ["rgb", "garbage", "gray", "rgba", "large", "16bit", "jpeg"]
    paths = [files[k][0] for k in kinds] + [run_dir / "missing.png"]
    rows = classify_files(bundle, paths, model=model, batch_size=3)
    assert [r["file"] for r in rows] == [str(p) for p in paths]
    errors = {r["file"]: r["error"] for r in rows if r["error"]}
    assert set(errors) == {str(files["garbage"][0]), str(run_dir / "missing.png")}
    good = [r for r in rows if r["error"] is None]
    assert len(good) == 6
    for row in good:
        assert len(row["probs"]) == 10 and abs(sum(row["probs"]) - 1) < 1e-4
        assert row["predicted_index"] == int(np.argmax(row["probs"]))
        assert row["predicted"] == bundle.config.class_names[row["predicted_index"]]
        assert row["confidence"] == max(row["probs"])
    bad = rows[1]
    assert bad["probs"] is None and bad["predicted"] is None and "decode" in bad["error"]

    # Same numbers as preprocessing + the model by hand (the decoded image is the RGB original).
    expected = [files[k][1] for k in ("rgb", "gray", "rgba", "large", "16bit")]
    batch = np.stack([preprocess_image(image, bundle.config) for image in expected])
    manual = model.predict_on_batch(to_model_input(batch))
    got = np.array([rows[i]["probs"] for i in (0, 2, 3, 4, 5)])
    np.testing.assert_allclose(got, manual, rtol=1e-5, atol=1e-6)
    arrays = np.stack([probs for probs, _ in classify_each(model, bundle.config, expected)])  # decoded arrays
    np.testing.assert_allclose(arrays, manual, rtol=1e-5, atol=1e-6)
    assert classify_files(bundle, [], model=model) == []


def test_cli_csv_json_text(run_dir, image_files, capsys):
    files = image_files
    paths = [str(files[k][0]) for k in ("rgb", "garbage", "large")]
    code = main(["--run", str(run_dir), "--format", "csv", "--top-k", "2", *paths])
    out, err = capsys.readouterr()
    assert code == 1  # one file failed
    assert "SYNTHETIC" in err and "SYNTHETIC" not in out
    table = list(csv.DictReader(io.StringIO(out)))
    assert [r["file"] for r in table] == paths
    assert table[1]["error"] and not table[1]["predicted"]
    assert table[0]["error"] == "" and table[0]["top1"] == table[0]["predicted"]
    probs = [float(table[0][f"p({name})"]) for name in Config().class_names]
    assert abs(sum(probs) - 1) < 1e-4 and "top2_prob" in table[0] and "top3" not in table[0]

    code = main(["--run", str(run_dir), "--format", "json", "--top-k", "3", *paths])
    out, err = capsys.readouterr()
    assert code == 1 and "SYNTHETIC" in err
    data = json.loads(out)
    assert [r["file"] for r in data] == paths
    assert data[1]["error"] and data[1]["top_k"] is None
    assert len(data[0]["top_k"]) == 3 and data[0]["top_k"][0]["class"] == data[0]["predicted"]

    code = main(["--run", str(run_dir), paths[0], paths[2]])
    out, err = capsys.readouterr()
    assert code == 0 and "SYNTHETIC" in out.splitlines()[0] and out.count("%") == 6


def test_cli_errors_exit_2(tmp_path, image_files):
    files = image_files
    # Subprocess: checks `python -m` and that a bad bundle gives "error: ..." and no traceback.
    png = str(files["rgb"][0])
    proc = subprocess.run([sys.executable, "-m", "galaxy_core.predict", "--run", str(tmp_path / "nope"), png],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "does not exist" in proc.stderr
    with pytest.raises(SystemExit) as info:
        main(["--run", str(tmp_path)])  # no IMAGE
    assert info.value.code == 2


def test_format_rows_rejects_unknown_format():
    with pytest.raises(ValueError, match="format"):
        format_rows([], ["a", "b"], fmt="xml")


@pytest.mark.slow
def test_cli_keras_backend_keeps_tensorflow_start_up_lines_off_stderr(good_bundle, image_files, tmp_path):
    """Issue 10 #11: a CPU user's terminal shows no CUDA probing lines from TensorFlow."""
    import os
    import shutil
    from pathlib import Path

    run = shutil.copytree(good_bundle, tmp_path / "run")
    path, _ = image_files["rgb"]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-m", "galaxy_core.predict", "--run", str(run), "--backend", "keras",
                           str(path)], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1], env=env)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    for noise in ("failed call to cuInit", "cudart_stub", "absl::InitializeLog", "oneDNN"):
        assert noise not in proc.stderr, proc.stderr


def test_a_blended_run_classifies_with_both_models_unless_cnn_only(morphology_bundle, image_files, capsys):
    from galaxy_core.morphology.classifier import blend_probs
    from galaxy_core.morphology.statistics import features_batch

    bundle = load_bundle(morphology_bundle)
    paths = [image_files["rgb"][0], image_files["large"][0]]
    blended = np.array([r["probs"] for r in classify_files(bundle, paths)])
    cnn = np.array([r["probs"] for r in classify_files(bundle, paths, morphology=False)])
    morph = bundle.load_morphology().predict_features(features_batch([image_files["rgb"][1], image_files["large"][1]]))
    np.testing.assert_allclose(blended, blend_probs(cnn, morph, 0.5), rtol=1e-5, atol=1e-6)
    assert np.abs(blended - cnn).max() > 0.01

    assert main(["--run", str(morphology_bundle), "--format", "json", *map(str, paths)]) == 0
    out, err = capsys.readouterr()
    assert "blended with the morphology classifier's (weight 0.5" in err
    np.testing.assert_allclose([r["probs"] for r in json.loads(out)], blended, rtol=1e-5, atol=1e-6)
    assert main(["--run", str(morphology_bundle), "--format", "json", "--cnn-only", *map(str, paths)]) == 0
    out, err = capsys.readouterr()
    assert "morphology" not in err
    np.testing.assert_allclose([r["probs"] for r in json.loads(out)], cnn, rtol=1e-5, atol=1e-6)


def test_cli_backend_choices_and_help_are_the_registry(capsys):
    from galaxy_core.models.predictor import BACKENDS, DEFAULT_BACKEND
    from galaxy_core.predict import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "backend")
    assert tuple(action.choices) == tuple(BACKENDS) and action.default == DEFAULT_BACKEND
    for row in BACKENDS.values():
        assert f"{row.name}: {row.help}" in action.help
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--run", "x", "--backend", "tensorrt", "a.png"])
    assert exit_info.value.code == 2 and "invalid choice: 'tensorrt'" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_during_the_first_onnx_export_exits_130_without_a_traceback(good_bundle, image_files, tmp_path):
    """Issue 25 item 10: SIGINT (to the process group, as a terminal sends it) while model.onnx is exported."""
    import os
    import shutil
    import signal
    import time
    from pathlib import Path

    run = shutil.copytree(good_bundle, tmp_path / "run")
    for leftover in run.glob("model.onnx*"):
        leftover.unlink()
    path, _ = image_files["rgb"]
    env = {**os.environ, "GALAXY10_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "galaxy_core.predict", "--run", str(run), str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            cwd=Path(__file__).resolve().parents[1], env=env)
    try:
        lines = []
        for line in proc.stderr:  # the export is announced before its child process starts
            lines.append(line)
            if "exporting" in line:
                break
        assert any("exporting" in line for line in lines), "".join(lines)
        time.sleep(1.0)  # the child is converting
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = "".join(lines) + err
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "interrupted" in err
    assert not list(run.glob("model.onnx*")) and not list(run.glob("*.tmp"))  # nothing half-written, no marker


def test_a_folder_that_is_not_a_bundle_is_named_so(tmp_path, image_files, capsys):
    """Issue 25 item 14: `predict --run /etc` advised deleting the folder."""
    (tmp_path / "passwd").write_text("root:x:0:0\n")
    assert main(["--run", str(tmp_path), str(image_files["rgb"][0])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is not a run bundle" in err and "delete" not in err


@pytest.mark.slow
def test_an_onnx_of_another_input_size_in_the_bundle_is_not_used(run_dir, image_files, tmp_path, capsys):
    """Issue 25 items 1, 2: another run's model.onnx (48 px, other weights) copied in gave an ONNX Runtime
    InvalidArgument traceback; now it is named, exported again from this model.keras, and the answer is right."""
    import shutil

    import keras

    from galaxy_core.models.fingerprint import file_sha256
    from galaxy_core.models.onnx_export import export_model

    run = shutil.copytree(run_dir, tmp_path / "run")
    other = keras.Sequential([keras.Input((48, 48, 3)), keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(10, activation="softmax")])
    export_model(other, run / "model.onnx", source_sha256="0" * 64)  # newer than model.keras
    path = str(image_files["rgb"][0])
    assert main(["--run", str(run), "--format", "json", path]) == 0
    out, err = capsys.readouterr()
    assert "not using" in err and "made from another model" in err and "Traceback" not in err
    want = classify_files(load_bundle(run), [path], model=load_bundle(run).load_model())[0]["probs"]
    np.testing.assert_allclose(json.loads(out)[0]["probs"], want, atol=1e-4)
    assert file_sha256(run / "model.keras") in (run / "model.onnx.sha256.json").read_text()
