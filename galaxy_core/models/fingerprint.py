"""Fingerprints that tie a derived model file (an ONNX export, its int8 copy) to the file it came from.

A derived file is trusted only when its fingerprint says it is what it claims to be, never on its
modification time: another run's `model.onnx` copied into a bundle, an ONNX file whose weights were
edited, or a `model.keras` replaced by an older one must not be used.

Each derived file `X` is written with:

- in its ONNX metadata (`metadata_props`): `SOURCE_KEY` = the SHA-256 of the source file it was made
  from (`model.keras` for the float32 export, the float32 `.onnx` for the int8 copy) and `SHAPE_KEY`
  = the model's input shape `S,S,3`;
- a sidecar `X.sha256.json` (`sidecar_path`) with the SHA-256 of `X`'s own bytes, the same source
  SHA-256 and input shape: the ONNX file's own contents are checked against it before it is loaded.

`check(path, source_sha256, input_shape)` returns None when `X` can be used, else one line saying why
not (no fingerprint, contents changed, made from another source, another input size).

Hashes are memoised per process on (path, size, mtime, ctime, inode): a server hashes each model
file once, and any rewrite of the file (even one that restores the modification time) changes ctime.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "model.keras").write_bytes(b"weights"); _ = (d / "model.onnx").write_bytes(b"graph")
    >>> _ = seal(d / "model.onnx", file_sha256(d / "model.keras"), (32, 32, 3))
    >>> check(d / "model.onnx", file_sha256(d / "model.keras"), (32, 32, 3)) is None
    True
    >>> check(d / "model.onnx", file_sha256(d / "model.keras"), (64, 64, 3))
    'it takes 32 x 32 x 3 images, the run 64 x 64 x 3'
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Sequence

SOURCE_KEY = "galaxy10.source_sha256"
SHAPE_KEY = "galaxy10.input_shape"
SIDECAR_SUFFIX = ".sha256.json"
_CHUNK = 1 << 20

_memo: dict[tuple, str] = {}
_memo_lock = threading.Lock()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, memoised while the file is unchanged.

    Raises:
        OSError: the file cannot be read.
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
    with _memo_lock:
        if key in _memo:
            return _memo[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    with _memo_lock:
        _memo[key] = value
    return value


def shape_text(shape: Sequence[int]) -> str:
    """`(32, 32, 3)` -> `"32,32,3"` (the metadata form)."""
    return ",".join(str(int(v)) for v in shape)


def stamp(proto, source_sha256: str, input_shape: Sequence[int]) -> None:
    """Record the source's SHA-256 and the input shape in an `onnx.ModelProto`'s metadata (in place)."""
    values = {SOURCE_KEY: source_sha256, SHAPE_KEY: shape_text(input_shape)}
    for prop in list(proto.metadata_props):
        if prop.key in values:
            proto.metadata_props.remove(prop)
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def sidecar_path(path: str | os.PathLike) -> Path:
    """`X.sha256.json` beside the derived file `X`."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def seal(path: str | os.PathLike, source_sha256: str, input_shape: Sequence[int]) -> Path:
    """Write the sidecar of a derived file that was just written (its own SHA-256, source, shape)."""
    from galaxy_core.io import write_json

    return write_json(sidecar_path(path), {"sha256": file_sha256(path), "source_sha256": source_sha256,
                                           "input_shape": [int(v) for v in input_shape]})


def read_seal(path: str | os.PathLike) -> dict | None:
    """The sidecar of `path` as a dict, or None when it is missing or unreadable."""
    try:
        seal_data = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return seal_data if isinstance(seal_data, dict) else None


def check(path: str | os.PathLike, source_sha256: str, input_shape: Sequence[int] | None = None) -> str | None:
    """Why the derived file `path` must not be used for the source `source_sha256`, or None if it may.

    Args:
        path: a derived file (e.g. `model.onnx`), with its sidecar.
        source_sha256: SHA-256 of the file it must have been made from (`file_sha256(model.keras)`).
        input_shape: the input shape the run's images have, `(S, S, 3)`; None = not checked.

    Returns:
        None, or one line: no fingerprint, contents changed since written, made from another source
        file, or made for another input size.
    """
    path = Path(path)
    recorded = read_seal(path)
    if recorded is None:
        return f"it has no fingerprint ({sidecar_path(path).name} is missing or unreadable)"
    try:
        actual = file_sha256(path)
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    if recorded.get("sha256") != actual:
        return "its contents changed after it was written (SHA-256 differs from its fingerprint)"
    if recorded.get("source_sha256") != source_sha256:
        return (f"it was made from another model (source SHA-256 {str(recorded.get('source_sha256'))[:12]}..., "
                f"this one {source_sha256[:12]}...)")
    if input_shape is not None:
        shape = recorded.get("input_shape")
        if [int(v) for v in input_shape] != shape:
            theirs = " x ".join(str(v) for v in shape) if isinstance(shape, list) else "an unknown size"
            return f"it takes {theirs} images, the run {' x '.join(str(int(v)) for v in input_shape)}"
    return None
