"""Tests of galaxy_core.models.predictor: ONNX Runtime first (exported once, cached), Keras fallback."""

import os

import numpy as np
import pytest

from galaxy_core.bundle.read import load_bundle
from galaxy_core.bundle.write import write_bundle
from galaxy_core.config import Config
from galaxy_core.errors import ModelError
from galaxy_core.inference.probabilities import predict_probs
from galaxy_core.evaluation.metrics import assemble_metrics, evaluate_split
from galaxy_core.models.network import build_model
from galaxy_core.models.fingerprint import file_sha256, seal, sidecar_path
from galaxy_core.models.onnx_export import export_model
import galaxy_core.models.predictor as predictor_module
from galaxy_core.models.predictor import KerasPredictor, OnnxPredictor, make_predictor

SIZE = 32


@pytest.fixture()
def bundle(tmp_path):
    """A fresh synthetic bundle of an untrained SmallCNN (Flatten head) at 32 px."""
    import keras

    keras.utils.set_random_seed(3)
    cfg = Config(backbone="SmallCNN", image_size=SIZE, dense_units=16, weights="none")
    model = build_model(cfg)
    images = np.random.default_rng(0).integers(0, 256, (10, SIZE, SIZE, 3), dtype=np.uint8)
    labels = np.arange(10)
    test = evaluate_split(model, images, labels, cfg.class_names, tta=False)
    path = write_bundle(
        tmp_path / "runs" / "tiny", config=cfg, model=model,
        history={"loss": [2.3], "accuracy": [0.1], "val_loss": [2.3], "val_accuracy": [0.1]},
        metrics=assemble_metrics(test), run_info={"synthetic": True, "best_epoch": 1},
        predictions={"indices": np.arange(10), "labels": labels, "probs": test["probs"], "images": images})
    return load_bundle(path)


class CountingExport:
    """In-process exporter (faster than the child process) that counts its calls."""

    def __init__(self, fail=False):
        self.calls, self.fail = [], fail

    def __call__(self, model_path, onnx_path):
        self.calls.append(onnx_path)
        if self.fail:
            raise RuntimeError("forced export failure")
        from galaxy_core.models.network import load_model
        return export_model(load_model(model_path, compile=False), onnx_path,
                            source_sha256=file_sha256(model_path))


def make_older_export(path):
    """Turn a fingerprinted export into one from before the graph passes (version key dropped, resealed)."""
    import json

    import onnx

    from galaxy_core.models.onnx_passes import METADATA_KEY

    recorded = json.loads(sidecar_path(path).read_text())
    proto = onnx.load(str(path))
    for prop in list(proto.metadata_props):
        if prop.key == METADATA_KEY:
            proto.metadata_props.remove(prop)
    onnx.save(proto, str(path))
    seal(path, recorded["source_sha256"], recorded["input_shape"])


def test_exported_once_beside_the_bundle_and_matches_keras(bundle, tmp_path):
    export, lines = CountingExport(), []
    first = make_predictor(bundle, cache_dir=tmp_path / "cache", export=export, log=lines.append)
    assert isinstance(first, OnnxPredictor) and first.backend == "onnxruntime" and first.note is None
    assert export.calls == [bundle.path.resolve() / "model.onnx"]
    assert len(lines) == 1 and "exporting" in lines[0]
    second = make_predictor(bundle, cache_dir=tmp_path / "cache", export=export, log=lines.append)
    assert isinstance(second, OnnxPredictor) and len(export.calls) == 1  # cached file reused
    assert len(lines) == 1
    images = bundle.read_test_images(list(range(10)))
    keras_probs = predict_probs(bundle.load_model(), images)
    np.testing.assert_allclose(predict_probs(second, images), keras_probs, atol=1e-4, rtol=0)
    np.testing.assert_allclose(predict_probs(second, images, tta=True),
                               predict_probs(bundle.load_model(), images, tta=True), atol=1e-4, rtol=0)
    # Only the contents count, not the time: a touched model.keras keeps its export.
    model_file = bundle.path / "model.keras"
    later = (bundle.path / "model.onnx").stat().st_mtime_ns + 10**9
    os.utime(model_file, ns=(later, later))
    make_predictor(bundle, cache_dir=tmp_path / "cache", export=export)
    assert len(export.calls) == 1


def test_read_only_bundle_folder_uses_the_cache_dir(bundle, tmp_path, monkeypatch):
    # Tests run as root (write permission bits do not stop root), so "read-only" is simulated.
    real = predictor_module._writable
    monkeypatch.setattr(predictor_module, "_writable",
                        lambda folder: False if folder == bundle.path.resolve() else real(folder))
    export = CountingExport()
    predictor = make_predictor(bundle, cache_dir=tmp_path / "cache", export=export)
    assert isinstance(predictor, OnnxPredictor)
    assert not (bundle.path / "model.onnx").exists()
    [cached] = (tmp_path / "cache" / "onnx").glob("tiny-*.onnx")
    assert predictor.path == cached
    make_predictor(bundle, cache_dir=tmp_path / "cache", export=export)
    assert len(export.calls) == 1


def test_failed_export_falls_back_to_keras_with_a_note(bundle, tmp_path):
    export = CountingExport(fail=True)
    predictor = make_predictor(bundle, cache_dir=tmp_path / "cache", export=export)
    assert isinstance(predictor, KerasPredictor) and predictor.backend == "keras"
    assert predictor.note.startswith("note: classifying with Keras") and "forced export failure" in predictor.note
    assert "\n" not in predictor.note
    images = bundle.read_test_images([0, 1, 2])
    np.testing.assert_allclose(predict_probs(predictor, images), bundle.predictions["probs"][:3], atol=1e-5)
    # The failure is remembered: no second export attempt, same fallback.
    again = make_predictor(bundle, cache_dir=tmp_path / "cache", export=export)
    assert isinstance(again, KerasPredictor) and len(export.calls) == 1
    with pytest.raises(ModelError, match="ONNX Runtime is not available"):
        make_predictor(bundle, backend="onnxruntime", cache_dir=tmp_path / "cache", export=export)


def test_keras_backend_never_exports(bundle, tmp_path):
    export = CountingExport()
    predictor = make_predictor(bundle, backend="keras", export=export)
    assert isinstance(predictor, KerasPredictor) and predictor.note is None and export.calls == []
    with pytest.raises(ModelError, match="backend must be one of"):
        make_predictor(bundle, backend="tensorrt")


def test_an_older_export_is_upgraded_once_in_place(bundle, tmp_path):
    import onnx

    from galaxy_core.models.onnx_passes import EXPORT_VERSION

    export, lines = CountingExport(), []
    first = make_predictor(bundle, cache_dir=tmp_path / "cache", export=export, log=lines.append)
    assert first.export_version == EXPORT_VERSION
    path = bundle.path / "model.onnx"
    make_older_export(path)
    assert OnnxPredictor(path).export_version == 1
    lines.clear()
    upgraded = make_predictor(bundle, cache_dir=tmp_path / "cache", export=export, log=lines.append)
    assert upgraded.export_version == EXPORT_VERSION and len(export.calls) == 1  # not re-exported
    assert len(lines) == 1 and "updating" in lines[0]
    lines.clear()
    make_predictor(bundle, cache_dir=tmp_path / "cache", export=export, log=lines.append)
    assert lines == []  # once


PROTOCOL_MEMBERS = ("predict", "predict_on_batch", "backend", "note", "output_shape")


def test_every_backend_row_makes_a_predictor_that_follows_the_protocol(bundle, tmp_path):
    from galaxy_core.inference.predictor import Predictor
    from galaxy_core.models.predictor import BACKENDS, DEFAULT_BACKEND, backend_label

    assert set(PROTOCOL_MEMBERS) <= set(dir(Predictor)) | set(Predictor.__annotations__)
    assert DEFAULT_BACKEND in BACKENDS and list(BACKENDS) == ["auto", "onnxruntime", "keras", "int8"]
    images = bundle.read_test_images(list(range(4)))
    expected = predict_probs(bundle.load_model(), images)
    export = CountingExport()
    for name, row in BACKENDS.items():
        assert row.name == name and row.label and row.help
        made = make_predictor(bundle, backend=name, cache_dir=tmp_path / "cache", export=export)
        assert all(hasattr(made, member) for member in PROTOCOL_MEMBERS)
        runs = row if row.runs_as else BACKENDS["onnxruntime"]  # auto: ONNX Runtime here
        assert made.backend == runs.runs_as and backend_label(made) == runs.label
        # int8 says how approximate it is when it is made (never patched later); the others say nothing.
        assert (made.note is not None) == (name == "int8")
        np.testing.assert_allclose(predict_probs(made, images), expected, atol=0.05 if name == "int8" else 1e-4)
    assert len(export.calls) == 1


def test_a_new_backend_is_one_row(bundle, monkeypatch):
    from galaxy_core.models.predictor import BACKENDS, Backend, backend_label
    from galaxy_core.predict import build_parser

    class Uniform:
        backend, note, output_shape = "uniform", "note: every class equally likely", (None, 10)

        def predict(self, x):
            return np.full((len(x), 10), 0.1, np.float32)

        predict_on_batch = predict

    calls = []

    def make(bundle, **options):
        calls.append(sorted(options))
        return Uniform()

    monkeypatch.setitem(BACKENDS, "uniform", Backend("uniform", "Uniform", "uniform", "every class 0.1", make))
    made = make_predictor(bundle, backend="uniform")
    assert calls == [["cache_dir", "export", "log", "model", "threads"]]
    assert backend_label(made) == "Uniform"
    np.testing.assert_allclose(predict_probs(made, bundle.read_test_images([0, 1])), 0.1)
    args = build_parser().parse_args(["--run", "x", "--backend", "uniform", "a.png"])
    assert args.backend == "uniform"


# --- issue 25: a bundle's model.onnx is used only for the model.keras it was exported from ---------
def other_model_keras(tmp_path, size=SIZE, seed=11):
    """A model.keras of another (untrained) SmallCNN: other weights, same classes."""
    import keras

    keras.utils.set_random_seed(seed)
    model = build_model(Config(backbone="SmallCNN", image_size=size, dense_units=16, weights="none"))
    path = tmp_path / f"other-{size}-{seed}" / "model.keras"
    path.parent.mkdir(parents=True)
    model.save(path)
    return path


def keras_probs(bundle):
    return predict_probs(bundle.load_model(), bundle.read_test_images(list(range(10))))


def assert_is_this_runs_model(predictor, bundle):
    assert isinstance(predictor, OnnxPredictor)
    np.testing.assert_allclose(predict_probs(predictor, bundle.read_test_images(list(range(10)))),
                               keras_probs(bundle), atol=1e-4, rtol=0)


@pytest.mark.parametrize("with_sidecar", [True, False])
def test_another_runs_onnx_copied_into_the_bundle_is_exported_again(bundle, tmp_path, with_sidecar):
    other = other_model_keras(tmp_path)
    export_model(load_model_file(other), other.parent / "model.onnx", source_sha256=file_sha256(other))
    import shutil

    shutil.copy(other.parent / "model.onnx", bundle.path / "model.onnx")  # newer than model.keras
    if with_sidecar:
        shutil.copy(sidecar_path(other.parent / "model.onnx"), sidecar_path(bundle.path / "model.onnx"))
    export, lines = CountingExport(), []
    predictor = make_predictor(bundle, cache_dir=tmp_path / "cache", export=export, log=lines.append)
    assert export.calls == [bundle.path.resolve() / "model.onnx"]  # replaced by this run's export
    assert any("not using" in line and "model.onnx" in line for line in lines)
    assert_is_this_runs_model(predictor, bundle)


def test_an_onnx_file_with_edited_weights_is_exported_again(bundle, tmp_path):
    import onnx
    from onnx import numpy_helper

    export = CountingExport()
    make_predictor(bundle, cache_dir=tmp_path / "cache", export=export)
    path = bundle.path / "model.onnx"
    proto = onnx.load(str(path))
    biggest = max(proto.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
    biggest.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(biggest) * -3.0, biggest.name))
    onnx.save(proto, str(path))  # its metadata still names this model.keras
    lines = []
    predictor = make_predictor(bundle, cache_dir=tmp_path / "cache", export=export, log=lines.append)
    assert len(export.calls) == 2 and any("contents changed" in line for line in lines)
    assert_is_this_runs_model(predictor, bundle)


def test_a_model_keras_replaced_by_an_older_file_is_exported_again(bundle, tmp_path):
    import shutil

    export = CountingExport()
    make_predictor(bundle, cache_dir=tmp_path / "cache", export=export)
    other = other_model_keras(tmp_path)
    shutil.copy(other, bundle.path / "model.keras")
    old = (bundle.path / "model.onnx").stat().st_mtime_ns - 10**10
    os.utime(bundle.path / "model.keras", ns=(old, old))  # the replacement is OLDER than model.onnx
    bundle = load_bundle(bundle.path)
    lines = []
    predictor = make_predictor(bundle, cache_dir=tmp_path / "cache", export=export, log=lines.append)
    assert len(export.calls) == 2 and any("another model" in line for line in lines)
    assert_is_this_runs_model(predictor, bundle)


def test_a_mismatched_onnx_is_refused_with_its_reason_when_nothing_is_writable(bundle, tmp_path, monkeypatch):
    import shutil

    other = other_model_keras(tmp_path)
    export_model(load_model_file(other), other.parent / "model.onnx", source_sha256=file_sha256(other))
    shutil.copy(other.parent / "model.onnx", bundle.path / "model.onnx")
    shutil.copy(sidecar_path(other.parent / "model.onnx"), sidecar_path(bundle.path / "model.onnx"))
    monkeypatch.setattr(predictor_module, "_writable", lambda folder: False)
    export = CountingExport()
    with pytest.raises(ModelError, match="not used: it was made from another model"):
        make_predictor(bundle, backend="onnxruntime", cache_dir=tmp_path / "cache", export=export)
    fallback = make_predictor(bundle, cache_dir=tmp_path / "cache", export=export)
    assert isinstance(fallback, KerasPredictor) and "made from another model" in fallback.note
    assert export.calls == []
    np.testing.assert_allclose(predict_probs(fallback, bundle.read_test_images(list(range(10)))),
                               keras_probs(bundle), atol=1e-5)


def test_an_onnx_of_another_input_size_is_refused_before_onnx_runtime_runs(bundle, tmp_path):
    import shutil

    other = other_model_keras(tmp_path, size=48)
    wrong = export_model(load_model_file(other), other.parent / "model.onnx", source_sha256=file_sha256(other))
    with pytest.raises(ModelError, match="takes images of 48 x 48 x 3, not 32 x 32 x 3.*another input size"):
        OnnxPredictor(wrong).predict(np.zeros((2, SIZE, SIZE, 3), np.float32))
    # Sealed for THIS model.keras but at 48 px (the shape is part of the fingerprint): exported again.
    shutil.copy(wrong, bundle.path / "model.onnx")
    seal(bundle.path / "model.onnx", file_sha256(bundle.path / "model.keras"), (48, 48, 3))
    export, lines = CountingExport(), []
    predictor = make_predictor(bundle, cache_dir=tmp_path / "cache", export=export, log=lines.append)
    assert len(export.calls) == 1 and any("takes 48 x 48 x 3 images, the run 32 x 32 x 3" in l for l in lines)
    assert_is_this_runs_model(predictor, bundle)


def test_a_failure_marker_applies_to_its_own_model_only(bundle, tmp_path):
    import shutil

    failing = CountingExport(fail=True)
    assert isinstance(make_predictor(bundle, cache_dir=tmp_path / "cache", export=failing), KerasPredictor)
    shutil.copy(other_model_keras(tmp_path), bundle.path / "model.keras")  # another model: try again
    export = CountingExport()
    assert isinstance(make_predictor(load_bundle(bundle.path), cache_dir=tmp_path / "cache", export=export),
                      OnnxPredictor)
    assert len(export.calls) == 1


def load_model_file(path):
    from galaxy_core.models.network import load_model

    return load_model(path, compile=False)
