"""An int8 copy of a run's ONNX model: faster, approximate classification (opt-in, never the default).

On a 2-core CPU the float32 DenseNet201 at 256 px costs ~11 G floating-point operations per image,
which no float32 kernel runs in much under 60 ms (BENCHMARKS.md, "Predict"). ONNX Runtime's static
int8 quantization (QDQ format: int8 per-channel weights, uint8 activations with ranges calibrated on
sample images) uses the CPU's integer dot-product instructions and is ~2.5x faster there, but its
probabilities differ from the Keras model's by up to a few 1e-3 instead of < 1e-4. So it is only
used when asked for (`predictor.make_predictor(bundle, backend="int8")`, `predict --backend int8`),
and every int8 file comes with a report of how far it is from the float32 model on images it was
not calibrated on.

Files, beside the float32 export `X.onnx`: `X.int8.onnx` (with its fingerprint sidecar, recording the
SHA-256 of the `X.onnx` it was made from, `galaxy_core.models.fingerprint`) and `X.int8.json` (the
report, with the int8 file's SHA-256). They are rebuilt whenever `X.onnx` is not the file they were
made from. The quantizer runs on a private temporary copy of `X.onnx`. Written atomically
(`galaxy_core.io`).

Example:
    >>> path, report = ensure_int8(Path("runs/NAME/model.onnx"), bundle.read_test_images,
    ...                            bundle.num_test, OnnxPredictor)                   # doctest: +SKIP
    >>> report["top1_agreement"]                                                     # doctest: +SKIP
    0.996
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from galaxy_core.errors import ModelError
from galaxy_core.models.fingerprint import check, file_sha256, seal, stamp

CALIBRATION_IMAGES = 32  # the first test images: activation ranges
CHECK_IMAGES = 256  # the next ones: the agreement report (never the calibration images, if there are more)


def quantize_onnx(onnx_path: str | os.PathLike, out: str | os.PathLike, calibration: np.ndarray) -> Path:
    """Write a static int8 (QDQ) copy of a float32 ONNX classifier.

    Args:
        onnx_path: float32 model, input "image" float32 `(N, S, S, 3)` in [0, 1].
        out: the `.onnx` file to write (atomically).
        calibration: float32 `(K, S, S, 3)` in [0, 1], K >= 1: images whose activations set the
            uint8 ranges (a few dozen typical images of the run).

    Returns:
        `out`.

    Raises:
        ModelError: no calibration images, or ONNX Runtime's quantizer failed.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from galaxy_core.io import atomic_path

    calibration = np.asarray(calibration, dtype=np.float32)
    if calibration.ndim != 4 or len(calibration) == 0:
        raise ModelError(f"int8 calibration needs images float32 (K, S, S, 3) with K >= 1; got shape "
                         f"{calibration.shape}")

    class Images(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"image": calibration[i:i + 1]} for i in range(len(calibration))])

        def get_next(self):
            return next(self.items, None)

    out = Path(out)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's "consider pre-processing" warnings on the root logger
    # The quantizer writes `<input>-inferred.onnx` beside its input: it works on a private copy, so two
    # quantizations of one file at once (two `predict --backend int8`) never share that file.
    with tempfile.TemporaryDirectory(prefix="galaxy-int8-") as private:
        source, result = Path(private) / "float32.onnx", Path(private) / "int8.onnx"
        try:
            shutil.copyfile(onnx_path, source)
            source_sha256 = file_sha256(source)  # the fingerprint of exactly what is quantized
            quantize_static(str(source), str(result), Images(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            proto = onnx.load(str(result))
            stamp(proto, source_sha256, calibration.shape[1:])
            with atomic_path(out) as tmp:
                onnx.save_model(proto, str(tmp))
        except Exception as err:  # noqa: BLE001 - the quantizer raises anything; the caller needs one type
            raise ModelError(f"int8 quantization of {onnx_path} failed: {type(err).__name__}: {err}") from err
        finally:
            root.setLevel(level)
    seal(out, source_sha256, calibration.shape[1:])
    return out


def agreement(reference: np.ndarray, approx: np.ndarray) -> dict:
    """How far approximate probabilities are from the reference ones.

    Args:
        reference, approx: float32 `(N, C)` probabilities of the same N images.

    Returns:
        `{"n_images", "top1_agreement" (share of images with the same most probable class),
        "max_abs_diff", "mean_abs_diff"}`.

    Example:
        >>> agreement(np.array([[0.9, 0.1], [0.4, 0.6]]), np.array([[0.8, 0.2], [0.6, 0.4]]))["top1_agreement"]
        0.5
    """
    reference, approx = np.asarray(reference, np.float64), np.asarray(approx, np.float64)
    if reference.shape != approx.shape or reference.ndim != 2:
        raise ValueError(f"need two (N, C) arrays of one shape; got {reference.shape} and {approx.shape}")
    diff = np.abs(reference - approx)
    return {"n_images": int(len(reference)),
            "top1_agreement": float(np.mean(reference.argmax(1) == approx.argmax(1))) if len(reference) else 0.0,
            "max_abs_diff": float(diff.max()) if diff.size else 0.0,
            "mean_abs_diff": float(diff.mean()) if diff.size else 0.0}


def int8_paths(onnx_path: Path) -> tuple[Path, Path]:
    """`(X.int8.onnx, X.int8.json)` beside the float32 export `X.onnx`."""
    stem = onnx_path.with_suffix("")
    return stem.with_name(stem.name + ".int8.onnx"), stem.with_name(stem.name + ".int8.json")


def ensure_int8(onnx_path: str | os.PathLike, read_images: Callable[[list[int]], np.ndarray], num_images: int,
                load: Callable[[Path], object], log: Callable[[str], None] | None = None) -> tuple[Path, dict]:
    """The int8 copy of a float32 export and its agreement report, made once and reused.

    Args:
        onnx_path: the float32 export (`predictor.ensure_onnx`).
        read_images: rows -> uint8 `(k, S, S, 3)` preprocessed images (a bundle's `read_test_images`).
        num_images: how many rows `read_images` has (a bundle's `num_test`).
        load: path -> an object with `.predict(x)` (`predictor.OnnxPredictor`).
        log: told (one line) when a quantization starts.

    Returns:
        `(int8 path, report)`; the report has `agreement`'s keys plus "calibration_images" and
        "check_overlaps_calibration" (True only for runs with at most `CALIBRATION_IMAGES` images).

    Raises:
        ModelError: no images to calibrate on, or the quantization failed.
    """
    from galaxy_core.inference.probabilities import to_model_input
    from galaxy_core.io import write_json

    onnx_path = Path(onnx_path)
    out, report_path = int8_paths(onnx_path)
    source = file_sha256(onnx_path)
    if check(out, source) is None:  # made from exactly this float32 file, unchanged since
        try:
            report = json.loads(report_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            report = None
        if isinstance(report, dict) and report.get("int8_sha256") == file_sha256(out):
            return out, report
    if num_images < 1:
        raise ModelError(f"int8 needs the run's test images to calibrate on; {onnx_path.parent} has none")
    n_cal = min(CALIBRATION_IMAGES, num_images)
    check_rows = list(range(n_cal, min(num_images, n_cal + CHECK_IMAGES))) or list(range(n_cal))
    if log is not None:
        log(f"making an int8 copy of {onnx_path} (once; calibrated on {n_cal} test images)")
    quantize_onnx(onnx_path, out, to_model_input(read_images(list(range(n_cal)))))
    held_out = to_model_input(read_images(check_rows))
    report = agreement(load(onnx_path).predict(held_out), load(out).predict(held_out))
    report.update(calibration_images=n_cal, check_overlaps_calibration=check_rows[0] < n_cal,
                  int8_sha256=file_sha256(out))
    write_json(report_path, report)
    return out, report


def describe(report: dict) -> str:
    """One line: what the int8 report says, for the CLI and the app."""
    overlap = " (the calibration images: this run has few)" if report.get("check_overlaps_calibration") else ""
    return (f"note: int8 model (approximate): same top class as float32 on "
            f"{report['top1_agreement']:.1%} of {report['n_images']} test images{overlap}, "
            f"max |p_int8 - p_float32| = {report['max_abs_diff']:.1e}")
