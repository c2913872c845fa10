"""Benchmark: classification through ONNX Runtime vs Keras, side by side in one run.

Goals (DenseNet201, 256 px, Flatten head, 2 cores): <= 60 ms per image including decoding and
preprocessing, >= 40 images/s in batch predict.

Builds the default recipe's model with random weights (`weights=None`: speed does not depend on
the weights), saves it as `model.keras` in a temporary bundle-like folder, exports `model.onnx`
with `galaxy_core.models.onnx_export.export_model_file` (timed, in a child process) and measures, for both
predictors of `galaxy_core.models.predictor`:

- single image: PNG bytes -> `decode.read_image` -> `preprocess_image` -> `to_model_input` -> predict (one
  image per call; median over `--repeats`);
- batch: `--batch` preprocessed images per call (model only), images/s;
- and checks that the two agree (max |p_onnx - p_keras|).

Also, in the same run:
- `--extra-onnx LABEL=PATH` (repeatable): more ONNX files timed the same way, e.g. an export made
  before `galaxy_core.models.onnx_passes` (the rehearsal bundle's first model.onnx);
- `--int8`: an int8 copy (`galaxy_core.models.quantize.quantize_onnx`: static QDQ, per-channel weights,
  calibrated here on 8 images of the batch) timed the same way, with its disagreement with Keras
  (the opt-in `--backend int8`; it does not keep the 1e-4 agreement);
- the compute floor: the model's multiply-adds (Conv2D + Dense layers, counted from the Keras
  model) at the float32 matrix-multiply rate numpy reaches on this machine.

Usage:
    python bench/bench_predict.py [--backbone DenseNet201] [--size 256] [--head flatten]
                                  [--repeats 20] [--batch 32] [--model PATH.keras] [--onnx PATH]
                                  [--extra-onnx LABEL=PATH ...] [--int8]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


CPU_MS: dict[str, float] = {}  # last median_ms call's CPU time per call (all threads of this process)


def median_ms(fn, repeats: int, warmup: int = 2) -> float:
    """Median wall ms per call; CPU ms per call (process time) goes to CPU_MS["last"].

    On a shared, loaded machine wall time mostly measures the wait for a core; CPU time / cores
    estimates the wall time on idle cores (the "est. idle" columns).
    """
    for _ in range(warmup):
        fn()
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
        cpu.append((time.process_time() - start_cpu) * 1000.0)
    CPU_MS["last"] = statistics.median(cpu)
    return statistics.median(times)


def model_macs(model) -> int:
    """Multiply-adds of one image through the Conv2D (incl. depthwise) and Dense layers of a Keras model."""
    import keras

    def walk(parent):
        for layer in parent.layers:
            yield from walk(layer) if isinstance(layer, keras.Model) else (layer,)

    total = 0
    for layer in walk(model):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            h, w, c = layer.output.shape[1:]
            total += h * w * c * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, keras.layers.Conv2D):
            h, w, c_out = layer.output.shape[1:]
            c_in = layer.input.shape[-1] // layer.groups
            total += h * w * c_out * c_in * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, keras.layers.Dense):
            total += int(layer.input.shape[-1]) * layer.units
    return int(total)


def sgemm_gflops(n: int = 2048, repeats: int = 10) -> float:
    """float32 matrix-multiply rate (GFLOP/s) numpy reaches here, all cores: the compute ceiling."""
    import numpy as np

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="DenseNet201")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--head", default="flatten", choices=("flatten", "gap"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--model", help="an existing .keras file to use instead of building one")
    parser.add_argument("--onnx", help="its existing .onnx export (skips the export)")
    parser.add_argument("--extra-onnx", action="append", default=[], metavar="LABEL=PATH",
                        help="another ONNX file of the same model to time (repeatable)")
    parser.add_argument("--int8", action="store_true",
                        help="also time an int8-quantized copy (measurement only; not 1e-4 exact)")
    args = parser.parse_args(argv)

    import cv2
    import numpy as np

    from galaxy_core.config import Config
    from galaxy_core.models.network import build_model, load_model
    from galaxy_core.models.onnx_export import export_model_file
    from galaxy_core.preprocessing.decode import read_image as read_image_file
    from galaxy_core.inference.probabilities import to_model_input as rescale
    from galaxy_core.models.predictor import KerasPredictor, OnnxPredictor, default_threads
    from galaxy_core.preprocessing.preprocess import preprocess_batch, preprocess_image
    from galaxy_core.models.quantize import quantize_onnx
    from galaxy_core.synthetic import generate_images

    cfg = Config(backbone=args.backbone, image_size=args.size, head=args.head, weights="none")
    work = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    model_path = Path(args.model) if args.model else work / "model.keras"
    if not args.model:
        start = time.perf_counter()
        build_model(cfg).save(model_path)
        print(f"built + saved {cfg.backbone} {cfg.image_size} px {cfg.head}: "
              f"{time.perf_counter() - start:.1f} s, {model_path.stat().st_size / 1e6:.0f} MB")
    if args.onnx:
        onnx_path = Path(args.onnx)
    else:
        start = time.perf_counter()
        onnx_path = export_model_file(model_path, work / "model.onnx")
        child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"ONNX export (child process): {time.perf_counter() - start:.1f} s, "
              f"{onnx_path.stat().st_size / 1e6:.0f} MB, child peak RSS {child_peak:.0f} MB")

    start = time.perf_counter()
    onnx = OnnxPredictor(onnx_path)
    onnx_load = time.perf_counter() - start
    start = time.perf_counter()
    keras_model = load_model(model_path, compile=False)
    keras_pred = KerasPredictor(keras_model)
    keras_load = time.perf_counter() - start

    # One encoded galaxy (PNG, 256x256, synthetic) and a batch of preprocessed ones.
    raw = generate_images(np.arange(max(args.batch, 10)) % 10, 256, seed=0)
    png = cv2.imencode(".png", cv2.cvtColor(raw[0], cv2.COLOR_RGB2BGR))[1].tobytes()
    batch = rescale(preprocess_batch(list(raw[:args.batch]), cfg))

    predictors = [("onnxruntime", onnx)]
    for item in args.extra_onnx:
        label, _, path = item.partition("=")
        predictors.append((f"ort:{label}", OnnxPredictor(path)))
    if args.int8:
        start = time.perf_counter()
        int8_path = quantize_onnx(onnx_path, work / "model.int8.onnx", batch[:8])
        print(f"int8 quantization: {time.perf_counter() - start:.1f} s")
        predictors.append(("ort:int8", OnnxPredictor(int8_path)))
    predictors.append(("keras", keras_pred))
    rows = {}
    for name, predictor in predictors:
        def single():
            x = rescale(preprocess_image(read_image_file(png), cfg))[None]
            return predictor.predict(x)

        cores = default_threads()
        single_ms = median_ms(single, args.repeats)
        single_idle = CPU_MS["last"] / cores
        model_ms = median_ms(lambda: predictor.predict(batch[:1]), args.repeats)
        batch_ms = median_ms(lambda: predictor.predict(batch), max(3, args.repeats // 5), warmup=1)
        batch_idle = len(batch) / (CPU_MS["last"] / cores / 1000.0)
        rows[name] = (single_ms, model_ms, len(batch) / (batch_ms / 1000.0), single_idle, batch_idle)
    decode_ms = median_ms(lambda: rescale(preprocess_image(read_image_file(png), cfg)), args.repeats)
    keras_probs = keras_pred.predict(batch[:8])
    diffs = {name: float(np.abs(p.predict(batch[:8]) - keras_probs).max())
             for name, p in predictors if name != "keras"}
    macs = model_macs(keras_model)
    gflops = sgemm_gflops()

    load = os.getloadavg()
    print(f"load average during the run: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)")
    print(f"\n{cfg.backbone} {cfg.image_size} px, {cfg.head} head, weights=None; "
          f"{default_threads()} cores; load: onnxruntime {onnx_load:.1f} s, keras {keras_load:.1f} s")
    print(f"decode + preprocess alone: {decode_ms:.1f} ms per image")
    print(f"{'backend':<16} {'single incl. decode (ms)':>25} {'model only (ms)':>16} "
          f"{'batch ' + str(args.batch) + ' (img/s)':>18} {'est. idle: single ms':>21} {'batch img/s':>12}")
    for name, (single_ms, model_ms, ips, single_idle, batch_idle) in rows.items():
        print(f"{name:<16} {single_ms:>25.1f} {model_ms:>16.1f} {ips:>18.1f} {single_idle:>21.1f} "
              f"{batch_idle:>12.1f}")
    o, k = rows["onnxruntime"], rows["keras"]
    print(f"ratio keras/onnxruntime (wall): single {k[0] / o[0]:.2f}x, batch {o[2] / k[2]:.2f}x; "
          f"(CPU time): single {k[3] / o[3]:.2f}x, batch {o[4] / k[4]:.2f}x")
    print("est. idle = CPU time per call / cores: the wall time on idle cores if the threads scale")
    print("max |p - p_keras| on 8 images: " + ", ".join(f"{name} {d:.2e}" for name, d in diffs.items()))
    print(f"compute floor: {macs / 1e9:.2f} G multiply-adds per image (Conv2D + Dense); numpy float32 "
          f"matmul here: {gflops:.0f} GFLOP/s -> at least {2 * macs / gflops / 1e6:.1f} ms per image, "
          f"at most {gflops * 1e9 / (2 * macs):.1f} images/s in float32 at that rate")
    print(f"goals (wall): single <= 60 ms: {'met' if o[0] <= 60 else 'NOT met'}; "
          f"batch >= 40 img/s: {'met' if o[2] >= 40 else 'NOT met'}; (est. idle): "
          f"{'met' if o[3] <= 60 else 'NOT met'} / {'met' if o[4] >= 40 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
