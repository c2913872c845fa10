"""What the catalogue command was given: its kind, its rows (streamed, never whole) and its identity.

Three kinds of input:

- `files`: image files and folders of them (`galaxy_core.evaluation.scoring.expand_inputs`: a
  folder stands for its image files, sorted, not recursive; a missing file is kept and becomes an
  error row, as in the predict CLI). One column is carried: `path` (the absolute path, so workers
  on other machines find the same file on a shared filesystem).
- `table`: one CSV, Parquet, FITS or VOTable file with a column of image paths (`--path-column`,
  default the first of `PATH_COLUMNS`, any case). Every column is carried unchanged. A relative
  path is relative to the table's folder. CSV and Parquet are streamed in record batches; FITS is
  memory-mapped by astropy and read in slices; a VOTable is parsed whole by astropy (XML).
- `hdf5`: one HDF5 file with an `images` dataset `(N, H, W, 3)` (e.g. Galaxy10_DECals.h5). Its
  other 1-D datasets of length N (ra, dec, redshift, ...) are carried. Workers read their rows
  themselves, as `(path, start, stop)`: an h5py handle cannot be pickled.

The identity recorded in the manifest: for files, a hash of the path list; for a table, its size
and the SHA-256 of its bytes; for an HDF5 file (gigabytes), its size, modification time and the
images' shape.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from galaxy_core.errors import GalaxyError

PATH_COLUMNS = ("path", "file", "filename")
TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".fits": "fits", ".fit": "fits",
                  ".fts": "fits", ".vot": "votable", ".votable": "votable", ".xml": "votable"}
HDF5_SUFFIXES = (".h5", ".hdf5")
IMAGES_DATASET = "images"
BATCH_ROWS = 65_536  # rows per record batch read from a table (bounds the driver's memory)


class CatalogError(GalaxyError):
    """The catalogue cannot run as asked (input, output folder or options); the message says why."""


@dataclass(frozen=True)
class Source:
    """An input, as the driver and the workers both need it (small; pickled into every task).

    `kind` is "files", "table" or "hdf5"; `path` the table or HDF5 file (None for files);
    `path_column` the column of image paths (files/table); `carried` the carried columns in
    order; `base_dir` what relative paths are relative to; `n_rows` the number of rows (of a table:
    0 until it is staged).
    """

    kind: str
    n_rows: int
    carried: tuple[str, ...]
    path: str | None = None
    path_column: str | None = None
    base_dir: str | None = None
    identity: dict[str, Any] = field(default_factory=dict, compare=False)


def open_input(inputs: Sequence[str | os.PathLike], path_column: str | None = None
               ) -> tuple[Source, Callable[[], Iterator[Any]] | None]:
    """Inspect the inputs; returns the `Source` and, for files/table, a function streaming its rows.

    The stream yields pyarrow RecordBatches of the carried columns (for `staging`); it is None for
    HDF5, which the workers read directly.

    Raises:
        CatalogError: a missing or unreadable input, a table or HDF5 file mixed with other inputs,
            no path column, no `images` dataset, no rows.
    """
    inputs = [str(p) for p in inputs]
    if not inputs:
        raise CatalogError("no INPUT given: pass image files, folders, a table or an HDF5 file")
    kinds = [input_kind(p) for p in inputs]
    if len(inputs) > 1 and any(k != "files" for k in kinds):
        raise CatalogError("a table or HDF5 input must be the only INPUT; got "
                           + ", ".join(f"{p} ({k})" for p, k in zip(inputs, kinds)))
    if kinds[0] == "hdf5":
        return open_hdf5(inputs[0]), None
    if kinds[0] == "files":
        return open_files(inputs)
    return open_table(inputs[0], TABLE_SUFFIXES[Path(inputs[0]).suffix.lower()], path_column)


def input_kind(path: str) -> str:
    """"hdf5", "table" or "files", by the name's ending."""
    suffix = Path(path).suffix.lower()
    if suffix in HDF5_SUFFIXES:
        return "hdf5"
    return "table" if suffix in TABLE_SUFFIXES else "files"


# --- image files ----------------------------------------------------------------------------------
def open_files(inputs: Sequence[str]) -> tuple[Source, Callable[[], Iterator[Any]]]:
    from galaxy_core.evaluation.scoring import expand_inputs

    if not any(os.path.exists(p) for p in inputs):  # one missing file among others is an error row
        raise CatalogError(f"{'input' if len(inputs) == 1 else 'the inputs'} {', '.join(map(repr, inputs))} "
                           f"{'does' if len(inputs) == 1 else 'do'} not exist (give image files, folders of them, a "
                           f"table ({', '.join(sorted(set(TABLE_SUFFIXES)))}) or an HDF5 file)")
    paths = [str(Path(p).resolve()) for p in expand_inputs(inputs)]
    if not paths:
        raise CatalogError(f"no image files in {', '.join(inputs)} (PNG, JPEG, TIFF, BMP or WebP)")
    digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()
    source = Source("files", len(paths), ("path",), path_column="path",
                    identity={"kind": "files", "rows": len(paths), "paths_sha256": digest,
                              "inputs": [str(Path(p).resolve()) for p in inputs]})

    def batches():
        import pyarrow as pa

        for start in range(0, len(paths), BATCH_ROWS):
            yield pa.record_batch({"path": pa.array(paths[start:start + BATCH_ROWS], pa.string())})

    return source, batches


# --- tables -----------------------------------------------------------------------------------------
def open_table(path: str, fmt: str, path_column: str | None) -> tuple[Source, Callable[[], Iterator[Any]]]:
    table_path = Path(path).resolve()
    if not table_path.is_file():
        raise CatalogError(f"table {path!r} does not exist or is not a file")
    readers = {"csv": _csv_batches, "parquet": _parquet_batches, "fits": _astropy_batches,
               "votable": _astropy_batches}

    def batches():
        try:
            yield from readers[fmt](table_path, fmt)
        except CatalogError:
            raise
        except Exception as err:  # noqa: BLE001 - pyarrow / astropy raise many kinds
            raise CatalogError(f"cannot read the {fmt} table {path!r}: {' '.join(str(err).split())}") from err

    first = next(batches(), None)
    if first is None:
        raise CatalogError(f"the table {path!r} has no rows")
    names = list(first.schema.names)
    column = choose_path_column(names, path_column, path)
    import pyarrow as pa

    if not pa.types.is_string(first.schema.field(column).type) and \
            not pa.types.is_large_string(first.schema.field(column).type):
        raise CatalogError(f"column {column!r} of {path!r} holds {first.schema.field(column).type}, not "
                           f"image paths (text); pick the path column with --path-column")
    # n_rows is counted while the table is staged (`partitions.stage_rows`), not in a pass of its own.
    source = Source("table", 0, tuple(names), path=str(table_path), path_column=column,
                    base_dir=str(table_path.parent),
                    identity={"kind": "table", "path": str(table_path), "format": fmt,
                              "size": table_path.stat().st_size, "sha256": file_sha256(table_path)})
    return source, batches


def choose_path_column(names: Sequence[str], wanted: str | None, where: str) -> str:
    """The column of image paths: `wanted` if given, else the first of PATH_COLUMNS (any case)."""
    if wanted is not None:
        if wanted not in names:
            raise CatalogError(f"--path-column {wanted!r} is not a column of {where!r}; its columns: "
                               f"{', '.join(names)}")
        return wanted
    lower = {n.lower(): n for n in reversed(names)}
    for candidate in PATH_COLUMNS:
        if candidate in lower:
            return lower[candidate]
    raise CatalogError(f"{where!r} has no column of image paths named {' / '.join(PATH_COLUMNS)}; its columns: "
                       f"{', '.join(names)}. Name it with --path-column")


def _csv_batches(path: Path, fmt: str):
    import pyarrow.csv as pcsv

    with pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=1 << 22)) as reader:
        yield from reader


def _parquet_batches(path: Path, fmt: str):
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as f:
        yield from f.iter_batches(batch_size=BATCH_ROWS)


def _astropy_batches(path: Path, fmt: str):
    import pyarrow as pa
    from astropy.table import Table

    kwargs = {"memmap": True} if fmt == "fits" else {}
    table = Table.read(path, format=fmt, **kwargs)
    for start in range(0, len(table), BATCH_ROWS):
        part = table[start:start + BATCH_ROWS]
        yield pa.record_batch({name: astropy_to_arrow(part[name]) for name in part.colnames})


def astropy_to_arrow(column):
    """An astropy (Masked)Column -> pyarrow Array (native byte order, bytes decoded, mask kept)."""
    import pyarrow as pa

    mask = np.ma.getmaskarray(column) if getattr(column, "mask", None) is not None else None
    data = np.ma.getdata(np.asarray(column) if mask is None else column.data)
    if data.dtype.kind == "S":
        data = np.char.decode(data, "utf-8")
    elif data.dtype.kind in "iufb" and not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    if data.ndim > 1:  # a vector per row: fixed-size lists
        flat = pa.array(np.ascontiguousarray(data).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, int(np.prod(data.shape[1:])))
    if mask is not None and mask.ndim == 1 and mask.any():
        return pa.array(data, mask=mask)
    return pa.array(data)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# --- HDF5 -------------------------------------------------------------------------------------------
def open_hdf5(path: str) -> Source:
    """An HDF5 file with `images` (N, H, W, 3); its other 1-D length-N datasets are carried."""
    import h5py

    h5_path = Path(path).resolve()
    if not h5_path.is_file():
        raise CatalogError(f"HDF5 file {path!r} does not exist")
    try:
        with h5py.File(h5_path, "r") as f:
            images = f.get(IMAGES_DATASET)
            if not isinstance(images, h5py.Dataset) or images.ndim not in (3, 4):
                raise CatalogError(f"{path!r} has no {IMAGES_DATASET!r} dataset of shape (N, H, W, 3) or "
                                   f"(N, H, W); its members: {', '.join(f.keys())}")
            n = int(images.shape[0])
            shape = list(images.shape)
            carried = tuple(name for name, ds in f.items() if name != IMAGES_DATASET
                            and isinstance(ds, h5py.Dataset) and ds.shape == (n,))
    except OSError as err:
        raise CatalogError(f"cannot open {path!r} as HDF5: {err}") from err
    if n == 0:
        raise CatalogError(f"{path!r} holds no images")
    stat = h5_path.stat()
    return Source("hdf5", n, carried, path=str(h5_path), base_dir=str(h5_path.parent),
                  identity={"kind": "hdf5", "path": str(h5_path), "rows": n, "images_shape": shape,
                            "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
