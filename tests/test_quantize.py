"""Tests of galaxy_core.models.quantize: the int8 copy, its agreement report, reuse and staleness."""

import os

import numpy as np
import pytest

from galaxy_core.errors import ModelError
from galaxy_core.inference.probabilities import to_model_input
from galaxy_core.models.predictor import OnnxPredictor, make_predictor
from galaxy_core.models.quantize import (CALIBRATION_IMAGES, agreement, describe, ensure_int8, int8_paths,
                                  quantize_onnx)

pytest.importorskip("onnxruntime")
from test_predictor import CountingExport, bundle, make_older_export  # noqa: E402,F401 - the bundle fixture


def test_agreement_counts_top1_and_differences():
    ref = np.array([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4], [0.3, 0.3, 0.4]], np.float32)
    approx = np.array([[0.6, 0.3, 0.1], [0.1, 0.4, 0.5], [0.3, 0.3, 0.4]], np.float32)
    got = agreement(ref, approx)
    assert got["n_images"] == 3 and got["top1_agreement"] == pytest.approx(2 / 3)
    assert got["max_abs_diff"] == pytest.approx(0.1) and got["mean_abs_diff"] == pytest.approx(0.4 / 9)
    with pytest.raises(ValueError, match="one shape"):
        agreement(ref, approx[:2])


def test_int8_copy_is_made_once_and_reported(bundle, tmp_path):
    lines = []
    fp32 = make_predictor(bundle, cache_dir=tmp_path / "cache", export=CountingExport())
    int8_path, report_path = int8_paths(fp32.path)
    assert int8_path.name == "model.int8.onnx" and report_path.name == "model.int8.json"
    path, report = ensure_int8(fp32.path, bundle.read_test_images, bundle.num_test, OnnxPredictor, log=lines.append)
    assert path == int8_path and report_path.is_file() and len(lines) == 1
    # The fixture has 10 test images (<= CALIBRATION_IMAGES): checked on the calibration images, and said so.
    assert bundle.num_test <= CALIBRATION_IMAGES and report["check_overlaps_calibration"] is True
    assert report["calibration_images"] == bundle.num_test and report["n_images"] == bundle.num_test
    # The same uint8 -> [0, 1] mapping as ensure_int8 (x / 255 differs in the last bit for some x,
    # enough to move the int8 model's output by ~1e-8 on some CPUs).
    x = to_model_input(bundle.read_test_images(list(range(bundle.num_test))))
    again = agreement(fp32.predict(x), OnnxPredictor(path).predict(x))
    assert again == pytest.approx({k: report[k] for k in again})
    assert 0 < report["max_abs_diff"] < 0.05  # approximate, but close
    # Reused while newer than the float32 file; rebuilt when the float32 export is newer.
    lines.clear()
    assert ensure_int8(fp32.path, bundle.read_test_images, bundle.num_test, OnnxPredictor, log=lines.append)[1] == report
    assert lines == []
    later = path.stat().st_mtime_ns + 10**9
    os.utime(fp32.path, ns=(later, later))  # a newer time alone changes nothing
    ensure_int8(fp32.path, bundle.read_test_images, bundle.num_test, OnnxPredictor, log=lines.append)
    assert lines == []
    make_older_export(fp32.path)  # other float32 bytes: the int8 copy is made again
    ensure_int8(fp32.path, bundle.read_test_images, bundle.num_test, OnnxPredictor, log=lines.append)
    assert len(lines) == 1
    assert not [p for p in bundle.path.iterdir() if p.name.endswith(".tmp") or "augmented" in p.name]


def test_make_predictor_int8_says_it_is_approximate(bundle, tmp_path):
    predictor = make_predictor(bundle, backend="int8", cache_dir=tmp_path / "cache", export=CountingExport())
    assert predictor.backend == "onnxruntime-int8" and predictor.path.name == "model.int8.onnx"
    assert predictor.note.startswith("note: int8 model (approximate)") and "\n" not in predictor.note
    assert "test images (the calibration images" in predictor.note
    x = bundle.read_test_images([0, 1]).astype(np.float32) / 255
    assert predictor.predict(x).shape == (2, 10)
    # An export that cannot be made: a clear error, not a silent fallback (int8 was asked for).
    failing = CountingExport(fail=True)
    os.remove(bundle.path / "model.onnx")
    with pytest.raises(ModelError, match="no int8 model"):
        make_predictor(bundle, backend="int8", cache_dir=tmp_path / "cache2", export=failing)


def test_quantize_needs_calibration_images(tmp_path):
    with pytest.raises(ModelError, match="K >= 1"):
        quantize_onnx(tmp_path / "in.onnx", tmp_path / "out.onnx", np.zeros((0, 8, 8, 3), np.float32))
    assert describe({"top1_agreement": 0.995, "n_images": 200, "max_abs_diff": 0.004}).endswith(
        "same top class as float32 on 99.5% of 200 test images, max |p_int8 - p_float32| = 4.0e-03")


def test_int8_request_upgrades_an_older_float32_export_before_quantizing(bundle, tmp_path):
    import onnx

    from galaxy_core.models.onnx_passes import EXPORT_VERSION

    export, lines = CountingExport(), []
    make_predictor(bundle, cache_dir=tmp_path / "cache", export=export)
    path = bundle.path / "model.onnx"
    make_older_export(path)  # a float32 file from before the graph passes
    for stale in int8_paths(path):  # no int8 copy yet
        if stale.exists():
            os.remove(stale)
    predictor = make_predictor(bundle, backend="int8", cache_dir=tmp_path / "cache", export=export,
                               log=lines.append)
    assert predictor.backend == "onnxruntime-int8"
    assert OnnxPredictor(path).export_version == EXPORT_VERSION  # the float32 source was upgraded
    assert any("updating" in line for line in lines) and len(export.calls) == 1  # not re-exported


def test_an_int8_copy_of_another_float32_file_is_made_again(bundle, tmp_path):
    """Issue 25: an int8 file whose mtime is newer but which came from another float32 model."""
    import shutil

    fp32 = make_predictor(bundle, cache_dir=tmp_path / "cache", export=CountingExport())
    path, _ = ensure_int8(fp32.path, bundle.read_test_images, bundle.num_test, OnnxPredictor)
    kept = tmp_path / "kept.int8.onnx"
    shutil.copy(path, kept)
    make_older_export(fp32.path)
    ensure_int8(fp32.path, bundle.read_test_images, bundle.num_test, OnnxPredictor)
    shutil.copy(kept, path)  # the old int8 file put back, newer than everything, its sidecar not
    lines = []
    ensure_int8(fp32.path, bundle.read_test_images, bundle.num_test, OnnxPredictor, log=lines.append)
    assert len(lines) == 1  # not trusted: made again


def test_quantization_works_on_a_private_copy(bundle, tmp_path):
    """Issue 25 item 9: the quantizer's temporary `<input>-inferred.onnx` is never beside the input
    (two `predict --backend int8` at once shared it). A folder in its way stands for the other process's file."""
    fp32 = make_predictor(bundle, cache_dir=tmp_path / "cache", export=CountingExport())
    (fp32.path.parent / "model-inferred.onnx").mkdir()
    x = to_model_input(bundle.read_test_images(list(range(4))))
    out = quantize_onnx(fp32.path, tmp_path / "q.onnx", x)
    assert OnnxPredictor(out).predict(x).shape == (4, 10)
    assert sorted(p.name for p in fp32.path.parent.iterdir() if "inferred" in p.name) == ["model-inferred.onnx"]


def _quantize_in_child(args):
    onnx_path, out, seed = args
    x = np.random.default_rng(seed).random((4, 32, 32, 3), dtype=np.float32)
    return str(quantize_onnx(onnx_path, out, x))


def test_two_quantizations_of_one_file_at_once(bundle, tmp_path):
    import multiprocessing

    fp32 = make_predictor(bundle, cache_dir=tmp_path / "cache", export=CountingExport())
    jobs = [(str(fp32.path), str(tmp_path / f"q{i}.onnx"), i) for i in range(2)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        done = pool.map(_quantize_in_child, jobs)
    assert [OnnxPredictor(p).predict(np.zeros((1, 32, 32, 3), np.float32)).shape for p in done] == [(1, 10)] * 2
