"""Image preprocessing, pure operations: to RGB -> galaxy crop -> resize -> CLAHE -> opening (uint8 -> uint8).

Every image function is pure: it takes an ndarray and returns a new ndarray (or, for identity
settings, the input itself) and never changes its argument. Images handed between modules are
`uint8 (H, W, 3)` RGB; `galaxy_core.inference.probabilities.to_model_input` maps uint8 to float32 in [0, 1]
(with `INVERSE_255`, the constant the tf.data pipeline multiplies by too).

`preprocess_stages` is the chain's one definition; `preprocess_image`, `preprocess_batch`, the
preprocessed cache (`galaxy_core.preprocessing.cache`) and the app's lab all use it.

Example:
    >>> cfg = Config()
    >>> out = preprocess_image(raw_rgb_uint8, cfg)      # uint8 (S, S, 3)
    >>> x = inference.to_model_input(out[None])           # float32 (1, S, S, 3) in [0, 1]
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Sequence

import cv2
import numpy as np

from galaxy_core.config import CHANNEL_MODES, KERNEL_SHAPES, Config
from galaxy_core.preprocessing.crop import crop_to_galaxy
from galaxy_core.errors import PreprocessError

# Defaults come from the one Config dataclass (never written down twice).
_DEFAULTS = Config()

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


STAGES: tuple[str, ...] = ("original", "galaxy crop", "CLAHE", "CLAHE + opening")


def preprocess_stages(image: np.ndarray, cfg: Config = _DEFAULTS) -> dict[str, np.ndarray]:
    """The preprocessing chain, stage by stage: the one definition `preprocess_image` and the lab use.

    Args:
        image: any layout `to_rgb_uint8` accepts, e.g. uint8 `(H, W, 3)`.
        cfg: uses `image_size` and the `config.PREPROCESS_FIELDS` (galaxy crop, CLAHE, opening).

    Returns:
        `{"original": the whole image resized, "galaxy crop": the square around the central object
        (`galaxy_core.preprocessing.crop.crop_to_galaxy`, full resolution) resized, "CLAHE": after CLAHE,
        "CLAHE + opening": the model's input}` (keys in `STAGES` order), each uint8 `(S, S, 3)` with
        `S = cfg.image_size`. With `cfg.crop_scale == 0` (the default) "galaxy crop" is "original"
        (the same array).

    Example:
        >>> out = preprocess_stages(np.zeros((40, 60, 3), np.uint8), Config(image_size=32))
        >>> list(out), out["CLAHE + opening"].shape
        (['original', 'galaxy crop', 'CLAHE', 'CLAHE + opening'], (32, 32, 3))
    """
    _check_config(cfg)
    full = to_rgb_uint8(image)
    original = resize_image(full, cfg.image_size)
    return dict(zip(STAGES, (original, *_model_stages(full, cfg, original))))


def preprocess_image(image: np.ndarray, cfg: Config = _DEFAULTS) -> np.ndarray:
    """The full preprocessing of one image: to RGB uint8 -> galaxy crop (if on) -> resize -> CLAHE -> opening.

    Args:
        image: any layout `to_rgb_uint8` accepts, e.g. uint8 `(H, W, 3)`.
        cfg: uses `image_size` and the `config.PREPROCESS_FIELDS`.

    Returns:
        uint8 `(S, S, 3)` with `S = cfg.image_size` (the last of `preprocess_stages`).
    """
    _check_config(cfg)
    return _model_stages(to_rgb_uint8(image), cfg)[-1]


def _model_stages(full: np.ndarray, cfg: Config,
                  original: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stages after "original": (galaxy crop, CLAHE, CLAHE + opening), each uint8 `(S, S, 3)`.

    `full` is the uint8 RGB image at its own size; `original`, when given, is it resized to `S`
    (the lab's first stage), reused as the crop stage when the crop is off. Without it, and with the
    crop on, the whole image is never resized: the model's input path does only the work it needs.
    """
    if cfg.crop_scale > 0:  # crop at full resolution, then resize: the galaxy keeps its detail
        cropped = resize_image(crop_to_galaxy(full, cfg.crop_scale, cfg.crop_min_fraction), cfg.image_size)
    else:
        cropped = original if original is not None else resize_image(full, cfg.image_size)
    clahe = apply_clahe(cropped, cfg.clahe_clip_limit, cfg.clahe_tile_grid, cfg.channel_mode)
    opened = apply_opening(clahe, cfg.opening_kernel_shape, cfg.opening_kernel_size, cfg.opening_iterations)
    return cropped, clahe, opened


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
