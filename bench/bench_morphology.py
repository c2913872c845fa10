"""Benchmark: the cost of the morphology classifier, side by side with the CNN, in one run.

Times, on N SYNTHETIC 256 px cutouts (generated here, `galaxy_core.synthetic`):
1. the morphology statistics (`galaxy_core.morphology.statistics.features_batch`), per image;
2. the fit of the boosting classifier on them (`MorphologyClassifier.fit`);
3. its probabilities from the statistics, per image;
4. with a run bundle (`--run`): classifying the same images as files with the run's CNN alone and
   with the blend (`galaxy_core.predict.classify_files`, morphology=False / the bundle's own).

Usage:
    python bench/bench_morphology.py [--n 500] [--run runs/demo] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what `platform` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def best_of(repeats: int, fn) -> tuple[float, object]:
    """The fastest of `repeats` calls (seconds) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="synthetic images (default 500)")
    parser.add_argument("--run", type=Path, default=None, help="a run bundle with a morphology classifier")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per timing, fastest kept (default 3)")
    args = parser.parse_args(argv)

    import cv2

    from galaxy_core.morphology.statistics import features_batch
    from galaxy_core.morphology.classifier import MorphologyClassifier
    from galaxy_core.synthetic import generate_images, make_labels

    labels = make_labels(args.n, seed=0)
    images = generate_images(labels, size=256, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"machine: {cpu_name()}, {os.cpu_count()} cores; "
              f"{args.n} SYNTHETIC 256 px images; fastest of {args.repeats}")
        seconds, feats = best_of(args.repeats, lambda: features_batch(images))
        print(f"morphology statistics: {1000 * seconds / args.n:.2f} ms/image ({seconds:.2f} s)")
        seconds, clf = best_of(1, lambda: MorphologyClassifier.fit(feats, labels, 10, seed=0))
        print(f"boosting fit on {args.n} images: {seconds:.2f} s")
        seconds, _ = best_of(args.repeats, lambda: clf.predict_features(feats))
        print(f"boosting probabilities: {1000 * seconds / args.n:.3f} ms/image")
        if args.run is None:
            return 0

        from galaxy_core.bundle.read import load_bundle
        from galaxy_core.predict import classify_files

        bundle = load_bundle(args.run)
        if not bundle.has_morphology:
            print(f"error: {args.run} has no morphology classifier (config morphology_weight 0)", file=sys.stderr)
            return 2
        folder = Path(tmp) / "files"
        folder.mkdir()
        paths = []
        for i, image in enumerate(images):
            paths.append(folder / f"{i:05d}.png")
            cv2.imwrite(str(paths[-1]), image[..., ::-1])
        model, morph = bundle.load_model(), bundle.load_morphology()
        classify_files(bundle, paths[:8], model=model, morphology=morph)  # warm-up (tracing)
        for name, part in (("CNN alone", False), ("blend", morph)):
            seconds, _ = best_of(args.repeats, lambda: classify_files(bundle, paths, model=model, morphology=part))
            print(f"classify_files, {name:9s}: {1000 * seconds / args.n:.2f} ms/image ({seconds:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
