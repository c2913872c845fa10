"""Scoring a run on labelled images: a labels CSV, files matched to it, accuracy and the matrix.

A labels CSV names each image's true class:

```
filename,label_index            <- header optional; extra columns are ignored
spiral_01.png,6
m51.jpg,Unbarred Loose Spiral   <- a class name (any case) instead of the index
```

Without a header the first column is the file name and the second the label. With one, the file
column is `filename` (or `file`, `path`, `image`) and the label column `label_index` (or `label`,
`class`, `class_name`, `ans`), so the `labels.csv` of the real development set (filename,
label_index, class_name, source, licence) reads as is. A CSV row names a file by the path it gives:
`dA/x.png` is the file `x.png` in a folder `dA` (relative to the CSV's folder, or the end of an
input's path), `x.png` any input named so. A CSV name that fits several inputs (two `x.png` in
different folders) labels none of them: they are left out and reported as ambiguous
(`match_files`).

`score_rows` joins a labels mapping with classification rows (`galaxy_core.predict.classify_files`
rows, or the app's Classify uploads) and scores the labelled, readable ones; a file that could not be
read, a file without a label and a label without a file are listed, never an error.

SCORE (the dict every function here returns; JSON-serialisable):

```
{
  "n_files": int,               # files given
  "n_scored": int,              # readable and labelled: the ones in the metrics
  "metrics": METRICS | None,    # galaxy_core.evaluation.metrics.compute_metrics of the scored files
                                # (None when nothing could be scored)
  "rows": [{"file", "label_index", "label", "predicted_index", "predicted", "confidence",
            "correct"}],        # one per scored file, in input order
  "unreadable": [{"file", "error"}],
  "unlabelled": [str],          # files with no row in the labels CSV
  "ambiguous": [{"file", "name"}],  # files whose CSV name also fits another input: left out
  "missing": [str],             # labels CSV names with no such file among the inputs
}
```
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from galaxy_core.errors import GalaxyError

# Image file endings a folder is expanded to (lower case; what OpenCV decodes).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
FILE_COLUMNS = ("filename", "file", "path", "image")
LABEL_COLUMNS = ("label_index", "label", "class", "class_name", "ans")
SCORE_FORMATS = ("text", "json")


class LabelsError(GalaxyError, ValueError):
    """A labels CSV cannot be read or holds an invalid row (the message names the row)."""


# --------------------------------------------------------------------------------------------
# Labels CSV
# --------------------------------------------------------------------------------------------
def parse_label(value: str, class_names: Sequence[str]) -> int:
    """A label cell as a class index: an integer `0..C-1` or a class name (case-insensitive).

    Example: `parse_label("round smooth", CLASS_NAMES) == 2`, `parse_label("2", CLASS_NAMES) == 2`.

    Raises:
        LabelsError: out of range, or not one of the class names (they are listed).
    """
    text = str(value).strip()
    try:
        index = int(text)
    except ValueError:
        index = None
    if index is not None:
        if not 0 <= index < len(class_names):
            raise LabelsError(f"label {text!r} is not a class index in 0..{len(class_names) - 1}")
        return index
    by_name = {str(name).casefold(): i for i, name in enumerate(class_names)}
    if text.casefold() in by_name:
        return by_name[text.casefold()]
    listed = ", ".join(f"{i} {name}" for i, name in enumerate(class_names))
    raise LabelsError(f"unknown class {text!r}; use an index 0..{len(class_names) - 1} or one of "
                      f"the names (any case): {listed}")


def read_labels(source: str | os.PathLike | bytes, class_names: Sequence[str]) -> dict[str, int]:
    """Read a labels CSV: file name -> class index.

    Args:
        source: a path to the CSV file, or its bytes (an upload). UTF-8, a BOM is accepted.
        class_names: the run's C class names (labels may be given by name).

    Returns:
        `{file path as the CSV gives it (`label_key`: `/` separators): label index}` in the CSV's
        order; `match_files` matches them to files.

    Raises:
        LabelsError: unreadable file, no rows, a row without a file or label, an unknown class or
            index, or one file name given two different labels. The message names the row.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        what, raw = "labels CSV", bytes(source)
    else:
        what = f"labels CSV {str(source)!r}"
        try:
            raw = Path(source).read_bytes()
        except OSError as err:
            raise LabelsError(f"Cannot read {what}: {err.strerror or err}") from err
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise LabelsError(f"{what} is not UTF-8 text (byte {err.start}); save it as UTF-8 CSV") from err
    rows = _csv_rows(text, what)
    if not rows:
        raise LabelsError(f"{what} has no rows; write one `filename,label_index` row per image")
    file_col, label_col = 0, 1
    header = [cell.strip().casefold() for cell in rows[0][1]]
    if any(name in header for name in FILE_COLUMNS + LABEL_COLUMNS):
        file_col = _column(header, FILE_COLUMNS, what, "file")
        label_col = _column(header, LABEL_COLUMNS, what, "label")
        rows = rows[1:]
        if not rows:
            raise LabelsError(f"{what} has a header but no rows")
    labels: dict[str, int] = {}
    for number, row in rows:
        if len(row) <= max(file_col, label_col) or not row[file_col].strip() or not row[label_col].strip():
            raise LabelsError(f"{what} row {number} ({','.join(row)!r}) needs a file name and a label")
        name = label_key(row[file_col])
        try:
            label = parse_label(row[label_col], class_names)
        except LabelsError as err:
            raise LabelsError(f"{what} row {number}: {err}") from None
        if labels.get(name, label) != label:
            raise LabelsError(f"{what} row {number}: {name!r} is labelled both {labels[name]} and "
                              f"{label}; keep one row per file")
        labels[name] = label
    return labels


def _csv_rows(text: str, what: str) -> list[tuple[int, list[str]]]:
    """Non-empty, non-comment rows of CSV text with their line numbers; csv errors as LabelsError."""
    reader = csv.reader(io.StringIO(text))
    rows = []
    try:
        for row in reader:
            if any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#"):
                rows.append((reader.line_num, row))
    except csv.Error as err:
        limit = csv.field_size_limit()
        hint = (f"a field is longer than {limit // 1024} KiB: is this a labels CSV of filename,label_index "
                f"rows (an unclosed quote makes the rest of the file one field)?" if "field limit" in str(err)
                else "it is not valid CSV")
        raise LabelsError(f"{what} cannot be read at line {reader.line_num}: {hint} ({err})") from None
    return rows


def label_key(cell: str) -> str:
    """A labels CSV's file cell as the key `read_labels` returns: `/` separators, no `./` prefix.

    Example: `label_key(" .\\dA\\x.png ") == "dA/x.png"`.
    """
    text = str(cell).strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return text


def _column(header: list[str], names: Sequence[str], what: str, kind: str) -> int:
    for name in names:
        if name in header:
            return header.index(name)
    raise LabelsError(f"{what} has a header without a {kind} column; name it one of {list(names)}")


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def expand_inputs(paths: Iterable[str | os.PathLike]) -> list[str]:
    """Files as given, folders replaced by their image files (sorted, not recursive).

    A path that does not exist is kept, so that the caller reports it as unreadable.
    Example: `expand_inputs(["dev/", "extra.png"])` -> `["dev/a.png", "dev/b.jpg", "extra.png"]`.
    """
    out: list[str] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            out += sorted(str(p) for p in path.iterdir()
                          if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(str(path))
    return out


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------
def match_files(files: Sequence[str], labels: Mapping[str, int],
                labels_dir: str | os.PathLike | None = None) -> tuple[dict[int, str], dict[int, str]]:
    """Which labels CSV name labels which file, by the path the CSV gives.

    A CSV name labels a file when (1) relative to `labels_dir` (the CSV's folder) it is that very
    file, or else (2) its folders and name are the end of the file's path (`dA/x.png` fits
    `data/dA/x.png`, not `dB/x.png`; the longest such name wins), or (3) the file is a bare name
    (an upload, `labels_dir` None) equal to the CSV name's last part. A name that would label several files labels
    none: they are ambiguous.

    Args:
        files: the file paths (or upload names) as given.
        labels: `read_labels`'s mapping (keys are CSV paths).
        labels_dir: the CSV's folder (None for an upload: rule 1 is skipped).

    Returns:
        `(matched, ambiguous)`: file index -> CSV name, for the files labelled and for those left
        out because their CSV name also fits another file (or several CSV names fit equally).
    """
    by_base: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for key in labels:
        parts = _parts(key)
        if parts:
            by_base.setdefault(parts[-1], []).append((key, parts))
    exact = {}
    if labels_dir is not None:
        for key in labels:
            exact.setdefault(os.path.normpath(os.path.join(os.path.abspath(labels_dir), key)), key)
    chosen: dict[int, str] = {}
    ambiguous: dict[int, str] = {}
    for i, file in enumerate(files):
        if labels_dir is not None and (key := exact.get(os.path.normpath(os.path.abspath(file)))) is not None:
            chosen[i] = key
            continue
        # A file on disk is matched by its whole path (a bare name given on the command line is a
        # file of the working folder); an upload's bare name by the CSV name's last part.
        parts = _parts(os.path.abspath(file) if labels_dir is not None else file)
        fits = [(len(kp), key) for key, kp in by_base.get(parts[-1] if parts else "", [])
                if (len(kp) <= len(parts) and parts[-len(kp):] == kp) or (labels_dir is None and len(parts) == 1)]
        if not fits:
            continue
        longest = max(n for n, _ in fits)
        best = [key for n, key in fits if n == longest]
        if len(best) == 1:
            chosen[i] = best[0]
        else:
            ambiguous[i] = best[0]
    users: dict[str, list[int]] = {}
    for i, key in chosen.items():
        users.setdefault(key, []).append(i)
    for key, indices in users.items():
        if len({os.path.normpath(os.path.abspath(files[i])) for i in indices}) > 1:
            for i in indices:
                ambiguous[i] = chosen.pop(i)
    return chosen, ambiguous


def _parts(path: str) -> tuple[str, ...]:
    return tuple(p for p in str(path).replace("\\", "/").split("/") if p not in ("", "."))


def score_rows(rows: Sequence[Mapping[str, Any]], labels: Mapping[str, int],
               class_names: Sequence[str], labels_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Score classification rows against a labels mapping (the SCORE dict of the module docstring).

    Args:
        rows: one per file, with `file` (path or name), `probs` (C floats, or None) and `error`
            (None, or why the file could not be read), as `galaxy_core.predict.classify_files`
            returns them.
        labels: CSV path -> class index, from `read_labels`; matched to the files by `match_files`.
        class_names: the C class names.
        labels_dir: the labels CSV's folder (CSV paths relative to it), None for an upload.

    Returns:
        SCORE: files that are readable and labelled are scored; the rest are listed.
    """
    from galaxy_core.evaluation.metrics import compute_metrics

    files = [str(row["file"]) for row in rows]
    chosen, ambiguous_at = match_files(files, labels, labels_dir)
    scored, y_true, probs = [], [], []
    unreadable, unlabelled, ambiguous = [], [], []
    for i, row in enumerate(rows):
        if row.get("error") is not None or row.get("probs") is None:
            unreadable.append({"file": files[i], "error": str(row.get("error"))})
            continue
        if i in ambiguous_at:
            ambiguous.append({"file": files[i], "name": ambiguous_at[i]})
            continue
        if i not in chosen:
            unlabelled.append(files[i])
            continue
        p = np.asarray(row["probs"], dtype=np.float64)
        truth, k = int(labels[chosen[i]]), int(np.argmax(p))
        y_true.append(truth)
        probs.append(p)
        scored.append({"file": files[i], "label_index": truth, "label": class_names[truth],
                       "predicted_index": k, "predicted": class_names[k],
                       "confidence": float(p[k]), "correct": k == truth})
    metrics = compute_metrics(y_true, np.stack(probs), class_names) if scored else None
    used = set(chosen.values()) | set(ambiguous_at.values())
    return {"n_files": len(rows), "n_scored": len(scored), "metrics": metrics, "rows": scored,
            "unreadable": unreadable, "unlabelled": unlabelled, "ambiguous": ambiguous,
            "missing": [name for name in labels if name not in used]}


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------
def format_score(score: Mapping[str, Any], class_names: Sequence[str], fmt: str = "text") -> str:
    """A SCORE dict as readable text (summary, per-class recall, confusion matrix, problems) or JSON."""
    from galaxy_core.io import dumps_json

    if fmt not in SCORE_FORMATS:
        raise ValueError(f"format must be one of {SCORE_FORMATS}; got {fmt!r}")
    if fmt == "json":
        return dumps_json(score) + "\n"
    m = score["metrics"]
    lines = [f"scored {score['n_scored']} of {score['n_files']} file(s)"]
    if m is None:
        lines.append("nothing to score: no file was both readable and labelled")
    else:
        correct = sum(row["correct"] for row in score["rows"])
        lines.append(f"accuracy {m['accuracy']:.4f} ({correct}/{m['n']})  balanced accuracy "
                     f"{m['balanced_accuracy']:.4f}  macro F1 {m['macro_f1']:.4f}")
        width = max(len(str(c)) for c in class_names)
        lines += ["", f"  {'class':<{width}}  recall  support"]
        for name in class_names:
            row = m["per_class"][str(name)]
            recall = f"{row['recall']:6.2f}" if row["support"] else "     -"
            lines.append(f"  {name:<{width}}  {recall}  {row['support']:7d}")
        cm = m["confusion_matrix"]
        cell = max(4, max(len(str(v)) for r in cm for v in r) + 1)
        lines += ["", "Confusion matrix (rows = true, columns = predicted):",
                  "     " + "".join(f"{j:>{cell}}" for j in range(len(cm)))]
        lines += [f"  {i:>3}" + "".join(f"{v:>{cell}}" for v in r) + f"   {class_names[i]}"
                  for i, r in enumerate(cm)]
    for item in score["unreadable"]:
        lines.append(f"left out (unreadable): {item['file']}: {item['error']}")
    for name in score["unlabelled"]:
        lines.append(f"left out (no label in the CSV): {name}")
    for item in score.get("ambiguous", []):
        lines.append(f"left out (ambiguous: the CSV's {item['name']!r} fits more than one file; give its "
                     f"folder in the CSV): {item['file']}")
    if score["missing"]:
        lines.append(f"labelled but not among the files ({len(score['missing'])}): "
                     + ", ".join(score["missing"]))
    return "\n".join(lines) + "\n"
