"""Galaxy10 DECaLS: download, validate, stream, split and weigh the classes.

The dataset is one HDF5 file with `images` uint8 `(N, 256, 256, 3)`, `ans` labels `(N,)` and the
per-galaxy metadata `ra`, `dec`, `redshift`, `pxscale` `(N,)`. The real file holds 17,736 images
(about 3.5 GB uncompressed), so images are never loaded all at once: `Galaxy10File.read_images`
and `Galaxy10File.iter_chunks` read the rows that are asked for.

Command line:

    python -m galaxy_core.data download [--dest DIR]
    python -m galaxy_core.data info [PATH] [--no-checksum]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np

from galaxy_core.config import CLASS_NAMES
from galaxy_core.errors import DatasetError, DownloadError
from galaxy_core.progress import ProgressBar

# Published per-class image counts of Galaxy10 DECaLS (index = label); they sum to 17,736.
CLASS_COUNTS: tuple[int, ...] = (1081, 1853, 2645, 2027, 334, 2043, 1829, 2628, 1423, 1873)
DATASET_URL = "https://zenodo.org/records/10845026/files/Galaxy10_DECals.h5"
MIRROR_URL = "https://www.astro.utoronto.ca/~hleung/shared/Galaxy10/Galaxy10_DECals.h5"
# SHA-256 of Galaxy10_DECals.h5 as published by the dataset's author.
DATASET_SHA256 = "19aefc477c41bb7f77ff07599a6b82a038dc042f889a111b0d4d98bb755c1571"
DATASET_FILENAME = "Galaxy10_DECals.h5"

REQUIRED_KEYS: tuple[str, ...] = ("images", "ans", "ra", "dec", "redshift", "pxscale")
METADATA_KEYS: tuple[str, ...] = ("ra", "dec", "redshift", "pxscale")
DATA_DIR_ENV = "GALAXY10_DATA_DIR"

_READ_BLOCK = 1 << 20  # 1 MiB per socket read / hash update
_USER_AGENT = "galaxy10-explorer (python urllib)"


# --------------------------------------------------------------------------------------------
# Paths and checksums
# --------------------------------------------------------------------------------------------
def default_data_dir() -> Path:
    """The dataset folder: `$GALAXY10_DATA_DIR` if set, else `./data`."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else Path("data")


def default_dataset_path() -> Path:
    """Where the real dataset file is expected: `default_data_dir() / DATASET_FILENAME`."""
    return default_data_dir() / DATASET_FILENAME


def sha256_file(path: str | Path, progress: bool = False) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (optionally with a progress bar)."""
    path = Path(path)
    digest = hashlib.sha256()
    total = path.stat().st_size
    with open(path, "rb") as f, ProgressBar(total, desc=f"sha256 {path.name}", unit="B",
                                             enabled=progress) as bar:
        while block := f.read(_READ_BLOCK):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------
class _Failed(Exception):
    """An HTTP error status, or the transfer stopped early (partial data kept)."""


class _Unreachable(Exception):
    """No connection to the server at all (DNS failure, refused, timeout before any answer)."""


def download_dataset(dest_dir: str | Path | None = None,
                     urls: Sequence[str] = (DATASET_URL, MIRROR_URL),
                     sha256: str | None = DATASET_SHA256,
                     progress: bool = True,
                     *,
                     filename: str = DATASET_FILENAME,
                     timeout: float = 60.0) -> Path:
    """Download the dataset into `dest_dir`, resumable, verified and atomic.

    Data arrives in `<file>.part`; an interrupted download keeps it and the next call continues it
    with an HTTP Range request (a server that ignores Range and answers 200 makes it start over).
    The file gets its final name (`os.replace`) only once complete and its SHA-256 matches; a file
    that fails the check is moved aside to `<file>.bad`. The URLs are tried in order (the mirror
    when the first fails). An already-present file with the right checksum is not downloaded again.

    Args:
        dest_dir: target folder (default `default_data_dir()`); created if missing.
        urls: URLs to try in order.
        sha256: expected hex SHA-256, or None to skip verification.
        progress: draw progress bars on stderr.
        filename: final file name.
        timeout: socket timeout in seconds (connect and each read).

    Returns:
        The path of the verified file.

    Raises:
        DownloadError: every URL failed (the message lists why, and where to put a file
            downloaded by hand), or the destination cannot be written.
    """
    if not urls:
        raise ValueError("download_dataset needs at least one URL.")
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}.")
    dest_dir = Path(dest_dir) if dest_dir is not None else default_data_dir()
    final = dest_dir / filename
    part = dest_dir / (filename + ".part")
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f"Cannot create the data folder {dest_dir}: {err}") from err

    if final.exists():
        if sha256 is None or _sha256_matches(final, sha256, progress):
            return final
        bad = _move_aside(final)
        print(f"{final} does not have the published SHA-256; moved it to {bad} and downloading again.",
              file=sys.stderr)

    failures: list[tuple[str, str, bool]] = []  # (url, reason, unreachable)
    for url in urls:
        try:
            digest = _fetch(url, part, timeout=timeout, progress=progress)
        except _Unreachable as err:
            failures.append((url, str(err), True))
            continue
        except _Failed as err:
            failures.append((url, str(err), False))
            continue
        if sha256 is not None and digest != sha256.lower():
            bad = _move_aside(part, final)
            failures.append((url, f"SHA-256 mismatch: got {digest}, expected {sha256}; "
                                  f"the bad file was moved to {bad}", False))
            continue
        try:
            os.replace(part, final)
        except OSError as err:
            raise DownloadError(f"Cannot move {part} to {final}: {err}") from err
        return final
    raise DownloadError(_failure_message(failures, final, sha256))


def _sha256_matches(path: Path, sha256: str, progress: bool) -> bool:
    try:
        return sha256_file(path, progress=progress) == sha256.lower()
    except OSError as err:
        raise DownloadError(f"Cannot read {path} to verify it: {err}") from err


def _move_aside(path: Path, final: Path | None = None) -> Path:
    """Rename a file that failed its checksum to `<final name>.bad` (replacing an older one)."""
    bad = (final or path).with_name((final or path).name + ".bad")
    try:
        os.replace(path, bad)
    except OSError as err:
        raise DownloadError(f"{path} failed its checksum and cannot be moved aside: {err}") from err
    return bad


def _fetch(url: str, part: Path, timeout: float, progress: bool) -> str:
    """Download `url` into `part`, resuming from its current size; return the hex SHA-256.

    Raises:
        _Unreachable: no HTTP answer at all (partial data, if any, is kept).
        _Failed: an HTTP error status, or the transfer stopped early (partial data kept).
        DownloadError: the partial file cannot be read or written.
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            # Range not satisfiable: the partial file is already complete (or longer than the
            # file); the checksum decides.
            err.close()
            return _hash_existing(part, progress)
        err.close()
        raise _Failed(f"HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = getattr(err, "reason", err)
        raise _Unreachable(f"no connection ({reason})") from err

    with response:
        status = getattr(response, "status", 200)
        length = response.headers.get("Content-Length")
        remaining = int(length) if length and length.isdigit() else None
        digest = hashlib.sha256()
        if offset and status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != offset:
                response.close()
                part.unlink(missing_ok=True)  # unusable as a prefix: start over next time
                raise _Failed(f"server answered a Range request for byte {offset} with data "
                                   f"from byte {start}")
            _hash_prefix(part, digest)
            mode = "ab"
        else:
            # Fresh download, or a server that ignored Range (200): start over.
            offset, mode = 0, "wb"
            total = remaining
        _check_free_space(part.parent, remaining)

        received = 0
        try:
            f = open(part, mode)
        except OSError as err:
            raise DownloadError(f"Cannot write {part}: {err}") from err
        with f, ProgressBar(total, desc=f"download {part.name[:-5]}", unit="B", enabled=progress) as bar:
            bar.update(offset)
            while True:
                try:
                    block = response.read(_READ_BLOCK)
                except (http.client.HTTPException, OSError) as err:  # reset, timeout mid-transfer
                    raise _Failed(_interrupted_text(offset + received, total, part, err)) from err
                if not block:
                    break
                try:
                    f.write(block)
                except OSError as err:
                    raise DownloadError(f"Cannot write {part}: {err}") from err
                digest.update(block)
                received += len(block)
                bar.update(len(block))
        if remaining is not None and received < remaining:
            # urllib returns b"" (no exception) when the peer closes early: check the count.
            raise _Failed(_interrupted_text(offset + received, total, part, "connection closed"))
    return digest.hexdigest()


def _parse_content_range(value: str | None) -> tuple[int, int | None]:
    """`bytes 100-199/1000` -> (100, 1000); total None when `*`. Unparseable -> (-1, None)."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not match:
        return -1, None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


def _hash_prefix(path: Path, digest) -> None:
    try:
        with open(path, "rb") as f:
            while block := f.read(_READ_BLOCK):
                digest.update(block)
    except OSError as err:
        raise DownloadError(f"Cannot read the partial download {path}: {err}") from err


def _hash_existing(path: Path, progress: bool) -> str:
    try:
        return sha256_file(path, progress=progress)
    except OSError as err:
        raise DownloadError(f"Cannot read the partial download {path}: {err}") from err


def _check_free_space(folder: Path, needed: int | None) -> None:
    if needed is None:
        return
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DownloadError(f"Not enough disk space in {folder}: the download needs "
                            f"{needed / 1e9:.2f} GB more, {free / 1e9:.2f} GB are free. "
                            f"Free some space or choose another folder with --dest.")


def _interrupted_text(have: int, total: int | None, part: Path, why) -> str:
    of = f" of {total}" if total else ""
    return (f"interrupted after {have}{of} bytes ({why}); the partial data is kept in {part} "
            f"and the next run continues it")


def _failure_message(failures: list[tuple[str, str, bool]], final: Path, sha256: str | None) -> str:
    where = final.resolve()
    manual = (f"download {DATASET_FILENAME} by hand from one of these URLs and put it at\n  {where}\n"
              + (f"(SHA-256 {sha256}). " if sha256 else "")
              + f"Or set ${DATA_DIR_ENV} to the folder that holds the file.")
    if all(unreachable for _, _, unreachable in failures):
        urls = "".join(f"\n  {url} ({reason})" for url, reason, _ in failures)
        return (f"Cannot download the Galaxy10 DECaLS dataset: no connection to any server "
                f"(offline?). Tried:{urls}\nTo use it offline, {manual}")
    reasons = "".join(f"\n  {url}: {reason}" for url, reason, _ in failures)
    return f"Cannot download the Galaxy10 DECaLS dataset. Tried:{reasons}\nRun again to retry, or {manual}"


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------
class Galaxy10File:
    """An open, validated Galaxy10-format HDF5 file (use `open_dataset`).

    Attributes:
        path: the file.
        n: number of images.
        image_shape: `(H, W, 3)`.
        labels: int64 `(N,)` in `0..len(CLASS_NAMES)-1` (read fully; it is small).
        is_synthetic: True when the file has the attribute `synthetic` set (made by
            `galaxy_core.synthetic`, not the real survey images).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = _open_hdf5(self.path)
        try:
            self._images, self.labels = _validate(self._file, self.path)
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
                               f"be damaged; check it with `python -m galaxy_core.data info "
                               f"{self.path}`.") from err


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


def _validate(f: h5py.File, path: Path) -> tuple[h5py.Dataset, np.ndarray]:
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
    num_classes = len(CLASS_NAMES)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        values = np.unique(labels[bad])
        shown = ", ".join(str(v) for v in values[:10]) + (", ..." if values.size > 10 else "")
        raise DatasetError(f"{path}: labels must be in 0..{num_classes - 1}; {int(bad.sum())} of {n} "
                           f"labels are out of range (values: {shown}; first at index "
                           f"{int(np.flatnonzero(bad)[0])}).")
    return images, labels


# --------------------------------------------------------------------------------------------
# Split and class weights
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Split:
    """Disjoint int64 index arrays (sorted) into the dataset rows."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": int(self.train.size), "val": int(self.val.size), "test": int(self.test.size)}


def split_indices(labels, val_fraction: float, test_fraction: float, seed: int) -> Split:
    """Stratified, seeded train/val/test split of `range(len(labels))`.

    Two scikit-learn `train_test_split(..., stratify=)` calls: first test off the whole set, then
    val off the rest (with val_fraction rescaled so it is a fraction of the whole set). Each part
    keeps the class proportions to within about one image per class.

    Args:
        labels: int array `(N,)`.
        val_fraction, test_fraction: fractions of N in (0, 1), summing to < 1.
        seed: random state; the same seed gives the same split.

    Returns:
        Split with sorted int64 arrays that are disjoint and together cover 0..N-1.

    Raises:
        ValueError: bad fractions or labels.
        DatasetError: a class has too few images, or a part would have fewer images than there
            are classes, so it cannot be stratified.
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}.")
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction={val_fraction} and test_fraction={test_fraction} must each be "
                         f"in (0, 1) with a sum < 1.")
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < 3:
        small = ", ".join(f"{_class_text(c)}: {k}" for c, k in zip(classes, counts) if k < 3)
        raise DatasetError(f"Cannot make a stratified split: every class needs at least 3 images (one "
                           f"each for train, val and test); too few in {small}. Use more images or "
                           f"drop those classes.")
    all_idx = np.arange(labels.size, dtype=np.int64)
    val_of_rest = val_fraction / (1.0 - test_fraction)
    try:
        rest, test = train_test_split(all_idx, test_size=test_fraction, stratify=labels,
                                      random_state=seed)
        train, val = train_test_split(rest, test_size=val_of_rest, stratify=labels[rest],
                                      random_state=seed)
    except ValueError as err:  # e.g. a part smaller than the number of classes
        raise DatasetError(f"Cannot make a stratified split of {labels.size} images in "
                           f"{classes.size} classes with val_fraction={val_fraction}, "
                           f"test_fraction={test_fraction}: {err} Use more images or larger "
                           f"fractions.") from err
    return Split(np.sort(train).astype(np.int64), np.sort(val).astype(np.int64),
                 np.sort(test).astype(np.int64))


def save_split(split: Split, path: str | Path) -> Path:
    """Write the split to an `.npz` file (arrays `train`, `val`, `test`); returns the path."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, train=split.train, val=split.val, test=split.test)
    os.replace(tmp, path)
    return path


def load_split(path: str | Path) -> Split:
    """Read a split written by `save_split`.

    Raises:
        DatasetError: missing file, missing arrays, non-integer or overlapping indices.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("train", "val", "test") if k not in data.files]
            if missing:
                raise DatasetError(f"{path} is not a split file: missing {missing}.")
            parts = {k: np.asarray(data[k]) for k in ("train", "val", "test")}
    except (OSError, ValueError) as err:
        raise DatasetError(f"Cannot read the split file {path}: {err}") from err
    for key, arr in parts.items():
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise DatasetError(f"{path}: '{key}' must be a 1-D integer array, got {arr.dtype} "
                               f"{arr.shape}.")
    joined = np.concatenate(list(parts.values()))
    if np.unique(joined).size != joined.size:
        raise DatasetError(f"{path}: train, val and test indices overlap.")
    return Split(*(parts[k].astype(np.int64) for k in ("train", "val", "test")))


def compute_class_weights(labels, num_classes: int) -> dict[int, float]:
    """Balanced class weights `n / (num_classes * count_c)` (scikit-learn), as `{class: weight}`.

    Raises:
        DatasetError: a class in 0..num_classes-1 has no image, or a label is out of range.
    """
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels).reshape(-1)
    classes = np.arange(num_classes)
    outside = np.setdiff1d(np.unique(labels), classes)
    if outside.size:
        raise DatasetError(f"Labels {outside.tolist()} are outside 0..{num_classes - 1}.")
    absent = np.setdiff1d(classes, labels)
    if absent.size:
        names = ", ".join(_class_text(c) for c in absent)
        raise DatasetError(f"Cannot compute balanced class weights: no image of class {names}. "
                           f"Use a split that contains every class, or turn class weights off "
                           f"(--no-class-weights).")
    weights = compute_class_weight("balanced", classes=classes, y=labels)
    return {int(c): float(w) for c, w in zip(classes, weights)}


def _class_text(c) -> str:
    c = int(c)
    return f"{c} ({CLASS_NAMES[c]})" if 0 <= c < len(CLASS_NAMES) else str(c)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def describe_file(path: str | Path, checksum: bool = True, progress: bool = True) -> str:
    """A human-readable summary of a Galaxy10-format file (what `info` prints)."""
    with open_dataset(path) as ds:
        counts = np.bincount(ds.labels, minlength=len(CLASS_NAMES))
        lines = [
            f"file:        {ds.path}",
            f"images:      {ds.n}",
            f"image shape: {ds.image_shape}  dtype: uint8",
            f"synthetic:   {'yes (generated, not survey images)' if ds.is_synthetic else 'no'}",
            "classes:",
        ]
        width = max(len(name) for name in CLASS_NAMES)
        for c, name in enumerate(CLASS_NAMES):
            lines.append(f"  {c}  {name:<{width}}  {counts[c]:>6}  ({counts[c] / ds.n:6.1%})")
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
    dl = sub.add_parser("download", help="download (resumable) and verify the dataset")
    dl.add_argument("--dest", type=Path, default=None,
                    help=f"target folder (default: ${DATA_DIR_ENV} or ./data)")
    dl.add_argument("--url", action="append", default=None,
                    help="URL to try (repeatable; default: Zenodo, then the mirror)")
    dl.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds")
    dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    info = sub.add_parser("info", help="validate a Galaxy10-format file and summarise it")
    info.add_argument("path", nargs="?", type=Path, default=None,
                      help="the .h5 file (default: the downloaded dataset path)")
    info.add_argument("--no-checksum", action="store_true", help="skip the SHA-256 (faster)")
    info.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "download":
            path = download_dataset(args.dest, urls=tuple(args.url or (DATASET_URL, MIRROR_URL)),
                                    progress=not args.no_progress, timeout=args.timeout)
            print(path)
        else:
            path = args.path if args.path is not None else default_dataset_path()
            print(describe_file(path, checksum=not args.no_checksum, progress=not args.no_progress))
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
