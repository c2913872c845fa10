"""A table of labelled images, `path,label`, read from CSV, Parquet or FITS.

The table form of a labelled image set (`galaxy_core.preprocessing.labelled` turns it into a
Galaxy10-format file). Columns `path` and `label` (any case; other columns are ignored):

- `path`: an image file, absolute or relative to the table's folder.
- `label`: a class name (text) or a class index (whole numbers 0..K-1). Names become classes in
  sorted order unless `class_names` gives the order; indices are named by `class_names`, or
  "class 0", "class 1", ... without it.

CSV and Parquet are read with pyarrow, FITS (a binary table in the first table HDU) with astropy.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "t.csv").write_text("path,label\\na.png,ring\\nb.png,bar\\nc.png,ring\\n")
    >>> t = read_label_table(d / "t.csv")
    >>> t.class_names, t.labels.tolist(), t.paths[0].name
    (('bar', 'ring'), [1, 0, 1], 'a.png')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from galaxy_core.errors import DatasetError

TABLE_SUFFIXES = (".csv", ".parquet", ".pq", ".fits", ".fit", ".fts")


@dataclass(frozen=True)
class LabelTable:
    """Image paths (absolute), int64 labels `(N,)` in `0..K-1`, and the K class names."""

    paths: tuple[Path, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]


def is_label_table(path: str | Path) -> bool:
    """Whether `path` names a table this module reads (by its suffix)."""
    return Path(path).suffix.lower() in TABLE_SUFFIXES


def read_label_table(path: str | Path, class_names: Sequence[str] | None = None) -> LabelTable:
    """Read a `path,label` table (see the module docstring).

    Raises:
        DatasetError: unreadable table, missing columns, empty table, missing labels, indices
            outside `class_names`, names not in `class_names`, a class without any row.
    """
    path = Path(path)
    columns = _read_columns(path)
    lower = {name.strip().lower(): name for name in columns}
    missing = [c for c in ("path", "label") if c not in lower]
    if missing:
        raise DatasetError(f"{path}: the table needs the columns 'path' and 'label' (missing "
                           f"{missing}; found {sorted(columns)}).")
    raw_paths, raw_labels = columns[lower["path"]], columns[lower["label"]]
    if len(raw_paths) == 0:
        raise DatasetError(f"{path}: the table has no rows.")
    empty = [i for i, (p, lab) in enumerate(zip(raw_paths, raw_labels)) if _blank(p) or _blank(lab)]
    if empty:
        raise DatasetError(f"{path}: {len(empty)} row(s) lack a path or a label (first: row {empty[0] + 1} "
                           f"of the data). Fill them in or delete those rows.")
    base = path.parent
    paths = tuple(_absolute(str(p).strip(), base) for p in raw_paths)
    labels, names = _labels(raw_labels, class_names, path)
    counts = np.bincount(labels, minlength=len(names))
    if (counts == 0).any():
        absent = [names[c] for c in np.flatnonzero(counts == 0)]
        raise DatasetError(f"{path}: no row has the class(es) {absent}; every class needs images "
                           f"(drop those names from --class-names).")
    return LabelTable(paths, labels, names)


def _read_columns(path: Path) -> dict[str, list]:
    if not path.is_file():
        raise DatasetError(f"Label table {path} not found.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            import pyarrow.csv as pacsv

            # Every column as text: labels "01" or "2" are judged below, never guessed as floats.
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
                strings_can_be_null=True, column_types=_all_text(path)))
            return table.to_pydict()
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pydict()
        from astropy.table import Table

        table = Table.read(path, format="fits")
        return {name: [_fits_value(v) for v in table[name]] for name in table.colnames}
    except DatasetError:
        raise
    except Exception as err:  # noqa: BLE001 - pyarrow/astropy raise many kinds
        raise DatasetError(f"Cannot read the label table {path}: {err}") from err


def _all_text(path: Path) -> dict:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with pacsv.open_csv(path) as reader:  # reads the first block only, for the column names
        header = reader.schema.names
    return {name: pa.string() for name in header}


def _fits_value(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and not np.isfinite(value)) or str(value).strip() == ""


def _absolute(text: str, base: Path) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else base / p


def _labels(raw: list, class_names: Sequence[str] | None, where: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """int64 labels and the class names, from names or whole-number indices."""
    values = [v.strip() if isinstance(v, str) else v for v in raw]
    as_int = [_whole(v) for v in values]
    given = tuple(str(n).strip() for n in class_names) if class_names else None
    if given is not None and len(set(given)) != len(given):
        raise DatasetError(f"--class-names has repeated names: {list(given)}.")
    if all(v is not None for v in as_int) and not (given and all(str(v) in given for v in values)):
        labels = np.asarray(as_int, dtype=np.int64)
        k = len(given) if given else int(labels.max()) + 1
        bad = labels[(labels < 0) | (labels >= k)]
        if bad.size:
            hint = f"--class-names names {k}" if given else "indices must be 0 or more"
            raise DatasetError(f"{where}: label index {int(bad[0])} is outside 0..{k - 1} ({hint}).")
        return labels, given or tuple(f"class {c}" for c in range(k))
    texts = [str(v) for v in values]
    names = given or tuple(sorted(set(texts)))
    lookup = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(texts) - set(lookup))
    if unknown:
        raise DatasetError(f"{where}: label(s) {unknown[:10]} are not among --class-names {list(names)}.")
    return np.asarray([lookup[t] for t in texts], dtype=np.int64), names


def _whole(value) -> int | None:
    """The whole number a label spells (3, 3.0, "3"), or None for a name."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float):
        return int(value) if value == int(value) else None
    text = str(value)
    return int(text) if text.lstrip("-").isdigit() else None
