"""On a worker: one partition's carried columns and its images, decoded in batches.

`partition_columns(source, staged, part)` gives the carried columns (a pyarrow Table);
`image_batches(source, columns, part, batch_size)` yields, `batch_size` rows at a time, each row's
image (uint8 array, as decoded) or the reason it has none. Files are decoded by the project's one
decoder (`galaxy_core.preprocessing.decode.read_image`); HDF5 rows are read `images[a:b]` at a time
from a handle the worker opens itself. A cutout smaller than `MIN_SIDE` pixels on a side is an
error row (a 1x1 "cutout" holds no galaxy; the model would see a flat square).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from galaxy_core.catalog.inputs import IMAGES_DATASET, CatalogError, Source
from galaxy_core.catalog.partitions import Partition, read_staged
from galaxy_core.errors import GalaxyError

MIN_SIDE = 8  # pixels: the smallest cutout side classified

Item = tuple[np.ndarray | None, str | None]  # (image, None) or (None, why not)


def partition_columns(source: Source, staged: str | os.PathLike | None, part: Partition):
    """The carried columns of partition `part` (pyarrow Table of `part.stop - part.start` rows)."""
    import pyarrow as pa

    if source.kind != "hdf5":
        return read_staged(staged, part)
    import h5py

    with h5py.File(source.path, "r") as f:
        columns = {}
        for name in source.carried:
            values = f[name][part.start:part.stop]
            if values.dtype.kind == "S":
                values = np.char.decode(values, "utf-8")
            columns[name] = pa.array(values)
    return pa.table(columns) if columns else _empty_table(part.stop - part.start)


def _empty_table(n: int):
    import pyarrow as pa

    return pa.table({"_": pa.nulls(n)}).drop_columns(["_"])


def image_batches(source: Source, columns, part: Partition, batch_size: int) -> Iterator[list[Item]]:
    """Each `batch_size` rows of partition `part`: per row its decoded image or its error."""
    if source.kind == "hdf5":
        yield from _hdf5_batches(source.path, part, batch_size)
        return
    paths = columns.column(source.path_column).to_pylist()
    base = Path(source.base_dir) if source.base_dir else None
    for start in range(0, len(paths), batch_size):
        yield [_read_file(p, base) for p in paths[start:start + batch_size]]


def _read_file(path: str | None, base: Path | None) -> Item:
    from galaxy_core.preprocessing.decode import read_image

    if path is None or not str(path).strip():
        return None, "no image path in this row"
    full = Path(path) if base is None or os.path.isabs(path) else base / path
    try:
        return checked(read_image(full), f"image file {str(full)!r}")
    except (GalaxyError, ValueError) as err:
        return None, str(err)


def checked(image: np.ndarray, what: str) -> Item:
    """`(image, None)`, or `(None, why)` for an image too small to hold a galaxy."""
    if image.ndim < 2 or min(image.shape[:2]) < MIN_SIDE:
        size = "x".join(str(s) for s in image.shape[:2][::-1])
        return None, (f"{what} is {size} pixels, smaller than the {MIN_SIDE}x{MIN_SIDE} the catalogue "
                      f"classifies (a cutout this small holds no galaxy; check how it was made)")
    return image, None


def _hdf5_batches(path: str, part: Partition, batch_size: int) -> Iterator[list[Item]]:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise CatalogError(f"cannot open {path!r} on this worker: {err}") from err
    with f:
        images = f[IMAGES_DATASET]
        for start in range(part.start, part.stop, batch_size):
            block = images[start:min(start + batch_size, part.stop)]
            yield [checked(image, f"{IMAGES_DATASET}[{start + k}]") for k, image in enumerate(block)]
