"""Galaxy10 DECaLS files: open, validate, stream and describe them (and the data command line).

The dataset is one HDF5 file with `images` uint8 `(N, 256, 256, 3)`, `ans` labels `(N,)` and the
per-galaxy metadata `ra`, `dec`, `redshift`, `pxscale` `(N,)`. The real file holds 17,736 images
(about 3.5 GB uncompressed), so images are never loaded all at once: `Galaxy10File.read_images`
and `Galaxy10File.iter_chunks` read the rows that are asked for; `check_file` reads every chunk
once to find damaged ones. Downloading lives in `galaxy_core.data.download`, the train/val/test split
and class weights in `galaxy_core.data.split`.

Command line:

    python -m galaxy_core.data download [--dest DIR] [--url URL] [--timeout S]
    python -m galaxy_core.data info [PATH] [--no-checksum] [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np

from galaxy_core.config import CLASS_NAMES
from galaxy_core.data.download import (DATASET_FILENAME, DATASET_SHA256, DATASET_URL, MIRROR_URL,
                                  add_download_arguments, default_dataset_path, run_download,
                                  sha256_file)
from galaxy_core.errors import DatasetError, DownloadError
from galaxy_core.io import progress

__all__ = ["CLASS_COUNTS", "CLASS_NAMES", "DATASET_FILENAME", "DATASET_SHA256", "DATASET_URL",
           "MIRROR_URL", "Galaxy10File", "check_file", "default_dataset_path", "describe_file",
           "open_dataset", "sha256_file", "main"]

# Published per-class image counts of Galaxy10 DECaLS (index = label); they sum to 17,736.
CLASS_COUNTS: tuple[int, ...] = (1081, 1853, 2645, 2027, 334, 2043, 1829, 2628, 1423, 1873)

REQUIRED_KEYS: tuple[str, ...] = ("images", "ans", "ra", "dec", "redshift", "pxscale")
METADATA_KEYS: tuple[str, ...] = ("ra", "dec", "redshift", "pxscale")


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------
class Galaxy10File:
    """An open, validated Galaxy10-format HDF5 file (use `open_dataset`).

    Attributes:
        path: the file.
        n: number of images.
        image_shape: `(H, W, 3)`.
        class_names: the file's class names (index = label): its `class_names` attribute (a JSON
            list, written by `galaxy_core.preprocessing.labelled` for your own labelled images),
            else Galaxy10's `CLASS_NAMES`.
        has_class_names: True when the file names its own classes (the attribute is there).
        labels: int64 `(N,)` in `0..len(class_names)-1` (read fully; it is small).
        is_synthetic: True when the file has the attribute `synthetic` set (made by
            `galaxy_core.synthetic`, not the real survey images).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = _open_hdf5(self.path)
        try:
            self.class_names = file_class_names(self._file, self.path)
            self.has_class_names = "class_names" in self._file.attrs
            self._images, self.labels = _validate(self._file, self.path, len(self.class_names))
        except BaseException:
            self._file.close()
            raise
        self.n = int(self._images.shape[0])
        self.image_shape: tuple[int, int, int] = tuple(int(s) for s in self._images.shape[1:])
        self.is_synthetic = bool(self._file.attrs.get("synthetic", False))

    # -- context manager ------------------------------------------------------------------
    def __enter__(self) -> "Galaxy10File":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the HDF5 file (idempotent)."""
        if self._file.id.valid:
            self._file.close()

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        kind = "synthetic" if self.is_synthetic else "survey"
        return f"Galaxy10File({str(self.path)!r}, n={self.n}, image_shape={self.image_shape}, {kind})"

    # -- reading --------------------------------------------------------------------------
    def metadata(self) -> dict[str, np.ndarray]:
        """`ra`, `dec`, `redshift`, `pxscale` as float64 arrays `(N,)`."""
        return {key: np.asarray(self._read(self._file[key], ()), dtype=np.float64)
                for key in METADATA_KEYS}

    def has_sky(self) -> bool:
        """Whether any image has a finite ra/dec (an imported labelled set has none: NaN)."""
        meta = self.metadata()
        return bool(np.any(np.isfinite(meta["ra"]) & np.isfinite(meta["dec"])))

    def read_images(self, indices) -> np.ndarray:
        """Images at `indices` (any order, duplicates allowed) -> uint8 `(k, H, W, 3)`.

        HDF5 point selection needs increasing unique indices, so the rows are read sorted and
        unique, then put back in the asked order. A dense run of indices is read as one slice.
        """
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise IndexError(f"indices must be a 1-D array of integers, got shape {idx.shape} "
                             f"dtype {idx.dtype}.")
        idx = idx.astype(np.int64)
        if idx.size == 0:
            return np.empty((0, *self.image_shape), dtype=np.uint8)
        if idx.min() < 0 or idx.max() >= self.n:
            bad = idx[(idx < 0) | (idx >= self.n)]
            raise IndexError(f"image index {int(bad[0])} out of range 0..{self.n - 1} "
                             f"({bad.size} bad indices) for {self.path}.")
        unique, inverse = np.unique(idx, return_inverse=True)
        lo, hi = int(unique[0]), int(unique[-1]) + 1
        if hi - lo <= 2 * unique.size:
            # Dense: one contiguous read (at most twice the rows needed), then pick rows.
            block = self._read(self._images, np.s_[lo:hi])
            rows = block[unique - lo]
        else:
            rows = self._read(self._images, unique)
        return rows[inverse.reshape(-1)]

    def iter_chunks(self, indices=None, chunk_size: int = 256
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream images in chunks: yields `(indices int64 (b,), images uint8 (b, H, W, 3))`.

        Args:
            indices: rows to read, in this order (default: all rows, 0..N-1, read as slices).
            chunk_size: rows per chunk (memory is about chunk_size * H * W * 3 bytes).
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
        if indices is None:
            for start in range(0, self.n, chunk_size):
                stop = min(start + chunk_size, self.n)
                yield np.arange(start, stop, dtype=np.int64), self._read(self._images, np.s_[start:stop])
            return
        idx = np.asarray(indices).reshape(-1)
        for start in range(0, idx.size, chunk_size):
            chunk = idx[start:start + chunk_size]
            yield chunk, self.read_images(chunk)

    def _read(self, dataset, selection) -> np.ndarray:
        try:
            return dataset[selection]
        except OSError as err:  # corrupt chunk, file changed or truncated since it was opened
            raise DatasetError(f"Cannot read {dataset.name!r} from {self.path}: {err}. The file may "
                               f"be damaged; check every chunk with `python -m galaxy_core.data info "
                               f"--check {self.path}`, and download it again if that fails.") from err

    def check(self, progress_on: bool = True) -> int:
        """Read every image chunk and every metadata value once; return the number of images read.

        The HDF5 chunks of `images` are decompressed one after another (about 3.5 GB for the real
        file), so a damaged compressed chunk, which `open_dataset` cannot notice, is found here.

        Raises:
            DatasetError: names the rows of the first chunk that cannot be read.
        """
        self.metadata()
        chunk = int(self._images.chunks[0]) if self._images.chunks else 256
        rows = chunk * max(1, 256 // chunk)  # whole HDF5 chunks, about 256 rows a read
        done = 0
        for start in progress(range(0, self.n, rows), total=-(-self.n // rows),
                              desc=f"check {self.path.name}", unit="read", disable=not progress_on):
            stop = min(start + rows, self.n)
            try:
                self._read(self._images, np.s_[start:stop])
            except DatasetError:
                self._report_bad_chunk(start, stop, chunk)
            done = stop
        return done

    def _report_bad_chunk(self, start: int, stop: int, chunk: int) -> None:
        """Raise DatasetError naming the first unreadable HDF5 chunk of rows start..stop-1."""
        for first in range(start, stop, chunk):
            last = min(first + chunk, stop)
            try:
                self._read(self._images, np.s_[first:last])
            except DatasetError as err:
                raise DatasetError(f"{self.path}: images {first}..{last - 1} cannot be read (a damaged "
                                   f"or truncated compressed chunk). Download the file again. "
                                   f"Detail: {err.__cause__}") from err
        raise DatasetError(f"{self.path}: images {start}..{stop - 1} could not be read once but "
                           f"could chunk by chunk; check the disk, then run the check again.")


def check_file(path: str | Path, progress_on: bool = True) -> int:
    """Open, validate and read every chunk of a Galaxy10-format file (`info --check`).

    Returns:
        The number of images (all of them readable).

    Raises:
        DatasetError: the file is malformed or a chunk cannot be read (the message names its rows).
    """
    with open_dataset(path) as ds:
        return ds.check(progress_on=progress_on)


def open_dataset(path: str | Path) -> Galaxy10File:
    """Open and validate a Galaxy10-format file (keys, shapes, dtypes, label range, lengths).

    Raises:
        DatasetError: the message names the file and what is wrong with it.
    """
    return Galaxy10File(path)


def _open_hdf5(path: Path) -> h5py.File:
    hint = ("Get the real dataset with `python -m galaxy_core.data download`, or make a "
            "synthetic one with galaxy_core.synthetic.")
    if not path.exists():
        raise DatasetError(f"Dataset file not found: {path}. {hint}")
    if path.is_dir():
        raise DatasetError(f"{path} is a folder, not a Galaxy10 HDF5 file "
                           f"(expected e.g. {path / DATASET_FILENAME}).")
    size = path.stat().st_size
    if size == 0:
        raise DatasetError(f"{path} is empty (0 bytes). Delete it and download it again. {hint}")
    try:
        is_hdf5 = h5py.is_hdf5(str(path))
    except OSError as err:
        raise DatasetError(f"Cannot read {path}: {err}") from err
    if not is_hdf5:
        raise DatasetError(f"{path} is not an HDF5 file (no HDF5 signature in its {size} bytes). "
                           f"{hint}")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DatasetError(f"{path} is an HDF5 file that cannot be opened; it is probably truncated "
                           f"or corrupt ({err}). Delete it and download it again.") from err


def file_class_names(f: h5py.File, path: Path) -> tuple[str, ...]:
    """The class names a file stores (attribute `class_names`, a JSON list), else `CLASS_NAMES`."""
    raw = f.attrs.get("class_names")
    if raw is None:
        return CLASS_NAMES
    try:
        names = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: the 'class_names' attribute is not a JSON list ({err}).") from err
    if not (isinstance(names, list) and len(names) >= 2 and all(isinstance(n, str) for n in names)):
        raise DatasetError(f"{path}: the 'class_names' attribute must be a JSON list of 2 or more "
                           f"names, got {raw!r}.")
    return tuple(names)


def _validate(f: h5py.File, path: Path, num_classes: int) -> tuple[h5py.Dataset, np.ndarray]:
    """Check keys, shapes, dtypes, label range and lengths; return (images dataset, labels int64)."""
    missing = [key for key in REQUIRED_KEYS if not isinstance(f.get(key), h5py.Dataset)]
    if missing:
        raise DatasetError(f"{path} is not in Galaxy10 format: missing dataset(s) {missing} "
                           f"(required: {list(REQUIRED_KEYS)}; found: {sorted(f.keys())}).")
    images = f["images"]
    if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] < 1 or images.shape[2] < 1:
        raise DatasetError(f"{path}: 'images' must have shape (N, H, W, 3), got {images.shape}.")
    if images.dtype != np.uint8:
        raise DatasetError(f"{path}: 'images' must be uint8, got {images.dtype}.")
    n = images.shape[0]
    if n == 0:
        raise DatasetError(f"{path} holds zero images (shape {images.shape}); it was written "
                           f"empty or by an interrupted program. Write it again.")
    for key in ("ans", *METADATA_KEYS):
        dset = f[key]
        if dset.ndim != 1 or dset.shape[0] != n:
            raise DatasetError(f"{path}: '{key}' has shape {dset.shape} but 'images' holds {n} "
                               f"images; every dataset needs one value per image, shape ({n},).")
        if dset.dtype.kind not in "biuf":
            raise DatasetError(f"{path}: '{key}' must be numeric, got dtype {dset.dtype}.")
    raw = np.asarray(f["ans"][()])
    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw)) or not np.all(raw == np.round(raw)):
            raise DatasetError(f"{path}: 'ans' labels must be whole numbers, got dtype {raw.dtype} "
                               f"with fractional or non-finite values.")
    labels = raw.astype(np.int64)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        values = np.unique(labels[bad])
        shown = ", ".join(str(v) for v in values[:10]) + (", ..." if values.size > 10 else "")
        raise DatasetError(f"{path}: labels must be in 0..{num_classes - 1}; {int(bad.sum())} of {n} "
                           f"labels are out of range (values: {shown}; first at index "
                           f"{int(np.flatnonzero(bad)[0])}).")
    return images, labels


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def describe_file(path: str | Path, checksum: bool = True, progress: bool = True) -> str:
    """A human-readable summary of a Galaxy10-format file (what `info` prints)."""
    with open_dataset(path) as ds:
        names = ds.class_names
        counts = np.bincount(ds.labels, minlength=len(names))
        lines = [
            f"file:        {ds.path}",
            f"images:      {ds.n}",
            f"image shape: {ds.image_shape}  dtype: uint8",
            f"synthetic:   {'yes (generated, not survey images)' if ds.is_synthetic else 'no'}",
            "classes:",
        ]
        width = max(len(name) for name in names)
        for c, name in enumerate(names):
            lines.append(f"  {c}  {name:<{width}}  {counts[c]:>6}  ({counts[c] / ds.n:6.1%})")
        if not ds.has_class_names:
            same = tuple(int(k) for k in counts) == CLASS_COUNTS
            lines.append(f"counts equal the published Galaxy10 DECaLS counts: {'yes' if same else 'no'}")
    if checksum:
        digest = sha256_file(path, progress=progress)
        verdict = "matches the published checksum" if digest == DATASET_SHA256 else \
            "differs from the published checksum"
        lines.append(f"sha256:      {digest} ({verdict})")
    else:
        lines.append("sha256:      not computed (--no-checksum)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m galaxy_core.data",
                                     description="Download and inspect Galaxy10 DECaLS.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_download_arguments(sub.add_parser("download", help="download (resumable) and verify the dataset"))
    info = sub.add_parser("info", help="validate a Galaxy10-format file and summarise it")
    info.add_argument("path", nargs="?", type=Path, default=None,
                      help="the .h5 file (default: the downloaded dataset path)")
    info.add_argument("--no-checksum", action="store_true", help="skip the SHA-256 (faster)")
    info.add_argument("--check", action="store_true",
                      help="also read (decompress) every image chunk to find damaged ones (slow)")
    info.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "download":
            print(run_download(args))
        else:
            path = args.path if args.path is not None else default_dataset_path()
            print(describe_file(path, checksum=not args.no_checksum, progress=not args.no_progress))
            if args.check:
                n = check_file(path, progress_on=not args.no_progress)
                print(f"check:       all {n} images read without error")
    except (DatasetError, DownloadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted (a partial download is kept and the next run continues it)",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
