"""Image preprocessing (to RGB -> resize -> CLAHE -> opening) and the preprocessed cache.

Every image function is pure: it takes an ndarray and returns a new ndarray (or, for identity
settings, the input itself) and never changes its argument. Images handed between modules are
`uint8 (H, W, 3)` RGB; `rescale` is the one place that maps uint8 to float32 in [0, 1].

The preprocessed cache holds the whole dataset after `preprocess_image`, as one uint8 `.npy` file
that is memory-mapped on open (`open_cache`), so training reads pixels without redoing CLAHE. It is
built once per (preprocessing parameters, source file) by `build_cache`, on all cores.

Example:
    >>> cfg = Config()
    >>> out = preprocess_image(raw_rgb_uint8, cfg)      # uint8 (S, S, 3)
    >>> x = rescale(out[None])                            # float32 (1, S, S, 3) in [0, 1]
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import multiprocessing
import os
import shutil
import socket
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np

from galaxy_core.config import CHANNEL_MODES, KERNEL_SHAPES, Config
from galaxy_core.errors import PreprocessError
from galaxy_core.progress import ProgressBar

# Defaults come from the one Config dataclass (never written down twice).
_DEFAULTS = Config()

CACHE_ENV_VAR = "GALAXY10_CACHE_DIR"
# Bump when the pixels `preprocess_image` produces change for the same parameters: old caches are
# then keyed differently and rebuilt instead of silently reused.
CACHE_FORMAT_VERSION = 2  # 2: luminance CLAHE on YCrCb luma (was CIE Lab L)
_HEAD_BYTES = 1 << 20  # the source file's first MiB is hashed into the cache key
_KERNEL_SHAPES = {"ellipse": cv2.MORPH_ELLIPSE, "rect": cv2.MORPH_RECT, "cross": cv2.MORPH_CROSS}


# --------------------------------------------------------------------------------------------
# Pure image functions
# --------------------------------------------------------------------------------------------
def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Convert one image of a common layout to RGB uint8.

    Args:
        image: `(H, W)` or `(H, W, 1)` grayscale, `(H, W, 3)` RGB or `(H, W, 4)` RGBA, of dtype
            uint8, uint16 (scaled to 0..255 by /257, not clipped) or float (values in [0, 1]).
            RGBA is composited on black (colour times alpha), i.e. transparent = empty sky.

    Returns:
        uint8 `(H, W, 3)`, C-contiguous. A uint8 RGB input that is already contiguous is returned
        as is (no copy).

    Raises:
        PreprocessError: wrong ndim, channel count or dtype, empty image, or float values outside
            [0, 1] / not finite.
    """
    image = _check_array(image, "image")
    if image.ndim not in (2, 3):
        raise PreprocessError(
            f"Expected one image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got shape "
            f"{image.shape}. For a batch use preprocess_batch.")
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise PreprocessError(
            f"Expected 1 (gray), 3 (RGB) or 4 (RGBA) channels; got {image.shape[2]} channels in shape "
            f"{image.shape}. Convert the image to RGB first.")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise PreprocessError(f"Image is empty (shape {image.shape}); pass an image of at least 1x1 pixels.")

    image = _to_uint8(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:  # gray -> RGB
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    if image.shape[2] == 4:  # RGBA -> RGB on black: round(rgb * alpha / 255)
        rgb = image[:, :, :3].astype(np.uint16)
        alpha = image[:, :, 3:4].astype(np.uint16)
        return ((rgb * alpha + 127) // 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an image to `size x size` pixels (non-square images are stretched, not cropped).

    INTER_AREA when shrinking (averages, no aliasing), INTER_LINEAR when enlarging.

    Args:
        image: uint8 `(H, W, 3)`.
        size: output side in pixels (int >= 1).

    Returns:
        uint8 `(size, size, 3)`; the input itself when it already has that size.
    """
    image = _check_rgb_uint8(image, "resize_image")
    size = _check_int(size, "size", minimum=1)
    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return image
    interpolation = cv2.INTER_AREA if size <= height and size <= width else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def apply_clahe(image: np.ndarray, clip_limit: float = _DEFAULTS.clahe_clip_limit,
                tile_grid: int = _DEFAULTS.clahe_tile_grid,
                channel_mode: str = _DEFAULTS.channel_mode) -> np.ndarray:
    """Contrast Limited Adaptive Histogram Equalisation (OpenCV).

    Args:
        image: uint8 `(H, W, 3)` RGB.
        clip_limit: contrast limit per tile (> 0; OpenCV's `clipLimit`).
        tile_grid: tiles per side (>= 1); the image is cut into `tile_grid x tile_grid` tiles.
        channel_mode: "luminance" equalises the luma (Y) of YCrCb and keeps the chroma Cr, Cb, so
            hues are kept (YCrCb rather than CIE Lab: the same effect at less than half the
            cost, see BENCHMARKS.md); "per_channel" equalises R, G and B separately (may shift colours).

    Returns:
        uint8 `(H, W, 3)`, a new array.
    """
    image = _check_rgb_uint8(image, "apply_clahe")
    clip_limit, tile_grid = _check_clahe_args(clip_limit, tile_grid)
    channel_mode = _check_choice(channel_mode, "channel_mode", CHANNEL_MODES)
    clahe = _clahe(clip_limit, tile_grid)
    if channel_mode == "luminance":
        ycrcb = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)  # uint8 (H, W, 3): Y, Cr, Cb
        ycrcb[:, :, 0] = clahe.apply(np.ascontiguousarray(ycrcb[:, :, 0]))
        return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)
    return cv2.merge([clahe.apply(channel) for channel in cv2.split(image)])


def apply_opening(image: np.ndarray, kernel_shape: str = _DEFAULTS.opening_kernel_shape,
                  kernel_size: int = _DEFAULTS.opening_kernel_size,
                  iterations: int = _DEFAULTS.opening_iterations) -> np.ndarray:
    """Morphological opening (erode then dilate) of each channel.

    Removes bright features smaller than the kernel (foreground stars, hot pixels, noise) and
    keeps larger structures (the galaxy) nearly unchanged.

    Args:
        image: uint8 `(H, W, 3)`.
        kernel_shape: "ellipse", "rect" or "cross".
        kernel_size: odd kernel side >= 1; 1 means no opening.
        iterations: >= 0; 0 means no opening.

    Returns:
        uint8 `(H, W, 3)`; the input itself when `kernel_size == 1` or `iterations == 0`.
    """
    image = _check_rgb_uint8(image, "apply_opening")
    kernel_shape = _check_choice(kernel_shape, "kernel_shape", KERNEL_SHAPES)
    kernel_size = _check_int(kernel_size, "kernel_size", minimum=1)
    if kernel_size % 2 == 0:
        raise PreprocessError(f"kernel_size must be odd (3, 5, 7, ...); got {kernel_size}. "
                              f"Use {kernel_size + 1} or {kernel_size - 1}.")
    iterations = _check_int(iterations, "iterations", minimum=0)
    if kernel_size == 1 or iterations == 0:
        return image
    return cv2.morphologyEx(image, cv2.MORPH_OPEN, _kernel(kernel_shape, kernel_size), iterations=iterations)


STAGES: tuple[str, ...] = ("original", "CLAHE", "CLAHE + opening")


def preprocess_stages(image: np.ndarray, cfg: Config = _DEFAULTS) -> dict[str, np.ndarray]:
    """The preprocessing chain, stage by stage: the one definition `preprocess_image` and the lab use.

    Args:
        image: any layout `to_rgb_uint8` accepts, e.g. uint8 `(H, W, 3)`.
        cfg: uses `image_size` and the `config.PREPROCESS_FIELDS` (CLAHE, then opening).

    Returns:
        `{"original": resized RGB, "CLAHE": after CLAHE, "CLAHE + opening": the model's input}`
        (keys in `STAGES` order), each uint8 `(S, S, 3)` with `S = cfg.image_size`.

    Example:
        >>> out = preprocess_stages(np.zeros((40, 60, 3), np.uint8), Config(image_size=32))
        >>> list(out), out["CLAHE + opening"].shape
        (['original', 'CLAHE', 'CLAHE + opening'], (32, 32, 3))
    """
    _check_config(cfg)
    rgb = resize_image(to_rgb_uint8(image), cfg.image_size)
    clahe = apply_clahe(rgb, cfg.clahe_clip_limit, cfg.clahe_tile_grid, cfg.channel_mode)
    opened = apply_opening(clahe, cfg.opening_kernel_shape, cfg.opening_kernel_size, cfg.opening_iterations)
    return dict(zip(STAGES, (rgb, clahe, opened)))


def preprocess_image(image: np.ndarray, cfg: Config = _DEFAULTS) -> np.ndarray:
    """The full preprocessing of one image: to RGB uint8 -> resize -> CLAHE -> opening.

    Args:
        image: any layout `to_rgb_uint8` accepts, e.g. uint8 `(H, W, 3)`.
        cfg: uses `image_size` and the `config.PREPROCESS_FIELDS`.

    Returns:
        uint8 `(S, S, 3)` with `S = cfg.image_size` (the last of `preprocess_stages`).
    """
    return preprocess_stages(image, cfg)[STAGES[-1]]


def preprocess_batch(images: np.ndarray | Sequence[np.ndarray], cfg: Config = _DEFAULTS,
                     out: np.ndarray | None = None) -> np.ndarray:
    """`preprocess_image` over a batch.

    Args:
        images: a 4-D array `(N, H, W, C)` (C in 1, 3, 4; any dtype `to_rgb_uint8` accepts), or a
            list/tuple of single images, possibly of different sizes.
        cfg: the preprocessing parameters (see `preprocess_image`).
        out: optional uint8 `(N, S, S, 3)` array to write into (e.g. a memmap); returned.

    Returns:
        uint8 `(N, S, S, 3)` with `S = cfg.image_size`.
    """
    _check_config(cfg)
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise PreprocessError(
                f"preprocess_batch expects a 4-D array (N, H, W, C) or a list of images; got shape "
                f"{images.shape}. For one image use preprocess_image, or add a batch axis (image[None]).")
    elif not isinstance(images, (list, tuple)):
        raise PreprocessError(f"preprocess_batch expects an ndarray or a list of images; got "
                              f"{type(images).__name__}.")
    size = cfg.image_size
    expected = (len(images), size, size, 3)
    if out is None:
        out = np.empty(expected, dtype=np.uint8)
    elif out.shape != expected or out.dtype != np.uint8:
        raise PreprocessError(f"out must be uint8 {expected}; got {out.dtype} {out.shape}.")
    for i, image in enumerate(images):
        out[i] = preprocess_image(image, cfg)
    return out


INVERSE_255 = np.float32(1.0 / 255.0)  # float32(1/255) * 255 rounds to exactly 1.0


def rescale(images: np.ndarray) -> np.ndarray:
    """Map uint8 pixels to float32 in [0, 1] (x * float32(1/255)). The only uint8 -> [0, 1] place.

    A multiplication, not a division: about 1.8x faster in the tf.data pipeline, which computes the
    same float32 product (`galaxy_core.pipeline`), so both give identical bits. 0 -> 0.0, 255 -> 1.0.

    Args:
        images: uint8 array of any shape, e.g. `(N, S, S, 3)`.

    Returns:
        float32 array of the same shape, values in [0, 1].
    """
    images = _check_array(images, "images")
    if images.dtype != np.uint8:
        raise PreprocessError(f"rescale expects uint8 images (0..255); got dtype {images.dtype}. "
                              "Preprocess the images first (preprocess_image / preprocess_batch).")
    return np.multiply(images, INVERSE_255, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Argument checks and cached OpenCV objects
# --------------------------------------------------------------------------------------------
def _check_array(value: Any, name: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise PreprocessError(f"{name} must be a numpy ndarray; got {type(value).__name__}. "
                              "Convert it with np.asarray(...).")
    return value


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 as is; uint16 -> round(x / 257); float in [0, 1] -> round(x * 255)."""
    if image.dtype.byteorder not in "=|":  # e.g. big-endian arrays from FITS files
        image = image.astype(image.dtype.newbyteorder("="))
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        # 65535 / 255 = 257 exactly: full uint16 range -> full uint8 range, rounded, no clipping.
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        lo, hi = float(np.min(image)), float(np.max(image))
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
            raise PreprocessError(
                f"Float images must hold finite values in [0, 1]; got min {lo:g}, max {hi:g}. "
                "Scale the image to [0, 1] (e.g. x / x.max()) or pass uint8/uint16.")
        return np.rint(image * 255.0).astype(np.uint8)
    raise PreprocessError(f"Unsupported image dtype {image.dtype}; use uint8, uint16 or float in [0, 1] "
                          "(e.g. image.astype(np.uint8) if the values are already 0..255).")


def _check_rgb_uint8(image: Any, func: str) -> np.ndarray:
    image = _check_array(image, "image")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise PreprocessError(f"{func} expects a uint8 (H, W, 3) RGB image; got {image.dtype} "
                              f"{image.shape}. Convert it with to_rgb_uint8 first.")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise PreprocessError(f"{func} got an empty image (shape {image.shape}).")
    return image


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise PreprocessError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    if value < minimum:
        raise PreprocessError(f"{name} must be >= {minimum}; got {value}.")
    return int(value)


def _check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise PreprocessError(f"{name} must be one of {tuple(choices)}; got {value!r}.")
    return value


def _check_clahe_args(clip_limit: Any, tile_grid: Any) -> tuple[float, int]:
    if isinstance(clip_limit, (bool, np.bool_)) or not isinstance(clip_limit, (int, float, np.number)):
        raise PreprocessError(f"clip_limit must be a number > 0; got {clip_limit!r}.")
    if not np.isfinite(clip_limit) or clip_limit <= 0:
        raise PreprocessError(f"clip_limit must be a finite number > 0 (typical 1.0 to 4.0); got {clip_limit}.")
    return float(clip_limit), _check_int(tile_grid, "tile_grid", minimum=1)


def _check_config(cfg: Any) -> None:
    if not isinstance(cfg, Config):
        raise PreprocessError(f"cfg must be a galaxy_core.config.Config; got {type(cfg).__name__}.")


# A CLAHE object keeps scratch buffers, so sharing one between threads (e.g. Streamlit sessions)
# would race: the cache is per thread, and within a thread per (clip_limit, tile_grid).
_thread_local = threading.local()


def _clahe(clip_limit: float, tile_grid: int) -> "cv2.CLAHE":
    cache = getattr(_thread_local, "clahe", None)
    if cache is None:
        cache = _thread_local.clahe = {}
    key = (clip_limit, tile_grid)
    if key not in cache:
        cache[key] = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tile_grid, tile_grid))
    return cache[key]


@functools.lru_cache(maxsize=32)
def _kernel(shape: str, size: int) -> np.ndarray:
    kernel = cv2.getStructuringElement(_KERNEL_SHAPES[shape], (size, size))
    kernel.flags.writeable = False  # shared between calls
    return kernel


# --------------------------------------------------------------------------------------------
# The preprocessed cache
# --------------------------------------------------------------------------------------------
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


def default_cache_dir() -> Path:
    """`$GALAXY10_CACHE_DIR` if set, else `./cache`."""
    return Path(os.environ.get(CACHE_ENV_VAR) or "cache")


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
                              "(see galaxy_core.data.default_dataset_path).") from err
    # Normalise numbers through the Config field types so clip_limit=2 and 2.0 share a cache.
    params = {name: (float(value) if isinstance(getattr(_DEFAULTS, name), float) else value)
              for name, value in cfg.preprocess_key.items()}
    return {
        "format_version": CACHE_FORMAT_VERSION,
        "preprocess": params,
        "source": {"path": str(resolved), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                   "head_sha256": head},
    }


def cache_path(dataset_path: str | os.PathLike, cfg: Config, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder `<cache_dir>/<16 hex of sha256(key)>` a cache of this dataset and config lives in."""
    key = cache_key(dataset_path, cfg)
    return _cache_root(cache_dir) / _key_hash(key)


def is_cache_complete(path: str | os.PathLike) -> bool:
    """True when `path` holds a fully built cache (checked like `open_cache`, without raising)."""
    try:
        open_cache(path)
    except PreprocessError:
        return False
    return True


def build_cache(dataset_path: str | os.PathLike, cfg: Config, cache_dir: str | os.PathLike | None = None,
                workers: int | None = None, progress: bool = True,
                on_progress: Callable[[int, int], None] | None = None, *,
                chunk_size: int | None = None) -> Path:
    """Preprocess every image of a Galaxy10-format file once into a memory-mappable cache.

    The cache folder `<cache_dir>/<key hash>/` holds `images.npy` (uint8 `(N, S, S, 3)`, row i =
    dataset index i), `labels.npy` (int64 `(N,)`) and `meta.json`. It is built in a temporary
    sibling folder and renamed into place, so a folder with the final name is always complete; a
    complete cache for the same key is reused without any work.

    Args:
        dataset_path: the Galaxy10-format HDF5 file (read with `galaxy_core.data.open_dataset`).
        cfg: the preprocessing parameters (`cfg.preprocess_key`).
        cache_dir: parent folder of caches; default `$GALAXY10_CACHE_DIR`, else `./cache`.
        workers: processes; default all usable cores (1 for files under 512 images); 1 builds in
            this process.
        progress: draw a progress bar on stderr.
        on_progress: called as `on_progress(done, total)` after each chunk (e.g. for the app).
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
    key_hash = _key_hash(key)
    root = _cache_root(cache_dir)
    final = root / key_hash
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
            f"{free / 1e9:.2f} GB are free. Free some space or point ${CACHE_ENV_VAR} (or cache_dir) "
            "at a disk with more room.")
    tmp = root / f".tmp-{key_hash}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    started = time.perf_counter()
    try:
        # The .npy header and the (sparse) file are made here; workers write their rows in place.
        images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8,
                                           shape=(n, size, size, 3))
        del images
        np.save(tmp / "labels.npy", labels)
        bar = ProgressBar(n, desc=f"preprocess cache {key_hash}", unit="img", enabled=progress)
        with bar, contextlib.closing(_run_chunks(source, tmp / "images.npy", cfg, chunks, workers)) as counts:
            done = 0
            for count in counts:
                done += count
                bar.update(count)
                if on_progress is not None:
                    on_progress(done, n)
        _fsync(tmp / "images.npy")
        meta = {
            "key": key, "key_hash": key_hash, "source": str(source),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "n": n, "shape": [n, size, size, 3], "synthetic": synthetic,
            "build_seconds": round(time.perf_counter() - started, 3), "workers": workers,
            "opencv": cv2.__version__,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        try:
            os.replace(tmp, final)
        except OSError:
            # Another process finished the same cache first: keep theirs if it is complete.
            if is_cache_complete(final):
                return final
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if tmp.exists() and final.exists():
            shutil.rmtree(tmp, ignore_errors=True)
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
    prefix = f".tmp-{key_hash}-{socket.gethostname()}-"
    for folder in root.glob(prefix + "*"):
        try:
            pid = int(folder.name[len(prefix):].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, PermissionError, OSError):
            continue


def _fsync(path: Path) -> None:
    """Make sure the rows are on disk before the cache is published by the rename."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_dataset(path: Path):
    from galaxy_core.data import open_dataset  # imported late: data.py pulls in more dependencies

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
