"""Classify image files with a trained run bundle (command line and helpers for the app).

Usage:
    python -m galaxy_core.predict --run runs/NAME [--format text|csv|json] [--top-k K] [--tta] IMAGE...
    python -m galaxy_core.predict --run runs/NAME --labels labels.csv [--format text|json] FILES_OR_FOLDER...

A folder stands for the image files in it. With `--labels` (a CSV of `filename,label_index`, see
`galaxy_core.evaluation.scoring`) the files are scored instead of listed: accuracy, balanced accuracy,
per-class recall and the confusion matrix; unreadable or unlabelled files are reported and left out.

Each file (PNG, JPEG, TIFF, BMP or WebP by content, up to 40 Mpx; grayscale, RGB, RGBA, 8 or 16 bit)
is decoded by `galaxy_core.preprocessing.decode.read_image` to RGB uint8, preprocessed exactly as in training
(`galaxy_core.preprocessing.preprocess.preprocess_image` with the run's config) and classified by the run's model
(`galaxy_core.inference.classify.classify_each`). A file that cannot be read gets a row
with its error and the others are still classified.

Exit status: 0 if every file was classified (and, with --labels, scored), 1 if some failed or
were left out, 2 on a usage, bundle or labels-CSV error, 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from galaxy_core.errors import GalaxyError
from galaxy_core.inference.classify import classify_each, top_k
from galaxy_core.io import progress as _progress
from galaxy_core.models.predictor import BACKENDS, DEFAULT_BACKEND, make_predictor
from galaxy_core.tf_quiet import quiet_tf_logs

FORMATS = ("text", "csv", "json")
SYNTHETIC_WARNING = ("WARNING: this model was trained on SYNTHETIC data (generated images, not Galaxy10 "
                     "DECaLS); its predictions say nothing about real galaxies.")


def classify_files(bundle, paths: Sequence[str | os.PathLike], model=None, batch_size: int = 64,
                   tta: bool = False, progress: bool = False, morphology=None) -> list[dict[str, Any]]:
    """Classify image files with a run bundle's model; unreadable files get an error row.

    Args:
        bundle: a `galaxy_core.bundle.read.RunBundle`.
        paths: image files.
        model: a Keras model or a `galaxy_core.models.predictor` predictor (anything with
            `predict_on_batch`); default `make_predictor(bundle)` (ONNX Runtime, else Keras).
        batch_size: files read, preprocessed and classified at a time (bounds memory).
        tta: average over the 8 rotations/flips.
        progress: progress bar on stderr.
        morphology: the run's morphology classifier to blend in (`RunBundle.load_morphology()`);
            None (default) loads the bundle's own when it has one, False = the CNN alone.

    Returns:
        One dict per path, in order: `file` (str), `predicted_index` (int), `predicted` (class name),
        `confidence` (its probability), `probs` (list of num_classes floats), `error` (None, or the
        message; the other fields are then None).
    """
    cfg = bundle.config
    model = make_predictor(bundle) if model is None else model
    morph = bundle.load_morphology() if morphology is None else (morphology or None)
    paths = [str(p) for p in paths]
    rows: list[dict[str, Any]] = []
    starts: Iterable[int] = _progress(range(0, len(paths), batch_size), desc="classify", unit="batch",
                                      disable=not (progress and len(paths) > batch_size))
    for start in starts:
        block = paths[start:start + batch_size]
        for path, (probs, error) in zip(block, classify_each(model, cfg, block, batch_size, tta, morph)):
            rows.append(_error_row(path, error) if error is not None
                        else _result_row(path, probs, cfg.class_names))
    return rows


def _result_row(path: str, probs: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    k = int(np.argmax(probs))
    return {"file": path, "predicted_index": k, "predicted": class_names[k],
            "confidence": float(probs[k]), "probs": [float(p) for p in probs], "error": None}


def _error_row(path: str, message: str) -> dict[str, Any]:
    return {"file": path, "predicted_index": None, "predicted": None, "confidence": None,
            "probs": None, "error": message}


# --------------------------------------------------------------------------------------------
# Output formats
# --------------------------------------------------------------------------------------------
def format_rows(rows: Sequence[dict[str, Any]], class_names: Sequence[str], fmt: str = "text",
                k: int = 3) -> str:
    """Rows of `classify_files` as text (aligned table), CSV or JSON.

    CSV columns: `file, predicted_index, predicted, confidence, p(<class>) x C, top1, top1_prob, ...,
    error`. JSON: a list of the row dicts, each with `top_k` = `[{"class", "prob"}, ...]`.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}; got {fmt!r}")
    k = max(1, min(int(k), len(class_names)))
    if fmt == "json":
        out = []
        for row in rows:
            ranked = top_k(row["probs"], class_names, k) if row["probs"] is not None else None
            out.append({**row, "top_k": None if ranked is None else [{"class": c, "prob": p} for c, p in ranked]})
        return json.dumps(out, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        tops = [col for j in range(1, k + 1) for col in (f"top{j}", f"top{j}_prob")]
        writer.writerow(["file", "predicted_index", "predicted", "confidence"]
                        + [f"p({name})" for name in class_names] + tops + ["error"])
        for row in rows:
            if row["probs"] is None:
                writer.writerow([row["file"], "", "", ""] + [""] * (len(class_names) + 2 * k) + [row["error"]])
                continue
            ranked = [v for c, p in top_k(row["probs"], class_names, k) for v in (c, f"{p:.6f}")]
            writer.writerow([row["file"], row["predicted_index"], row["predicted"], f"{row['confidence']:.6f}"]
                            + [f"{p:.6f}" for p in row["probs"]] + ranked + [""])
        return buf.getvalue()
    lines = []
    for row in rows:
        if row["probs"] is None:
            lines.append(f"{row['file']}: ERROR {row['error']}")
        else:
            ranked = ", ".join(f"{c} {p:.1%}" for c, p in top_k(row["probs"], class_names, k))
            lines.append(f"{row['file']}: {ranked}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m galaxy_core.predict",
        description="Classify galaxy images with a trained run bundle.",
        epilog="Exit status: 0 all files classified, 1 some files failed, 2 usage or bundle error.")
    parser.add_argument("--run", required=True, help="run bundle folder, e.g. runs/NAME")
    parser.add_argument("--format", choices=FORMATS, default="text",
                        help="output: text (readable, default), csv or json (on stdout)")
    parser.add_argument("--top-k", type=int, default=3, help="most probable classes listed per image (default 3)")
    parser.add_argument("--tta", action="store_true",
                        help="average over the 8 rotations/flips of each image (8x slower)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per model call (default 64)")
    parser.add_argument("--backend", choices=tuple(BACKENDS), default=DEFAULT_BACKEND,
                        help="; ".join(f"{row.name}: {row.help}" for row in BACKENDS.values()))
    parser.add_argument("--cnn-only", action="store_true",
                        help="for a run that blends a morphology classifier into its probabilities "
                             "(the offline demo), use the CNN alone")
    parser.add_argument("--labels", default=None, metavar="CSV",
                        help="score the files against this CSV of filename,label_index (class names "
                             "accepted): accuracy, balanced accuracy, recall, confusion matrix")
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files (PNG, JPEG, TIFF, BMP or WebP) or folders of them")
    return parser


def _check_is_a_bundle(run: str) -> None:
    """A folder with none of a run bundle's members is not a broken run: say what --run takes.

    (`load_bundle`'s own message for an incomplete bundle advises re-training or deleting it,
    right for a damaged run, wrong for e.g. `--run /etc`.)
    """
    from galaxy_core.bundle.schema import REQUIRED_MEMBERS

    folder = Path(run)
    if folder.is_dir() and not any((folder / name).exists() for name in REQUIRED_MEMBERS):
        raise GalaxyError(f"{run!r} is not a run bundle (it has none of {', '.join(REQUIRED_MEMBERS)}); "
                          f"--run takes a folder that train.py wrote, e.g. runs/NAME")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; exit status 0, 1 or 2 (module docstring), 130 on Ctrl-C (no traceback)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C reaches the ONNX export's child process too; it writes atomically, so nothing half
        # made is left, and no failure marker is written: the next predict exports again.
        print("interrupted (nothing was written; run it again to continue)", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    quiet_tf_logs()  # keep TensorFlow's start-up log off stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error("--top-k must be >= 1")
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    if args.labels is not None and args.format == "csv":
        parser.error("--labels prints a score: use --format text or json")
    from galaxy_core.bundle.read import load_bundle
    from galaxy_core.evaluation.scoring import expand_inputs, format_score, read_labels, score_rows

    try:
        _check_is_a_bundle(args.run)
        bundle = load_bundle(args.run)
        labels = None if args.labels is None else read_labels(args.labels, bundle.config.class_names)
        model = make_predictor(bundle, backend=args.backend,  # ONNX Runtime, else Keras
                               log=lambda line: print(line, file=sys.stderr))
        morphology = False if args.cnn_only else bundle.load_morphology()
    except GalaxyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if model.note:
        print(model.note, file=sys.stderr)
    if morphology:
        print(f"probabilities: the CNN's blended with the morphology classifier's (weight "
              f"{bundle.config.morphology_weight:g}; --cnn-only for the CNN alone)", file=sys.stderr)
    if bundle.is_synthetic:
        print(SYNTHETIC_WARNING, file=sys.stdout if args.format == "text" else sys.stderr)
    rows = classify_files(bundle, expand_inputs(args.images), model=model, batch_size=args.batch_size,
                          tta=args.tta, progress=True, morphology=morphology)
    if labels is not None:
        score = score_rows(rows, labels, bundle.config.class_names, labels_dir=os.path.dirname(args.labels) or ".")
        sys.stdout.write(format_score(score, bundle.config.class_names, args.format))
        left_out = len(score["unreadable"]) + len(score["unlabelled"]) + len(score["ambiguous"])
        if left_out or score["n_scored"] == 0:
            print(f"{left_out} of {len(rows)} file(s) left out of the score", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(format_rows(rows, bundle.config.class_names, args.format, args.top_k))
    sys.stdout.flush()
    failed = [row for row in rows if row["error"] is not None]
    if failed:
        print(f"{len(failed)} of {len(rows)} file(s) could not be classified", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
