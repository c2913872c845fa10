"""The catalogue's output: its columns, one partition's part file, and what committed parts say.

Output folder `OUT` (a Parquet dataset that `pyarrow.dataset` / `pandas.read_parquet(OUT)` reads):
`part-NNNNNN.parquet`, one per partition, each with the columns

    row (int64, 0-based position in the input), the input's carried columns (unchanged),
    pred_index (int32), pred_name (string), confidence (float32),
    p_<class> (float32, one per class, `probability_column`), error (string)

A row that could not be classified has null prediction and probability columns and its reason in
`error`. Files whose names start with `_` or `.` (`_manifest.json`, `_input.parquet`, temporary
files) are not part of the dataset (pyarrow's default `ignore_prefixes`).

A part file is written to a hidden temporary sibling and renamed into place (`galaxy_core.io.
atomic_path`): it exists whole or not at all, so its presence is the partition's done-marker. Its
Parquet key-value metadata holds the partition's summary (`SUMMARY_KEY`: rows, errors, class
counts), read back without reading the rows (`read_summary`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from galaxy_core.io import atomic_path

PART_PREFIX = "part-"
PART_PATTERN = re.compile(r"^part-(\d{6})\.parquet$")
SUMMARY_KEY = b"galaxy_catalog_summary"
PREDICTION_COLUMNS = ("pred_index", "pred_name", "confidence")
ROW, ERROR = "row", "error"


def probability_column(class_name: str) -> str:
    """The output column of a class's probability: `p_` + the name in lower snake case.

    Example:
        >>> probability_column("In-between Round Smooth")
        'p_in_between_round_smooth'
    """
    return "p_" + re.sub(r"[^0-9a-z]+", "_", class_name.lower()).strip("_")


def output_names(class_names: Sequence[str]) -> list[str]:
    """The columns the catalogue adds to the carried ones (`row` first, `error` last)."""
    return [ROW, *PREDICTION_COLUMNS, *(probability_column(c) for c in class_names), ERROR]


def part_name(index: int) -> str:
    """`part-000042.parquet` for partition 42."""
    return f"{PART_PREFIX}{index:06d}.parquet"


def committed_parts(out: str | os.PathLike) -> list[int]:
    """The partitions whose part file exists in `out` (sorted)."""
    try:
        names = os.listdir(out)
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for m in map(PART_PATTERN.match, names) if m)


def result_table(carried, start: int, results: Sequence[tuple[np.ndarray | None, str | None]],
                 class_names: Sequence[str]):
    """One partition's output rows as a pyarrow Table.

    Args:
        carried: pyarrow Table of the partition's carried columns (n rows, maybe no column).
        start: the input position of its first row.
        results: per row `(float32 (C,) probabilities, None)` or `(None, error message)`, as
            `galaxy_core.inference.classify.classify_each` returns them.
        class_names: the C class names.
    """
    import pyarrow as pa

    n, c = len(results), len(class_names)
    ok = np.array([p is not None for p, _ in results], bool)
    probs = np.zeros((n, c), np.float32)
    if ok.any():
        probs[ok] = np.stack([p for p, _ in results if p is not None]).astype(np.float32)
    index = probs.argmax(axis=1).astype(np.int32)
    missing = ~ok
    names = np.asarray(class_names, dtype=object)[index]
    columns: dict[str, Any] = {ROW: pa.array(np.arange(start, start + n, dtype=np.int64))}
    for name in carried.column_names:
        columns[name] = carried.column(name)
    columns["pred_index"] = pa.array(index, mask=missing)
    columns["pred_name"] = pa.array(names, type=pa.string(), mask=missing)
    columns["confidence"] = pa.array(probs[np.arange(n), index], mask=missing)
    for k, class_name in enumerate(class_names):
        columns[probability_column(class_name)] = pa.array(probs[:, k], mask=missing)
    columns[ERROR] = pa.array([e for _, e in results], type=pa.string())
    return pa.table(columns)


def summarise(table, class_names: Sequence[str]) -> dict[str, Any]:
    """A partition's summary: rows, errors and per-class counts (of its classified rows)."""
    ok = np.asarray(table.column(ERROR).is_null())
    index = table.column("pred_index").to_numpy(zero_copy_only=False)
    counts = np.bincount(index[ok].astype(np.int64), minlength=len(class_names))
    return {"rows": int(table.num_rows), "errors": int((~ok).sum()), "counts": counts.tolist()}


def commit_part(out: str | os.PathLike, index: int, table, summary: dict[str, Any]) -> Path:
    """Write partition `index`'s table to `out/part-NNNNNN.parquet` atomically; returns its path."""
    import pyarrow.parquet as pq

    meta = dict(table.schema.metadata or {})
    meta[SUMMARY_KEY] = json.dumps({"partition": index, **summary}).encode()
    table = table.replace_schema_metadata(meta)
    path = Path(out) / part_name(index)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


def read_summary(out: str | os.PathLike, index: int) -> dict[str, Any]:
    """The summary stored in a committed part file's metadata (its footer only is read)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(Path(out) / part_name(index)).metadata or {}
    return json.loads(meta[SUMMARY_KEY])
