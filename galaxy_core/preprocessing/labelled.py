"""Your own labelled images -> a Galaxy10-format HDF5 file, so training runs unchanged on them.

Two forms of a labelled image set:

- a folder with one subfolder per class (the subfolder names are the class names, in sorted order);
  hidden entries (".DS_Store", ".git") are skipped; files directly in the folder that are not
  images (a README, a labels table) are ignored;
- a table of `path,label` (CSV, Parquet or FITS; `galaxy_core.data.label_table`).

`import_labelled` decodes every image with `galaxy_core.preprocessing.decode.read_image` (the
decoder `predict` uses: PNG, JPEG, TIFF, BMP, WebP of any size), crops it to its central square and
resizes it to one common side, and writes `images` uint8 `(N, S, S, 3)`, `ans` labels, and `ra`,
`dec`, `redshift`, `pxscale` as NaN (unknown) into `<cache_dir>/labelled/<key>.h5`, with the
attributes `class_names` (JSON list), `labelled`, `source` and `unreadable` (JSON list of
`[path, reason]`). The key hashes the file list with each file's size and modification time, the
labels, the class names and the side rule, so the file is built once and rebuilt when any image
changes. Files that cannot be decoded are listed and left out (with a count), never a crash.

The common side S is the median short side of the images, clipped to `[min_side, MAX_SIDE]`
(`min_side` is the model's input size, so preprocessing never has to enlarge an image).

Example (not run: needs image files):
    result = import_labelled("my_rings/", cache_dir="cache", min_side=64)
    result.path, result.n, result.unreadable
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from galaxy_core.data.label_table import is_label_table, read_label_table
from galaxy_core.errors import DatasetError, PreprocessError
from galaxy_core.io import atomic_path, default_cache_dir, progress

IMPORT_VERSION = 1  # bump when the written file changes for the same inputs
IMPORT_SUBDIR = "labelled"
MAX_SIDE = 512
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
_WRITE_CHUNK = 64


@dataclass(frozen=True)
class LabelledSet:
    """What a labelled folder or table holds: absolute image paths, int64 labels `(N,)`, class names."""

    source: Path
    paths: tuple[Path, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]


@dataclass
class ImportResult:
    """The Galaxy10-format file written (or found), its image count and the files left out."""

    path: Path
    n: int
    class_names: tuple[str, ...]
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    built: bool = False


def is_labelled_source(path: str | Path) -> bool:
    """Whether `--data PATH` is a labelled folder or table (not a Galaxy10-format HDF5 file)."""
    path = Path(path)
    return path.is_dir() or is_label_table(path)


def scan(path: str | Path, class_names: Sequence[str] | None = None) -> LabelledSet:
    """The images and labels of a class folder or a `path,label` table (nothing decoded yet).

    Raises:
        DatasetError: no class folder, one class only, an empty class folder, a folder inside a
            class folder, images loose in the top folder, or a bad table (see `read_label_table`).
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"Labelled data {path} not found.")
    if path.is_dir():
        if class_names:
            raise DatasetError("--class-names names the indices of a label table; a class folder's "
                               "classes are its subfolder names.")
        return _scan_folder(path)
    table = read_label_table(path, class_names)
    _need_two(table.class_names, path)
    return LabelledSet(path, table.paths, table.labels, table.class_names)


def _visible(entries) -> list[Path]:
    return sorted(e for e in entries if not e.name.startswith("."))


def _scan_folder(root: Path) -> LabelledSet:
    entries = _visible(root.iterdir())
    folders = [e for e in entries if e.is_dir()]
    loose = [e.name for e in entries if e.is_file() and e.suffix.lower() in IMAGE_SUFFIXES]
    if loose:
        raise DatasetError(f"{root} holds images directly ({len(loose)}, e.g. {loose[0]!r}); put each "
                           f"image in the subfolder of its class: {root}/<class name>/<image>.")
    if not folders:
        raise DatasetError(f"{root} has no class subfolders. Labelled images go in one subfolder per "
                           f"class ({root}/rings/*.png, {root}/bars/*.png, ...), or give a table of "
                           f"path,label (CSV, Parquet or FITS).")
    _need_two(tuple(f.name for f in folders), root)
    paths, labels = [], []
    for label, folder in enumerate(folders):
        inside = _visible(folder.iterdir())
        nested = [e.name for e in inside if e.is_dir()]
        if nested:
            raise DatasetError(f"Class folder {folder} holds folder(s) {nested[:5]}: one level of class "
                               f"folders is expected, each holding image files only. Move the images "
                               f"up, or make each inner folder a class of its own.")
        files = [e for e in inside if e.is_file()]
        if not files:
            raise DatasetError(f"Class folder {folder} is empty: add its images, or remove the folder "
                               f"if {folder.name!r} is not a class.")
        paths += files
        labels += [label] * len(files)
    return LabelledSet(root, tuple(paths), np.asarray(labels, np.int64), tuple(f.name for f in folders))


def _need_two(names: Sequence[str], where: Path) -> None:
    if len(names) < 2:
        raise DatasetError(f"{where} has only one class ({list(names)}); a classifier needs at least 2 "
                           f"classes. Add a folder (or label) for the other class(es).")


def import_key(lset: LabelledSet, min_side: int) -> str:
    """16 hex digits naming the imported file: file list + sizes + mtimes, labels, names, side rule."""
    rows = []
    for p, label in zip(lset.paths, lset.labels.tolist()):
        try:
            st = p.stat()
            stamp = [st.st_size, st.st_mtime_ns]
        except OSError:
            stamp = None  # missing now: listed as unreadable, and a new file once it appears
        rows.append([str(p.resolve()), label, stamp])
    text = json.dumps({"v": IMPORT_VERSION, "rows": rows, "names": list(lset.class_names),
                       "min_side": int(min_side), "max_side": MAX_SIDE}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def import_labelled(path: str | Path, cache_dir: str | Path | None = None,
                    class_names: Sequence[str] | None = None, min_side: int = 32,
                    show_progress: bool = True, log: Callable[[str], None] | None = None) -> ImportResult:
    """Import a labelled folder or table into a Galaxy10-format file (built once; see module doc).

    Args:
        path: the class folder or the `path,label` table.
        cache_dir: parent of the `labelled/` folder (default `io.default_cache_dir()`).
        class_names: names of a table's label indices, or the order of its label names.
        min_side: the smallest common side (the model's `image_size`).
        show_progress: a tqdm bar while decoding.
        log: where the summary lines go (default: nowhere).

    Returns:
        ImportResult; `unreadable` lists `(path, reason)` of each file left out.

    Raises:
        DatasetError: see `scan`; or every image of a class (or all images) unreadable.
    """
    log = log or (lambda text: None)
    lset = scan(path, class_names)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = root / IMPORT_SUBDIR / f"{import_key(lset, min_side)}.h5"
    if out.is_file():
        return _result_of(out, built=False)
    headers, unreadable = _read_headers(lset, show_progress)
    if not headers:
        raise DatasetError(f"None of the {len(lset.paths)} files of {lset.source} is a readable image "
                           f"(first: {unreadable[0][0]}: {unreadable[0][1]}).")
    side = common_side([h for h in headers.values()], min_side)
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = _write(out, lset, sorted(headers), side, unreadable, show_progress)
    log(f"imported {kept} images of {len(lset.class_names)} classes from {lset.source} at {side} px "
        f"into {out}" + (f"; {len(unreadable)} unreadable file(s) left out" if unreadable else ""))
    return _result_of(out, built=True)


def common_side(shapes: Sequence[tuple[int, int]], min_side: int) -> int:
    """The median short side of `(width, height)` pairs, clipped to `[min_side, MAX_SIDE]`."""
    short = np.median([min(w, h) for w, h in shapes])
    return int(np.clip(round(float(short)), min_side, max(MAX_SIDE, min_side)))


def square_resize(image: np.ndarray, side: int) -> np.ndarray:
    """The central square of `image` uint8 `(H, W, 3)`, resized to uint8 `(side, side, 3)`."""
    import cv2

    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    square = image[top:top + s, left:left + s]
    if s == side:
        return np.ascontiguousarray(square)
    interp = cv2.INTER_AREA if s > side else cv2.INTER_LINEAR
    return cv2.resize(square, (side, side), interpolation=interp)


def _read_headers(lset: LabelledSet, show_progress: bool):
    """`{row: (width, height)}` of the files whose header parses, and `[(path, reason)]` of the rest."""
    from galaxy_core.preprocessing.decode import check_pixel_count, read_header

    headers, unreadable = {}, []
    for i, p in enumerate(progress(lset.paths, desc="scan images", unit="file", disable=not show_progress)):
        try:
            data = p.read_bytes()
            header = read_header(data, f"image file {str(p)!r}")
            check_pixel_count(header, f"image file {str(p)!r}")
            headers[i] = (header.width, header.height)
        except (OSError, PreprocessError) as err:
            unreadable.append((str(p), _reason(err)))
    return headers, unreadable


def _reason(err: Exception) -> str:
    return err.strerror or str(err) if isinstance(err, OSError) else str(err)


def _write(out: Path, lset: LabelledSet, rows: list[int], side: int, unreadable: list,
           show_progress: bool) -> int:
    """Decode, square and resize `rows` of `lset` into `out` (atomic); returns the images kept."""
    import h5py

    from galaxy_core.preprocessing.decode import read_image

    kept_labels: list[int] = []
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        images = f.create_dataset("images", shape=(0, side, side, 3), maxshape=(None, side, side, 3),
                                  dtype=np.uint8, chunks=(1, side, side, 3))
        buffer: list[np.ndarray] = []
        for row in progress(rows, desc="import images", unit="image", disable=not show_progress):
            try:
                buffer.append(square_resize(read_image(lset.paths[row]), side))
                kept_labels.append(int(lset.labels[row]))
            except PreprocessError as err:
                unreadable.append((str(lset.paths[row]), str(err)))
            if len(buffer) == _WRITE_CHUNK:
                _append(images, buffer)
        _append(images, buffer)
        labels = np.asarray(kept_labels, np.int64)
        _check_every_class(labels, lset)
        n = labels.size
        f.create_dataset("ans", data=labels.astype(np.uint8 if len(lset.class_names) <= 256 else np.int32))
        for key in ("ra", "dec", "redshift", "pxscale"):
            f.create_dataset(key, data=np.full(n, np.nan))
        f.attrs["class_names"] = json.dumps(list(lset.class_names))
        f.attrs["labelled"] = True
        f.attrs["synthetic"] = False
        f.attrs["source"] = str(lset.source.resolve())
        f.attrs["unreadable"] = json.dumps(sorted(unreadable))
        f.attrs["import_version"] = IMPORT_VERSION
    return n


def _append(dataset, buffer: list[np.ndarray]) -> None:
    if buffer:
        start = dataset.shape[0]
        dataset.resize(start + len(buffer), axis=0)
        dataset[start:] = np.stack(buffer)
        buffer.clear()


def _check_every_class(labels: np.ndarray, lset: LabelledSet) -> None:
    counts = np.bincount(labels, minlength=len(lset.class_names))
    empty = [lset.class_names[c] for c in np.flatnonzero(counts == 0)]
    if empty:
        raise DatasetError(f"{lset.source}: no readable image in class(es) {empty}; every class needs "
                           f"images (see the unreadable files listed above).")


def _result_of(path: Path, built: bool) -> ImportResult:
    import h5py

    with h5py.File(path, "r") as f:
        names = tuple(json.loads(f.attrs["class_names"]))
        unreadable = [tuple(item) for item in json.loads(f.attrs.get("unreadable", "[]"))]
        n = int(f["images"].shape[0])
    return ImportResult(path, n, names, unreadable, built)


def describe_unreadable(unreadable: Sequence[tuple[str, str]], limit: int = 10) -> str:
    """Lines naming the files left out: `N unreadable file(s) left out:` then up to `limit` of them."""
    if not unreadable:
        return "all files read"
    lines = [f"{len(unreadable)} unreadable file(s) left out:"]
    lines += [f"  {p}: {reason}" for p, reason in list(unreadable)[:limit]]
    if len(unreadable) > limit:
        lines.append(f"  ... and {len(unreadable) - limit} more (all listed in the imported file's "
                     f"'unreadable' attribute)")
    return "\n".join(lines)
