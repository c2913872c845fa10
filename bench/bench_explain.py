"""Per-image latency of the explanation methods on a DenseNet201 classifier (random weights).

Measures, for one image at a time (N = 1):
  * the compiled engine (default): first call (includes tracing the tf.function) and steady state
    (median of --repeats later calls, new image each time);
  * the tf-keras-vis engine: building the visualizers (clones the model once), first call and
    steady state. SmoothGrad through tf-keras-vis runs one eager model call per sample.
  * a faithfulness pair (deletion + insertion, --steps steps: 2 * (steps + 1) forward passes).

Usage: python bench/bench_explain.py [--size 256] [--repeats 3] [--engines compiled tf-keras-vis]
Model: galaxy_core.models.network.build_model (flat DenseNet201 + Flatten -> Dense(1024) -> Dropout ->
Dense(10, softmax)), weights none. Prints a table and, with --json PATH, writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from galaxy_core.errors import GalaxyError  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(fn, images, repeats: int) -> dict:
    """First call on images[0], then the median of `repeats` calls on the next images."""
    first = timed(lambda: fn(images[:1]))
    steady = [timed(lambda i=i: fn(images[i:i + 1])) for i in range(1, repeats + 1)]
    return {"first_s": round(first, 3), "steady_s": round(statistics.median(steady), 3),
            "steady_all_s": [round(v, 3) for v in steady]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="DenseNet201")
    parser.add_argument("--head", default=None, help="flatten or gap (default: Config)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smooth-samples", type=int, default=20)
    parser.add_argument("--smooth-batch", type=int, default=20, help="noisy images per gradient call")
    parser.add_argument("--steps", type=int, default=20, help="faithfulness steps")
    parser.add_argument("--engines", nargs="+", default=["compiled", "tf-keras-vis"])
    parser.add_argument("--skip-tfkv-smoothgrad", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except GalaxyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def run(args) -> int:
    import tensorflow as tf

    from galaxy_core import explain
    from galaxy_core.config import Config
    from galaxy_core.explain._engine import model_functions
    from galaxy_core.models.network import build_model, feature_map_layer

    cfg = Config(backbone=args.backbone, weights="none", image_size=args.size,
                 **({"head": args.head} if args.head else {}))
    results: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                                f"TF {tf.__version__}, load {os.getloadavg()[0]:.1f}",
                     "backbone": cfg.backbone, "head": cfg.head, "size": cfg.image_size}
    start = time.perf_counter()
    model = build_model(cfg, weights=None)
    results["build_model_s"] = round(time.perf_counter() - start, 2)
    results["feature_layer"] = feature_map_layer(model).name
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.repeats + 1, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    cls = np.array([3])
    print(f"model built in {results['build_model_s']} s; feature layer {results['feature_layer']}",
          flush=True)

    for engine in args.engines:
        row: dict = {}
        if engine == "tf-keras-vis":
            row["build_visualizers_s"] = round(timed(lambda: model_functions(model).visualizers()), 2)
            print(f"{engine:13s} build visualizers (clone + ReplaceToLinear) {row['build_visualizers_s']} s",
                  flush=True)
        methods = {
            "gradcam": lambda x: explain.gradcam_map(model, x, cls, engine=engine),
            "saliency": lambda x: explain.saliency_map(model, x, cls, engine=engine),
            "gradcam_plus_plus": lambda x: explain.gradcam_plus_plus_map(model, x, cls, engine=engine),
            f"smoothgrad_{args.smooth_samples}": lambda x: explain.smoothgrad_map(
                model, x, cls, samples=args.smooth_samples, batch_size=args.smooth_batch, engine=engine),
        }
        for name, fn in methods.items():
            if engine == "tf-keras-vis" and name.startswith("smoothgrad"):
                if args.skip_tfkv_smoothgrad:
                    continue
                row[name] = {"steady_s": round(timed(lambda: fn(images[1:2])), 3), "note": "one call"}
            else:
                row[name] = measure(fn, images, args.repeats)
            print(f"{engine:13s} {name:20s} {row[name]}", flush=True)
        results[engine] = row

    heat = explain.gradcam_map(model, images, np.full(len(images), 3))

    def pair(x):
        explain.faithfulness_scores(model, x, heat[:1], cls, steps=args.steps, batch_size=2 * (args.steps + 1))

    results["faithfulness_pair"] = measure(pair, images, args.repeats)
    print(f"faithfulness pair ({args.steps} steps) {results['faithfulness_pair']}", flush=True)
    results["load_after"] = round(os.getloadavg()[0], 1)
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
