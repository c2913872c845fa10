"""Download Galaxy10 DECaLS: resumable (HTTP Range), verified (SHA-256), atomic, with a mirror.

`download_dataset` fetches `Galaxy10_DECals.h5` into `<file>.part`, continues an interrupted
transfer with a Range request, checks the published SHA-256 and only then gives the file its final
name. `python -m galaxy_core.data download` is its command line (`add_download_arguments` and
`run_download` are the parts `galaxy_core.data.galaxy10.main` dispatches to).

Example:
    >>> path = download_dataset()            # doctest: +SKIP  (2.5 GB)
    >>> path.name
    'Galaxy10_DECals.h5'
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import math
import os
import re
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Sequence

from galaxy_core.errors import DownloadError
from galaxy_core.io import DATA_DIR_ENV, default_data_dir, progress_bar

DATASET_URL = "https://zenodo.org/records/10845026/files/Galaxy10_DECals.h5"
MIRROR_URL = "https://www.astro.utoronto.ca/~hleung/shared/Galaxy10/Galaxy10_DECals.h5"
# SHA-256 of Galaxy10_DECals.h5 as published by the dataset's author.
DATASET_SHA256 = "19aefc477c41bb7f77ff07599a6b82a038dc042f889a111b0d4d98bb755c1571"
DATASET_FILENAME = "Galaxy10_DECals.h5"
DEFAULT_TIMEOUT_S = 60.0

_READ_BLOCK = 1 << 20  # 1 MiB per socket read / hash update
_USER_AGENT = "galaxy10-explorer (python urllib)"


# --------------------------------------------------------------------------------------------
# Paths and checksums
# --------------------------------------------------------------------------------------------
def default_dataset_path() -> Path:
    """Where the real dataset file is expected: `io.default_data_dir() / DATASET_FILENAME`."""
    return default_data_dir() / DATASET_FILENAME


def sha256_file(path: str | Path, progress: bool = False) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (optionally with a progress bar)."""
    path = Path(path)
    digest = hashlib.sha256()
    total = path.stat().st_size
    with open(path, "rb") as f, progress_bar(total, desc=f"sha256 {path.name}", unit="B",
                                             disable=not progress, unit_scale=True) as bar:
        while block := f.read(_READ_BLOCK):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def check_url(url: str) -> str:
    """`url` if it is a full http(s) URL with a host; else ValueError saying how to write it."""
    parts = urllib.parse.urlsplit(str(url))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not a full http(s) URL; write the scheme and host, e.g. "
                         f"https://{str(url).split('://')[-1].lstrip('/')}")
    return str(url)


def check_timeout(seconds: float) -> float:
    """`seconds` as a float if it is finite and > 0; else ValueError."""
    value = float(seconds)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"the timeout must be a number of seconds > 0, got {seconds!r}")
    return value


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
                     timeout: float = DEFAULT_TIMEOUT_S) -> Path:
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
    timeout = check_timeout(timeout)
    urls = [check_url(url) for url in urls]
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
        _Unreachable: no connection to the server (partial data, if any, is kept).
        _Failed: an HTTP error status, no answer within `timeout` on an accepted connection, or
            the transfer stopped early (partial data kept).
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
    except TimeoutError as err:
        # Raised bare (not wrapped in URLError) while waiting for the answer: the server took
        # the connection but sent nothing. A connect timeout arrives as URLError (below).
        raise _Failed(f"timed out: the server accepted the connection but sent no answer within "
                      f"{timeout:g} s (overloaded or stuck; try again later or raise --timeout)") from err
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
        with f, progress_bar(total, desc=f"download {part.name[:-5]}", unit="B", disable=not progress,
                             unit_scale=True) as bar:
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
# Command line parts (`python -m galaxy_core.data download`)
# --------------------------------------------------------------------------------------------
def _url_arg(text: str) -> str:
    try:
        return check_url(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _timeout_arg(text: str) -> float:
    try:
        return check_timeout(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}") from None


def add_download_arguments(parser: argparse.ArgumentParser) -> None:
    """The `download` subcommand's flags (bad URLs and timeouts are usage errors, exit 2)."""
    parser.add_argument("--dest", type=Path, default=None,
                        help=f"target folder (default: ${DATA_DIR_ENV} or ./data)")
    parser.add_argument("--url", action="append", default=None, type=_url_arg,
                        help="full http(s) URL to try (repeatable; default: Zenodo, then the mirror)")
    parser.add_argument("--timeout", type=_timeout_arg, default=DEFAULT_TIMEOUT_S,
                        help=f"socket timeout in seconds, > 0 (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_download(args: argparse.Namespace) -> Path:
    """Run the `download` subcommand; returns the verified file (DownloadError on failure)."""
    return download_dataset(args.dest, urls=tuple(args.url or (DATASET_URL, MIRROR_URL)),
                            progress=not args.no_progress, timeout=args.timeout)
