"""Infrastructure every layer shares: atomic writes, numpy-aware JSON, default folders, progress bars.

One helper for each, used everywhere in `galaxy_core` (and by `train.py` and the app):

- `atomic_file(path)` / `write_bytes` / `write_text` / `write_json`: a file appears whole or not at
  all. Data goes to a uniquely named temporary sibling (so two writers never share a temp name),
  is flushed and fsynced, gets the mode a plain `open()` would give (0666 minus the umask, never
  mkstemp's 0600), and is renamed onto the target.
- `atomic_dir(path)`: the same for a folder (run bundles): built in `.<name>.partial-<token>`,
  renamed into place; an existing folder is moved aside to `.<name>.old-<token>` and removed after.
- `dumps_json(data)`: JSON text of numpy scalars/arrays and paths.
- `default_runs_dir()`, `default_data_dir()`, `default_cache_dir()`: the only place the folder
  defaults and their environment variables live.
- `progress(iterable, ...)` / `progress_bar(total, ...)`: tqdm bars in one format on stderr,
  ``desc:  42%|####      | 420/1000 [00:03<00:04, 130it/s]``, the format the app reads back
  from a CLI's output.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_json(d / "m.json", {"acc": np.float32(0.5)}).name
    'm.json'
    >>> (d / "m.json").read_text().strip()
    '{\\n  "acc": 0.5\\n}'
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

import numpy as np

T = TypeVar("T")

RUNS_DIR_ENV = "GALAXY_RUNS_DIR"
DATA_DIR_ENV = "GALAXY10_DATA_DIR"
CACHE_DIR_ENV = "GALAXY10_CACHE_DIR"

# The one bar format (tqdm's default layout, spelled out so the app's parser and tqdm agree).
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]"


# --- default folders ------------------------------------------------------------------------------
def _env_dir(var: str, default: str) -> Path:
    return Path(os.environ.get(var) or default).expanduser().resolve()


def default_runs_dir() -> Path:
    """Where run bundles live: `$GALAXY_RUNS_DIR`, else `./runs`, made absolute."""
    return _env_dir(RUNS_DIR_ENV, "runs")


def default_data_dir() -> Path:
    """Where the dataset file lives: `$GALAXY10_DATA_DIR`, else `./data`, made absolute."""
    return _env_dir(DATA_DIR_ENV, "data")


def default_cache_dir() -> Path:
    """Where preprocessed caches live: `$GALAXY10_CACHE_DIR`, else `./cache`, made absolute."""
    return _env_dir(CACHE_DIR_ENV, "cache")


# --- file modes -----------------------------------------------------------------------------------
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode `open(path, "w")` gives a new file: 0o666 minus the umask."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """The mode `mkdir` gives a new folder: 0o777 minus the umask."""
    return 0o777 & ~current_umask()


# --- atomic files ---------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a unique temporary path next to `path`; on success it is renamed onto `path`.

    For writers that need a file name rather than a file object (h5py, Keras, matplotlib). On an
    exception the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[Any]:
    """Open a temporary sibling of `path` for writing; rename it onto `path` when the block ends.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_file(p, "w", encoding="utf-8") as f:
        ...     _ = f.write("hello")
        >>> p.read_text()
        'hello'
    """
    if "w" not in mode:
        raise ValueError(f"atomic_file writes a new file; mode must contain 'w', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=encoding) as f:
            yield f
            f.flush()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns `path`."""
    with atomic_file(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically; returns `path`."""
    with atomic_file(path, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


# --- JSON -----------------------------------------------------------------------------------------
def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps_json(data: Any) -> str:
    """Indented JSON text of `data`; numpy scalars and arrays become numbers and lists, paths strings."""
    return json.dumps(data, indent=2, default=_json_default, allow_nan=True)


def to_jsonable(data: Any) -> Any:
    """`data` as plain Python (what `json.loads(dumps_json(data))` gives); fails early if it cannot."""
    return json.loads(dumps_json(data))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write `data` as indented JSON (plus a newline) to `path` atomically; returns `path`."""
    return write_text(path, dumps_json(data) + "\n")


# --- atomic folders -------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Build a folder in a hidden temporary sibling and rename it to `path` when the block ends.

    The temporary folder is `.<name>.partial-<host>-<pid>-<token>` (`partial_owner` reads the
    host and pid back, so leftovers of dead processes can be found). With `replace`, an existing
    `path` is moved aside (`.<name>.old-<token>`) just before the rename and removed after it; if
    the rename fails it is put back. Without `replace`, a `path` that exists by the end (another
    process finished the same folder first) is kept and the new folder is dropped. On an exception
    inside the block the temporary folder is removed and `path` is untouched. Files in the folder
    get the umask's mode.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(4)
    tmp = path.parent / f".{path.name}.partial-{socket.gethostname()}-{os.getpid()}-{token}"
    tmp.mkdir()
    os.chmod(tmp, dir_mode())
    try:
        yield tmp
        _fix_modes(tmp)
        if replace:
            _swap_into_place(tmp, path, token)
        else:
            try:
                os.rename(tmp, path)
            except OSError:
                if not path.exists():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # someone else's finished folder wins
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def partial_owner(folder: str | os.PathLike) -> tuple[str, int] | None:
    """`(host, pid)` of the process building an `atomic_dir` temporary folder, or None.

    Example:
        >>> partial_owner(".run.partial-node1-4242-0a1b2c3d")
        ('node1', 4242)
    """
    name = Path(folder).name
    if ".partial-" not in name:
        return None
    rest = name.rsplit(".partial-", 1)[1]
    host, sep, tail = rest.rpartition("-")  # tail = token
    host, sep2, pid = host.rpartition("-")
    if not (sep and sep2 and pid.isdigit()):
        return None
    return host, int(pid)


def _fix_modes(folder: Path) -> None:
    fmode, dmode = file_mode(), dir_mode()
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), dmode)
        for name in files:
            os.chmod(os.path.join(root, name), fmode)


def _swap_into_place(tmp: Path, final: Path, token: str) -> None:
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{token}"
        os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        if old is not None:
            os.rename(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- progress -------------------------------------------------------------------------------------
def progress_bar(total: int | None, desc: str = "", unit: str = "it", disable: bool = False, **kwargs):
    """A tqdm bar on stderr in the project's one format (`BAR_FORMAT`). Use as a context manager."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=disable, file=sys.stderr,
                bar_format=BAR_FORMAT if total else None, dynamic_ncols=True, **kwargs)


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it",
             disable: bool = False) -> Iterator[T]:
    """Iterate `iterable` with a tqdm bar (see `progress_bar`)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with progress_bar(total, desc=desc, unit=unit, disable=disable) as bar:
        for item in iterable:
            yield item
            bar.update(1)
