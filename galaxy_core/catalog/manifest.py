"""`OUT/_manifest.json`: what a catalogue folder was made from, and the guards built on it.

The manifest records the run (name, path and a SHA-256 of its model, config and morphology
classifier), the input's identity (`galaxy_core.catalog.inputs`), the options that change the
rows (`RESULT_OPTIONS`), the partitioning and the partitions done (as `[first, last]` ranges).
The part files themselves are the done-markers (`writer.committed_parts`); the manifest's list is
refreshed from them as the job goes and at its end.

A rerun into the same folder must match the manifest on run, input and options (`mismatch` says
what differs); `--overwrite` clears a folder only when it is a catalogue output holding nothing
but the catalogue's own files (`clear_output`). `output_lock` keeps two commands off one folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from galaxy_core.catalog.inputs import CatalogError
from galaxy_core.catalog.partitions import STAGED_NAME
from galaxy_core.catalog.writer import PART_PATTERN, committed_parts
from galaxy_core.io import write_json

MANIFEST_NAME = "_manifest.json"
LOCK_NAME = "_lock"
FORMAT = "galaxy-catalog/1"
RESULT_OPTIONS = ("tta", "cnn_only", "backend", "partition_size")
RUN_MEMBERS = ("model.keras", "config.json", "morphology.skops")


def run_identity(bundle_path: str | os.PathLike) -> dict[str, str]:
    """The run's name, absolute path and a SHA-256 over its model, config and morphology files."""
    path = Path(bundle_path).resolve()
    digest = hashlib.sha256()
    for name in RUN_MEMBERS:
        member = path / name
        if member.is_file():
            digest.update(name.encode() + b"\0")
            with open(member, "rb") as f:
                while block := f.read(1 << 22):
                    digest.update(block)
    return {"name": path.name, "path": str(path), "sha256": digest.hexdigest()}


def new_manifest(run: dict[str, Any], source: dict[str, Any], options: dict[str, Any], n_rows: int,
                 n_partitions: int, class_names: Sequence[str], columns: dict[str, Any],
                 access: dict[str, Any]) -> dict[str, Any]:
    """A manifest for a new catalogue folder (no partition done yet).

    `access` says where the images are (`kind`, `path`, `path_column`, `base_dir`; for the app's
    gallery); `columns` the carried columns and the probability column of each class.
    """
    return {"format": FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "run": run, "input": source, "access": access, "options": {k: options[k] for k in RESULT_OPTIONS},
            "rows": n_rows, "partitions": n_partitions, "class_names": list(class_names),
            "columns": columns, "partitions_done": [], "complete": False}


def read_manifest(out: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of a catalogue folder, or None when it has none."""
    path = Path(out) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CatalogError(f"{path} cannot be read ({err}); rerun with --overwrite to start over") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CatalogError(f"{path} is not a catalogue manifest ({FORMAT}); use another --out")
    return data


def mismatch(old: dict[str, Any], run: dict[str, str], source: dict[str, Any],
             options: dict[str, Any]) -> str | None:
    """Why a rerun cannot resume the folder of manifest `old` (None when it can)."""
    if old["run"]["sha256"] != run["sha256"]:
        return (f"it was made with the run {old['run']['name']!r} ({old['run']['path']}), and "
                f"{run['path']} is another run (or the run's model or config changed)")
    if old["input"] != source:
        changed = sorted(k for k in set(old["input"]) | set(source) if old["input"].get(k) != source.get(k))
        return f"it was made from another input (differs in: {', '.join(changed)})"
    diffs = [f"{k} {old['options'].get(k)!r} -> {options[k]!r}" for k in RESULT_OPTIONS
             if old["options"].get(k) != options[k]]
    if diffs:
        return "it was made with other options (" + ", ".join(diffs) + ")"
    return None


def done_ranges(parts: Sequence[int]) -> list[list[int]]:
    """Sorted partition numbers as `[first, last]` ranges.

    Example:
        >>> done_ranges([0, 1, 2, 5, 7, 8])
        [[0, 2], [5, 5], [7, 8]]
    """
    ranges: list[list[int]] = []
    for i in sorted(parts):
        if ranges and ranges[-1][1] == i - 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    return ranges


def record_progress(out: str | os.PathLike, manifest: dict[str, Any]) -> dict[str, Any]:
    """Refresh the manifest's partitions done from the part files on disk and write it."""
    parts = [i for i in committed_parts(out) if i < manifest["partitions"]]
    manifest = dict(manifest, partitions_done=done_ranges(parts),
                    complete=len(parts) == manifest["partitions"])
    write_json(Path(out) / MANIFEST_NAME, manifest)
    return manifest


def is_own_file(name: str) -> bool:
    """Whether a file name is one the catalogue writes (manifest, lock, staged input, parts, temporaries)."""
    if name in (MANIFEST_NAME, LOCK_NAME, STAGED_NAME) or PART_PATTERN.match(name):
        return True
    return name.startswith(".") and name.endswith(".tmp") and \
        (name[1:].startswith(("part-", MANIFEST_NAME, STAGED_NAME)))


def check_output(out: str | os.PathLike) -> None:
    """Refuse an `--out` that is a file, or a non-empty folder that is not a catalogue output."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CatalogError(f"--out {out} is a file, not a folder")
    if out.is_dir() and not (out / MANIFEST_NAME).is_file() and any(not is_own_file(p.name) for p in out.iterdir()):
        raise CatalogError(f"--out {out} is a folder that is not a catalogue output (no {MANIFEST_NAME}) and "
                           f"not empty: give a new or empty folder")


def clear_output(out: str | os.PathLike) -> int:
    """Delete a catalogue output's own files (for `--overwrite`); returns how many.

    Raises:
        CatalogError: `out` is not a catalogue output, or holds files the catalogue did not write
            (nothing is deleted then).
    """
    out = Path(out)
    if not out.exists():
        return 0
    check_output(out)
    read_manifest(out)  # a folder with a foreign _manifest.json is not ours
    names = sorted(os.listdir(out))
    foreign = [n for n in names if not is_own_file(n) or not (out / n).is_file()]
    if foreign:
        raise CatalogError(f"--overwrite refused: {out} holds files the catalogue did not write "
                           f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); nothing was deleted")
    for name in names:
        if name != LOCK_NAME:
            (out / name).unlink()
    return len(names)


@contextlib.contextmanager
def output_lock(out: str | os.PathLike) -> Iterator[None]:
    """Hold `OUT/_lock` (an advisory lock) for the job; refuse if another command holds it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_NAME, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            raise CatalogError(f"another catalogue command is writing {out}; wait for it or use another --out") \
                from err
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
