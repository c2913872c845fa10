"""Partitions, fixed by the input: `partition_size` rows each, in input order.

Partition `i` holds input rows `[i * size, min((i + 1) * size, n_rows))`. For files and tables the
driver stages the rows once as `OUT/_input.parquet` with one row group per partition
(`stage_rows`), so a task reads its own rows (`read_staged`) and the driver never holds the
catalogue; an HDF5 input is its own staging (a task reads `images[start:stop]`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, NamedTuple

from galaxy_core.catalog.inputs import CatalogError
from galaxy_core.io import atomic_path

STAGED_NAME = "_input.parquet"


class Partition(NamedTuple):
    """Partition `index`: input rows `start` (inclusive) to `stop` (exclusive)."""

    index: int
    start: int
    stop: int


def plan(n_rows: int, size: int) -> list[Partition]:
    """The partitions of `n_rows` rows, `size` rows each (the last may be shorter).

    Example:
        >>> plan(5, 2)
        [Partition(index=0, start=0, stop=2), Partition(index=1, start=2, stop=4), Partition(index=2, start=4, stop=5)]
    """
    if size < 1:
        raise CatalogError(f"--partition-size must be >= 1; got {size}")
    return [Partition(i, start, min(start + size, n_rows)) for i, start in enumerate(range(0, n_rows, size))]


def stage_rows(batches: Iterable[Any], dest: str | os.PathLike, size: int) -> int:
    """Write record batches to the Parquet file `dest` (atomically), one row group per partition.

    Args:
        batches: pyarrow RecordBatches of one schema (an input's carried columns).
        dest: the staged file, `OUT/_input.parquet`.
        size: rows per partition (= per row group).

    Returns:
        The number of rows written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    total, pending, writer = 0, [], None
    with atomic_path(dest) as tmp:
        try:
            for batch in batches:
                if writer is None:
                    writer = pq.ParquetWriter(tmp, batch.schema, compression="zstd")
                pending.append(batch)
                buffered = sum(b.num_rows for b in pending)
                if buffered < size:
                    continue
                table = pa.Table.from_batches(pending)
                whole = (buffered // size) * size
                for start in range(0, whole, size):
                    writer.write_table(table.slice(start, size), row_group_size=size)
                rest = table.slice(whole)
                pending = rest.to_batches() if rest.num_rows else []
                total += whole
            if pending:
                table = pa.Table.from_batches(pending)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
                writer.write_table(table, row_group_size=size)
                total += table.num_rows
        finally:
            if writer is not None:
                writer.close()
    return total


def staged_partitions(path: str | os.PathLike) -> tuple[int, list[int]]:
    """(rows, rows of each row group) of a staged file, from its footer."""
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path)
    return meta.num_rows, [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def read_staged(path: str | os.PathLike, part: Partition):
    """Partition `part`'s rows of a staged file (its row group), as a pyarrow Table."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as f:
        table = f.read_row_group(part.index)
    if table.num_rows != part.stop - part.start:
        raise CatalogError(f"{Path(path).name} row group {part.index} has {table.num_rows} rows, not "
                           f"{part.stop - part.start}: the staged input is damaged; rerun with --overwrite")
    return table
