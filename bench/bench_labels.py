"""Benchmark: label efficiency of transfer learning, on SYNTHETIC images only (issue 27, item 5).

Zoobot's question: how accurate is a classifier of new classes trained on a few labels per class,
from scratch against started from a run trained on Galaxy10-like classes (`--init-from`)?

The task is NOT Galaxy10's ten classes: three groups of the synthetic generator's classes,
"smooth" (Round Smooth, In-between Round Smooth, Cigar Shaped Smooth), "spiral" (Barred, Unbarred
Tight, Unbarred Loose Spiral) and "edge-on" (without and with bulge). The parent run is a SmallCNN
trained here on the ten synthetic Galaxy10 classes (`--parent-images`). For each number of labels
per class and each seed, a training set is generated (training split = that many per class: the
file holds them plus the validation and test fractions), trained with `train_run` (the product's
one training path, labelled data in the format `galaxy_core.preprocessing.labelled` writes), from
scratch and with `init_from` the parent, same config otherwise; both are scored on one fixed
held-out set of generated images (`--test-per-class` per class, never trained on).

What it tells: how much a related pretraining task helps at each label count, on images from the
same generator. What it does not tell: anything about real galaxies, or pretraining on real
Galaxy10 (the generator's classes are easier and more alike than real ones).

Usage:
    python bench/bench_labels.py [--sizes 25 50 100 200] [--seeds 3] [--out bench/results/labels]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import h5py  # noqa: E402
import numpy as np  # noqa: E402

GROUPS = {"smooth": (2, 3, 4), "spiral": (5, 6, 7), "edge-on": (8, 9)}
SIZE = 64


def config(**changes):
    from galaxy_core.config import Config

    return Config(image_size=SIZE, backbone="SmallCNN", weights="none", head="gap", dense_units=64,
                  epochs=8, batch_size=32, patience=8, learning_rate=1e-3, flips=True,
                  explain_errors=0, explain_correct=0, faithfulness_steps=0, split_by="random",
                  class_weights=False).replace(**changes)


def task_images(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` images of each group (its generator classes drawn in turn): uint8 images, int labels."""
    from galaxy_core.synthetic import generate_images

    rng = np.random.default_rng(seed)
    labels, sources = [], []
    for g, members in enumerate(GROUPS.values()):
        labels += [g] * per_class
        sources += list(rng.choice(members, per_class))
    return generate_images(sources, SIZE, seed), np.asarray(labels, np.int64)


def write_task(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """A labelled Galaxy10-format file (as `preprocessing.labelled` writes it), marked synthetic."""
    with h5py.File(path, "w") as f:
        f["images"], f["ans"] = images, labels.astype(np.uint8)
        for key in ("ra", "dec", "redshift", "pxscale"):
            f[key] = np.full(len(labels), np.nan)
        f.attrs["class_names"] = json.dumps(list(GROUPS))
        f.attrs["synthetic"], f.attrs["labelled"] = True, True
    return path


def accuracy(bundle_dir: Path, images: np.ndarray, labels: np.ndarray) -> float:
    from galaxy_core.bundle.read import load_bundle
    from galaxy_core.inference.probabilities import predict_probs
    from galaxy_core.preprocessing.preprocess import preprocess_batch

    run = load_bundle(bundle_dir)
    probs = predict_probs(run.load_model(), preprocess_batch(images, run.config), batch_size=128)
    return float((probs.argmax(axis=1) == labels).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--parent-images", type=int, default=1500)
    parser.add_argument("--test-per-class", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "labels")
    args = parser.parse_args()

    from galaxy_core.synthetic import write_synthetic_dataset
    from galaxy_core.tf_quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    from galaxy_core.training.train import train_run

    out, quiet = args.out, (lambda text: None)
    out.mkdir(parents=True, exist_ok=True)
    parent = out / "runs" / "parent"
    if not parent.exists():
        data = write_synthetic_dataset(out / "parent.h5", args.parent_images, size=SIZE, seed=7, progress=False)
        started = time.perf_counter()
        train_run(config(split_by="random"), data, parent, cache_dir=out / "cache", progress=False, on_log=quiet)
        print(f"parent run (10 synthetic Galaxy10 classes, {args.parent_images} images): "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    test_images, test_labels = task_images(args.test_per_class, seed=999)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {(r["per_class"], r["seed"], r["start"]) for r in results}
    frac = 1 - config().val_fraction - config().test_fraction
    for n in args.sizes:
        for seed in range(args.seeds):
            images, labels = task_images(int(np.ceil(n / frac)), seed=100 * n + seed)
            data = write_task(out / f"task-{n}-{seed}.h5", images, labels)
            for start, cfg in (("scratch", config(seed=seed)), ("init-from", config(seed=seed, init_from=str(parent)))):
                if (n, seed, start) in done:
                    continue
                run_dir = out / "runs" / f"{start}-{n}-{seed}"
                started = time.perf_counter()
                train_run(cfg, data, run_dir, cache_dir=out / "cache", progress=False, on_log=quiet)
                row = {"per_class": n, "seed": seed, "start": start, "seconds": time.perf_counter() - started,
                       "accuracy": accuracy(run_dir, test_images, test_labels)}
                print(row, flush=True)
                results.append(row)
                results_path.write_text(json.dumps(results, indent=1))
    plot(results, out / "label_efficiency.png")
    return 0


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for start, colour in (("scratch", "tab:orange"), ("init-from", "tab:blue")):
        rows = [r for r in results if r["start"] == start]
        sizes = sorted({r["per_class"] for r in rows})
        accs = [[r["accuracy"] for r in rows if r["per_class"] == n] for n in sizes]
        mean = [np.mean(a) for a in accs]
        ax.plot(sizes, mean, "o-", color=colour, label=f"{start} (mean of {len(accs[0])} seeds)")
        for n, a in zip(sizes, accs):
            ax.scatter([n] * len(a), a, color=colour, alpha=0.35, s=14)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training labels per class")
    ax.set_ylabel("held-out accuracy (3 classes)")
    ax.set_title("Label efficiency on SYNTHETIC images (not real galaxies)", fontsize=10)
    ax.axhline(1 / 3, color="grey", lw=0.8, ls=":")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
