"""Benchmark: a run's score on labelled REAL galaxy images (accuracy, balanced accuracy, matrix).

The folder holds images and a `labels.csv` (filename,label_index[,...]; see galaxy_core.evaluation.scoring).
By default it is the development set kept beside the repository, `../shared/real_dev` relative to
the repository root, when present. Those images are for scoring only, never for training.

Usage:
    python bench/bench_real.py RUN [FOLDER] [--tta] [--cnn-only] [--format text|json]

Also prints the run's synthetic test accuracy and wall time from its bundle, for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_FOLDER = ROOT.parent / "shared" / "real_dev"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="run bundle folder, e.g. runs/demo")
    parser.add_argument("folder", type=Path, nargs="?", default=None,
                        help=f"images + labels.csv (default {DEFAULT_FOLDER} when present)")
    parser.add_argument("--labels", type=Path, default=None, help="labels CSV (default FOLDER/labels.csv)")
    parser.add_argument("--tta", action="store_true", help="average over the 8 rotations/flips")
    parser.add_argument("--cnn-only", action="store_true",
                        help="the CNN alone, without the run's morphology classifier (if it has one)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)

    from galaxy_core.bundle.read import load_bundle
    from galaxy_core.errors import GalaxyError
    from galaxy_core.predict import classify_files
    from galaxy_core.evaluation.scoring import expand_inputs, format_score, read_labels, score_rows

    folder = args.folder or DEFAULT_FOLDER
    if not folder.is_dir():
        print(f"error: no folder {folder}; pass one holding images and labels.csv", file=sys.stderr)
        return 2
    try:
        bundle = load_bundle(args.run)
        labels = read_labels(args.labels or folder / "labels.csv", bundle.config.class_names)
        model = bundle.load_model()
        morphology = False if args.cnn_only else bundle.load_morphology()
    except GalaxyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    rows = classify_files(bundle, expand_inputs([folder]), model=model, tta=args.tta,
                          morphology=morphology)
    score = score_rows(rows, labels, bundle.config.class_names)
    seconds = time.perf_counter() - started
    if args.format == "json":
        sys.stdout.write(format_score(score, bundle.config.class_names, "json"))
        return 0
    test = bundle.metrics.get("test_tta") or bundle.metrics["test"]
    print(f"run {args.run}{' (SYNTHETIC training data)' if bundle.is_synthetic else ''}: "
          f"synthetic/own test accuracy {bundle.metrics['test']['accuracy']:.4f} (TTA "
          f"{test['accuracy']:.4f}), build wall time {bundle.run_info.get('wall_time_s', float('nan')):.0f} s "
          f"(training + evaluation, without data generation)")
    blend = (f"CNN + morphology classifier (weight {bundle.config.morphology_weight:g})" if morphology
             else "CNN alone")
    print(f"real images: {folder}{' (TTA)' if args.tta else ''}, {blend}, {seconds:.1f} s to classify")
    sys.stdout.write(format_score(score, bundle.config.class_names, "text"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
