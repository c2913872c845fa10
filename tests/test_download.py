"""galaxy_core.data.download: resumable, verified download against a local HTTP server (127.0.0.1 only)."""

import hashlib
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from galaxy_core.data import galaxy10 as data
from galaxy_core.data import download
from galaxy_core.config import CLASS_NAMES
from galaxy_core.errors import DownloadError

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# A local file server: Range support, and switches to drop the connection or serve wrong bytes.
# --------------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server naming)
        srv = self.server.owner
        srv.ranges.append(self.headers.get("Range"))
        if self.path != "/Galaxy10_DECals.h5":
            self.send_error(404)
            return
        body = srv.payload if not srv.wrong_bytes else bytes(b ^ 0xFF for b in srv.payload[:16]) + srv.payload[16:]
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and srv.honour_range:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        chunk = body[start:]
        if srv.drop_after is not None:  # one-shot: announce everything, send part, hang up
            chunk, srv.drop_after = chunk[:srv.drop_after], None
        self.wfile.write(chunk)
        self.wfile.flush()

    def log_message(self, *args):
        pass


class FileServer:
    def __init__(self, payload: bytes):
        self.payload = payload
        self.ranges: list = []  # the Range header of every request (None when absent)
        self.drop_after = None
        self.wrong_bytes = False
        self.honour_range = True
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/Galaxy10_DECals.h5"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def payload():
    return np.random.default_rng(1).integers(0, 256, 300_000, dtype=np.uint8).tobytes()


@pytest.fixture
def server(payload):
    srv = FileServer(payload)
    yield srv
    srv.close()


def dead_url() -> str:
    """A URL on a local port where nothing listens (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/Galaxy10_DECals.h5"


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def fetch(dest, urls, payload, **kw):
    return download.download_dataset(dest, urls=urls, sha256=sha(payload), progress=False, timeout=5, **kw)


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------
def test_constants_and_default_paths(monkeypatch, tmp_path):
    assert data.CLASS_NAMES == CLASS_NAMES and len(data.CLASS_COUNTS) == len(CLASS_NAMES)
    assert sum(data.CLASS_COUNTS) == 17736
    assert download.DATASET_URL.endswith(download.DATASET_FILENAME)
    assert download.MIRROR_URL.endswith(download.DATASET_FILENAME)
    monkeypatch.delenv("GALAXY10_DATA_DIR", raising=False)
    # the folder defaults live in galaxy_core.io (made absolute there)
    assert download.default_dataset_path() == Path("data").resolve() / "Galaxy10_DECals.h5"
    monkeypatch.setenv("GALAXY10_DATA_DIR", str(tmp_path))
    assert download.default_dataset_path() == tmp_path / "Galaxy10_DECals.h5"


def test_download_full_verifies_and_skips_when_present(tmp_path, server, payload):
    path = fetch(tmp_path, (server.url,), payload)
    assert path == tmp_path / download.DATASET_FILENAME
    assert path.read_bytes() == payload
    assert not (tmp_path / "Galaxy10_DECals.h5.part").exists()
    assert download.sha256_file(path) == sha(payload)
    requests = len(server.ranges)
    assert fetch(tmp_path, (server.url,), payload) == path  # verified file present: no request
    assert len(server.ranges) == requests


def test_download_interrupted_then_resumed_with_range(tmp_path, server, payload):
    server.drop_after = 100_000
    with pytest.raises(DownloadError, match="partial data is kept"):
        fetch(tmp_path, (server.url,), payload)
    part = tmp_path / "Galaxy10_DECals.h5.part"
    assert part.stat().st_size == 100_000
    assert not (tmp_path / download.DATASET_FILENAME).exists()

    path = fetch(tmp_path, (server.url,), payload)
    assert server.ranges[-1] == "bytes=100000-"
    assert path.read_bytes() == payload
    assert not part.exists()


def test_download_restarts_when_server_ignores_range(tmp_path, server, payload):
    server.honour_range = False
    (tmp_path / "Galaxy10_DECals.h5.part").write_bytes(b"stale bytes from another file")
    path = fetch(tmp_path, (server.url,), payload)
    assert server.ranges[-1] == "bytes=29-"  # asked to resume, got a 200, started over
    assert path.read_bytes() == payload


def test_download_checksum_mismatch_is_refused(tmp_path, server, payload):
    server.wrong_bytes = True
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        fetch(tmp_path, (server.url,), payload)
    assert not (tmp_path / download.DATASET_FILENAME).exists()
    assert not (tmp_path / "Galaxy10_DECals.h5.part").exists()
    assert (tmp_path / "Galaxy10_DECals.h5.bad").stat().st_size == len(payload)


def test_download_present_file_with_wrong_checksum_is_replaced(tmp_path, server, payload):
    (tmp_path / download.DATASET_FILENAME).write_bytes(b"not the dataset")
    path = fetch(tmp_path, (server.url,), payload)
    assert path.read_bytes() == payload
    assert (tmp_path / "Galaxy10_DECals.h5.bad").read_bytes() == b"not the dataset"


def test_download_falls_back_to_mirror(tmp_path, server, payload):
    missing = server.url.replace("Galaxy10_DECals.h5", "gone.h5")  # HTTP 404
    path = fetch(tmp_path, (dead_url(), missing, server.url), payload)
    assert path.read_bytes() == payload


def test_download_offline_gives_one_clear_message(tmp_path, payload):
    urls = (dead_url(), dead_url())
    with pytest.raises(DownloadError) as info:
        fetch(tmp_path, urls, payload)
    message = str(info.value)
    assert "offline" in message
    assert str((tmp_path / download.DATASET_FILENAME).resolve()) in message
    assert all(url in message for url in urls)
    assert message.count("Cannot download") == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_cli_download_offline_prints_error_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "galaxy_core.data", "download", "--dest", str(tmp_path),
         "--url", dead_url(), "--timeout", "5", "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: Cannot download")
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------------------------
# Bad arguments and a server that never answers (issue 10, bug 7)
# --------------------------------------------------------------------------------------------
def _cli_download(*args):
    return subprocess.run([sys.executable, "-m", "galaxy_core.data", "download", *args, "--no-progress"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, expected", [
    (["--url", "example.org/Galaxy10_DECals.h5"], "not a full http(s) URL"),
    (["--url", "ftp://example.org/x.h5"], "not a full http(s) URL"),
    (["--timeout", "0"], "must be a number of seconds > 0"),
    (["--timeout", "-3"], "must be a number of seconds > 0"),
    (["--timeout", "soon"], "must be a number of seconds > 0"),
])
def test_cli_download_bad_arguments_are_usage_errors(tmp_path, args, expected):
    result = _cli_download("--dest", str(tmp_path), *args)
    assert result.returncode == 2
    assert expected in result.stderr and "usage:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())


def test_download_rejects_bad_arguments_in_the_library(tmp_path):
    with pytest.raises(ValueError, match="https://host/path"):
        download.download_dataset(tmp_path, urls=("host/path",), progress=False)
    with pytest.raises(ValueError, match="> 0"):
        download.download_dataset(tmp_path, urls=("http://127.0.0.1:9/x.h5",), timeout=0, progress=False)


@pytest.fixture
def silent_server():
    """A port on 127.0.0.1 that accepts connections (kernel backlog) but never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/Galaxy10_DECals.h5"
    sock.close()


def test_server_that_never_answers_is_a_timeout_not_offline(tmp_path, payload, silent_server):
    with pytest.raises(DownloadError) as info:
        download.download_dataset(tmp_path, urls=(silent_server,), sha256=sha(payload), progress=False,
                                  timeout=0.5)
    message = str(info.value)
    assert "timed out" in message and "sent no answer within 0.5 s" in message
    assert "offline" not in message and silent_server in message
