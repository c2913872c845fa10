"""The preprocessed cache: the whole dataset after `preprocess_image`, built once, memory-mapped.

One uint8 `.npy` file per (preprocessing parameters, source file), memory-mapped on open
(`open_cache`), so training reads pixels without redoing CLAHE. `build_cache` makes it on all cores,
in a temporary folder renamed into place, so a folder with the final name is always complete. The
key (`cache_key`) holds `Config.preprocess_key` (image size and `config.PREPROCESS_FIELDS`) and the
source file's identity; `cache_path` is `<cache_dir>/<16 hex of its SHA-256>`.

Example:
    >>> cache = open_cache(build_cache("data/Galaxy10_DECals.h5", Config()))   # doctest: +SKIP
    >>> cache.images.shape, cache.images.dtype                                # doctest: +SKIP
    ((17736, 256, 256, 3), dtype('uint8'))
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import socket
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from galaxy_core.config import Config
from galaxy_core.errors import PreprocessError
from galaxy_core.io import CACHE_DIR_ENV, atomic_dir, default_cache_dir, partial_owner, progress_bar, write_json
from galaxy_core.preprocessing.preprocess import preprocess_batch

# Bump when the pixels `preprocess_image` produces change for the same parameters: old caches are
# then keyed differently and rebuilt instead of silently reused.
CACHE_FORMAT_VERSION = 2  # 2: luminance CLAHE on YCrCb luma (was CIE Lab L)
_HEAD_BYTES = 1 << 20  # the source file's first MiB is hashed into the cache key
_DEFAULTS = Config()


def _check_config(cfg: Any) -> None:
    if not isinstance(cfg, Config):
        raise PreprocessError(f"cfg must be a galaxy_core.config.Config; got {type(cfg).__name__}.")


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise PreprocessError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)

@dataclass(frozen=True)
class PreprocessedCache:
    """A built cache, opened read-only.

    Attributes:
        path: the cache folder.
        images: uint8 memmap `(N, S, S, 3)`; row i is dataset index i after `preprocess_image`.
        labels: int64 `(N,)`.
        meta: the contents of `meta.json` (key, key_hash, source, created, n, shape, ...).
    """

    path: Path
    images: np.ndarray
    labels: np.ndarray
    meta: dict

    @property
    def n(self) -> int:
        return int(self.images.shape[0])

    def __len__(self) -> int:
        return self.n


def cache_key(dataset_path: str | os.PathLike, cfg: Config) -> dict[str, Any]:
    """What a cache depends on: the preprocessing fields of `cfg` and the source file's identity.

    The source identity is its resolved path, size, mtime_ns and the SHA-256 of its first MiB, so a
    replaced or rewritten file gets a new cache.
    """
    _check_config(cfg)
    path = Path(dataset_path).expanduser()
    try:
        resolved = path.resolve(strict=True)
        stat = resolved.stat()
        with open(resolved, "rb") as f:
            head = hashlib.sha256(f.read(_HEAD_BYTES)).hexdigest()
    except OSError as err:
        raise PreprocessError(f"Cannot read dataset file {path}: {err}. Check the path "
                              "(see galaxy_core.data.galaxy10.default_dataset_path).") from err
    # Normalise numbers through the Config field types so clip_limit=2 and 2.0 share a cache.
    params = {name: (float(value) if isinstance(getattr(_DEFAULTS, name), float) else value)
              for name, value in cfg.preprocess_key.items()}
    return {
        "format_version": CACHE_FORMAT_VERSION,
        "preprocess": params,
        "source": {"path": str(resolved), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                   "head_sha256": head},
    }


def cache_path(dataset_path: str | os.PathLike, cfg: Config, cache_dir: str | os.PathLike | None = None, *,
               key: dict | None = None) -> Path:
    """The folder `<cache_dir>/<16 hex of sha256(key)>` a cache of this dataset and config lives in
    (`key`: its `cache_key`, when already computed)."""
    key = cache_key(dataset_path, cfg) if key is None else key
    return _cache_root(cache_dir) / _key_hash(key)


def is_cache_complete(path: str | os.PathLike) -> bool:
    """True when `path` holds a fully built cache (checked like `open_cache`, without raising)."""
    try:
        open_cache(path)
    except PreprocessError:
        return False
    return True


def build_cache(dataset_path: str | os.PathLike, cfg: Config, cache_dir: str | os.PathLike | None = None,
                workers: int | None = None, progress: bool = True, *,
                chunk_size: int | None = None) -> Path:
    """Preprocess every image of a Galaxy10-format file once into a memory-mappable cache.

    The cache folder `<cache_dir>/<key hash>/` holds `images.npy` (uint8 `(N, S, S, 3)`, row i =
    dataset index i), `labels.npy` (int64 `(N,)`) and `meta.json`. It is built in a temporary
    sibling folder and renamed into place, so a folder with the final name is always complete; a
    complete cache for the same key is reused without any work.

    Args:
        dataset_path: the Galaxy10-format HDF5 file (read with `galaxy_core.data.galaxy10.open_dataset`).
        cfg: the preprocessing parameters (`cfg.preprocess_key`).
        cache_dir: parent folder of caches; default `io.default_cache_dir()` (`$GALAXY10_CACHE_DIR`,
            else `./cache`).
        workers: processes; default all usable cores (1 for files under 512 images); 1 builds in
            this process.
        progress: draw a tqdm bar on stderr (`io.progress_bar`, the format the app reads).
        chunk_size: images per task (default: N / (8 * workers), clamped to 16..256).

    Returns:
        The cache folder (pass it to `open_cache`).
    """
    _check_config(cfg)
    if workers is not None:
        workers = _check_int(workers, "workers", minimum=1)
    if chunk_size is not None:
        chunk_size = _check_int(chunk_size, "chunk_size", minimum=1)
    key = cache_key(dataset_path, cfg)
    final = cache_path(dataset_path, cfg, cache_dir, key=key)
    root, key_hash = final.parent, final.name
    if final.exists():
        if is_cache_complete(final):
            return final
        raise PreprocessError(f"Cache folder {final} exists but is not a complete cache. "
                              "Delete it and run build_cache again.")

    source = Path(key["source"]["path"])
    with _open_dataset(source) as ds:
        n, labels = int(ds.n), np.asarray(ds.labels, dtype=np.int64)
        synthetic = bool(getattr(ds, "is_synthetic", False))
    size = cfg.image_size
    # Small files are done in this process: starting a worker costs about as much as 256 images.
    workers = workers or max(1, min(_usable_cores(), n // 256))
    chunk_size = chunk_size or int(np.clip(-(-n // (8 * workers)), 16, 256))
    chunks = [(start, min(start + chunk_size, n)) for start in range(0, n, chunk_size)]
    workers = max(1, min(workers, len(chunks)))

    root.mkdir(parents=True, exist_ok=True)
    _remove_dead_temp_folders(root, key_hash)
    needed, free = n * size * size * 3, shutil.disk_usage(root).free
    if needed > free:
        raise PreprocessError(
            f"Not enough disk space for the preprocessed cache in {root}: it needs {needed / 1e9:.2f} GB, "
            f"{free / 1e9:.2f} GB are free. Free some space or point ${CACHE_DIR_ENV} (or cache_dir) "
            "at a disk with more room.")
    started = time.perf_counter()
    # Built in io.atomic_dir's hidden sibling; another process that finishes the same cache first
    # wins (replace=False): both built the same pixels.
    with atomic_dir(final, replace=False) as tmp:
        # The .npy header and the (sparse) file are made here; workers write their rows in place.
        images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8,
                                           shape=(n, size, size, 3))
        del images
        np.save(tmp / "labels.npy", labels)
        bar = progress_bar(n, desc=f"preprocess cache {key_hash}", unit="img", disable=not progress)
        with bar, contextlib.closing(_run_chunks(source, tmp / "images.npy", cfg, chunks, workers)) as counts:
            for count in counts:
                bar.update(count)
        _fsync(tmp / "images.npy")
        meta = {
            "key": key, "key_hash": key_hash, "source": str(source),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "n": n, "shape": [n, size, size, 3], "synthetic": synthetic,
            "build_seconds": round(time.perf_counter() - started, 3), "workers": workers,
            "opencv": cv2.__version__,
        }
        write_json(tmp / "meta.json", meta)
    if not is_cache_complete(final):
        raise PreprocessError(f"{final} exists but is not a complete preprocessed cache. Delete {final} "
                              "and run build_cache again.")
    return final


def open_cache(path: str | os.PathLike) -> PreprocessedCache:
    """Open a cache built by `build_cache` (images memory-mapped read-only).

    Raises:
        PreprocessError: the folder is missing or incomplete (e.g. from an interrupted build).
    """
    path = Path(path)
    fix = f"Delete {path} and run build_cache again."
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        raise PreprocessError(f"{path} is not a complete preprocessed cache (no meta.json). {fix}")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        images = np.load(path / "images.npy", mmap_mode="r")
        labels = np.load(path / "labels.npy")
    except (OSError, ValueError) as err:
        raise PreprocessError(f"Cannot read preprocessed cache {path}: {err}. {fix}") from err
    n = meta.get("n") if isinstance(meta, dict) else None
    if (n is None or images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] != n or images.shape[3] != 3
            or list(images.shape) != meta.get("shape") or labels.shape != (n,)):
        raise PreprocessError(f"Preprocessed cache {path} is inconsistent: images {images.dtype} "
                              f"{images.shape}, labels {labels.shape}, meta n={n}. {fix}")
    return PreprocessedCache(path=path, images=images, labels=labels.astype(np.int64, copy=False), meta=meta)


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def _key_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _remove_dead_temp_folders(root: Path, key_hash: str) -> None:
    """Delete temp folders of this key left by crashed builds on this host (their pid is gone).

    Such folders are never taken as a cache; this only frees their disk space.
    """
    here = socket.gethostname()
    for folder in root.glob(f".{key_hash}.partial-*"):
        owner = partial_owner(folder)
        if owner is None or owner[0] != here:
            continue  # another host's build (a shared cache folder): not ours to judge
        try:
            os.kill(owner[1], 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (PermissionError, OSError):
            continue


def _fsync(path: Path) -> None:
    """Make sure the rows are on disk before the cache is published by the rename."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_dataset(path: Path):
    from galaxy_core.data.galaxy10 import open_dataset  # imported late: spawned workers need only this

    return open_dataset(path)


def _run_chunks(source: Path, images_file: Path, cfg: Config, chunks: list[tuple[int, int]],
                workers: int) -> Iterator[int]:
    """Preprocess `chunks` of rows into `images_file`; yield the row count of each finished chunk."""
    if workers == 1:
        _worker_init(str(source), str(images_file), cfg, set_threads=False)
        try:
            for chunk in chunks:
                yield _worker_run(chunk)
        finally:
            _worker_close()
        return
    # spawn, not fork: the caller may hold threads (TensorFlow, Streamlit) that fork would break.
    # A process pool (not multiprocessing.Pool) so that a worker killed e.g. for memory raises
    # BrokenProcessPool instead of hanging the build.
    executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_init, initargs=(str(source), str(images_file), cfg))
    try:
        futures = [executor.submit(_worker_run, chunk) for chunk in chunks]
        for future in as_completed(futures):
            yield future.result()
    except BrokenProcessPool as err:
        raise PreprocessError(
            f"A preprocessing worker process died ({err}). Either it ran out of memory, or the calling "
            "script has no `if __name__ == \"__main__\":` guard (worker processes are spawned and "
            "import the main script). Add the guard, or pass workers=1 to build in this process.") from err
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


# Per-process worker state: the open dataset, images.npy opened for writing, a reusable buffer.
_worker_state: dict[str, Any] = {}


def _worker_init(source: str, images_file: str, cfg: Config, set_threads: bool = True) -> None:
    if set_threads:
        cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would oversubscribe
    header = np.load(images_file, mmap_mode="r")  # only for the .npy header: data offset, row size
    _worker_state.update(
        dataset=_open_dataset(Path(source)), cfg=cfg, buffer=None,
        offset=int(header.offset), row_bytes=int(header[0].nbytes),
        # Rows are written with plain file writes at their offset: cheaper than faulting in
        # fresh pages of a writable memmap, and workers never touch each other's rows.
        file=open(images_file, "r+b", buffering=0))
    del header


def _worker_run(chunk: tuple[int, int]) -> int:
    start, stop = chunk
    state = _worker_state
    cfg, size = state["cfg"], state["cfg"].image_size
    raw = state["dataset"].read_images(np.arange(start, stop, dtype=np.int64))  # uint8 (b, H, W, 3)
    if state["buffer"] is None or len(state["buffer"]) < stop - start:
        state["buffer"] = np.empty((stop - start, size, size, 3), dtype=np.uint8)  # reused: no page faults
    rows = preprocess_batch(raw, cfg, out=state["buffer"][:stop - start])      # uint8 (b, S, S, 3)
    _write_at(state["file"], state["offset"] + start * state["row_bytes"], rows)
    return stop - start


def _write_at(file, offset: int, array: np.ndarray) -> None:
    """Write a C-contiguous array's bytes at `offset` (looping over short writes)."""
    view = memoryview(array).cast("B")
    file.seek(offset)
    while view:
        written = file.write(view)
        view = view[written:]


def _worker_close() -> None:
    dataset = _worker_state.pop("dataset", None)
    if dataset is not None:
        dataset.close()
    file = _worker_state.pop("file", None)
    if file is not None:
        file.close()
    _worker_state.clear()
