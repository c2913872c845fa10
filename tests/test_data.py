"""galaxy_core.data: download (against a local HTTP server), reader validation, splits, weights."""

import hashlib
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h5py
import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from conftest import write_galaxy10_like
from galaxy_core import data
from galaxy_core.config import CLASS_NAMES
from galaxy_core.errors import DatasetError, DownloadError

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
    return data.download_dataset(dest, urls=urls, sha256=sha(payload), progress=False, timeout=5, **kw)


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------
def test_constants_and_default_paths(monkeypatch, tmp_path):
    assert data.CLASS_NAMES == CLASS_NAMES and len(data.CLASS_COUNTS) == len(CLASS_NAMES)
    assert sum(data.CLASS_COUNTS) == 17736
    assert data.DATASET_URL.endswith(data.DATASET_FILENAME) and data.MIRROR_URL.endswith(data.DATASET_FILENAME)
    monkeypatch.delenv("GALAXY10_DATA_DIR", raising=False)
    assert data.default_data_dir() == Path("data")
    monkeypatch.setenv("GALAXY10_DATA_DIR", str(tmp_path))
    assert data.default_dataset_path() == tmp_path / "Galaxy10_DECals.h5"


def test_download_full_verifies_and_skips_when_present(tmp_path, server, payload):
    path = fetch(tmp_path, (server.url,), payload)
    assert path == tmp_path / data.DATASET_FILENAME
    assert path.read_bytes() == payload
    assert not (tmp_path / "Galaxy10_DECals.h5.part").exists()
    assert data.sha256_file(path) == sha(payload)
    requests = len(server.ranges)
    assert fetch(tmp_path, (server.url,), payload) == path  # verified file present: no request
    assert len(server.ranges) == requests


def test_download_interrupted_then_resumed_with_range(tmp_path, server, payload):
    server.drop_after = 100_000
    with pytest.raises(DownloadError, match="partial data is kept"):
        fetch(tmp_path, (server.url,), payload)
    part = tmp_path / "Galaxy10_DECals.h5.part"
    assert part.stat().st_size == 100_000
    assert not (tmp_path / data.DATASET_FILENAME).exists()

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
    assert not (tmp_path / data.DATASET_FILENAME).exists()
    assert not (tmp_path / "Galaxy10_DECals.h5.part").exists()
    assert (tmp_path / "Galaxy10_DECals.h5.bad").stat().st_size == len(payload)


def test_download_present_file_with_wrong_checksum_is_replaced(tmp_path, server, payload):
    (tmp_path / data.DATASET_FILENAME).write_bytes(b"not the dataset")
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
    assert str((tmp_path / data.DATASET_FILENAME).resolve()) in message
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
# Reader
# --------------------------------------------------------------------------------------------
def test_open_dataset_reads_labels_metadata_and_flags(galaxy10_file):
    with h5py.File(galaxy10_file, "r") as f:
        ans, ra = f["ans"][()], f["ra"][()]
    with data.open_dataset(galaxy10_file) as ds:
        assert (ds.n, ds.image_shape, len(ds)) == (40, (32, 32, 3), 40)
        assert ds.labels.dtype == np.int64 and np.array_equal(ds.labels, ans)
        assert ds.is_synthetic
        meta = ds.metadata()
        assert sorted(meta) == ["dec", "pxscale", "ra", "redshift"]
        assert all(v.dtype == np.float64 and v.shape == (40,) for v in meta.values())
        np.testing.assert_allclose(meta["ra"], ra)
    with h5py.File(galaxy10_file, "a") as f:
        del f.attrs["synthetic"]
    ds = data.open_dataset(galaxy10_file)
    assert not ds.is_synthetic
    ds.close()
    ds.close()  # idempotent


def _truncated(path):
    write_galaxy10_like(path, n=40)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


BAD_FILES = {
    "missing file": (lambda p: None, "not found"),
    "garbage bytes": (lambda p: p.write_bytes(b"\x00garbage" * 100), "not an HDF5 file"),
    "empty file": (lambda p: p.write_bytes(b""), "empty"),
    "truncated": (_truncated, "truncated"),
    "missing key": (lambda p: write_galaxy10_like(p, ans=None, redshift=None), "missing dataset(s) ['ans', 'redshift']"),
    "wrong dtype": (lambda p: write_galaxy10_like(p, images=np.zeros((4, 8, 8, 3), np.float32), labels=[0, 1, 2, 3], n=4), "must be uint8, got float32"),
    "wrong shape": (lambda p: write_galaxy10_like(p, images=np.zeros((4, 8, 8), np.uint8), n=4, labels=[0, 1, 2, 3]), "shape (N, H, W, 3), got (4, 8, 8)"),
    "four channels": (lambda p: write_galaxy10_like(p, images=np.zeros((4, 8, 8, 4), np.uint8), n=4, labels=[0, 1, 2, 3]), "got (4, 8, 8, 4)"),
    "label 10": (lambda p: write_galaxy10_like(p, n=20, ans=np.r_[np.arange(18) % 10, 10, 10]), "2 of 20 labels are out of range (values: 10; first at index 18)"),
    "label -1": (lambda p: write_galaxy10_like(p, n=20, ans=np.r_[-1, np.arange(19) % 10]), "1 of 20 labels are out of range (values: -1; first at index 0)"),
    "length mismatch": (lambda p: write_galaxy10_like(p, n=20, ra=np.zeros(19)), "'ra' has shape (19,) but 'images' holds 20 images"),
    "zero images": (lambda p: write_galaxy10_like(p, n=0), "zero images"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_open_dataset_rejects_bad_input(tmp_path, case):
    make, expected = BAD_FILES[case]
    path = tmp_path / "bad.h5"
    make(path)
    with pytest.raises(DatasetError) as info:
        data.open_dataset(path)
    message = str(info.value)
    assert str(path) in message
    assert expected in message


@pytest.mark.parametrize("case", ["garbage bytes", "label 10"])
def test_cli_info_bad_file_prints_error_without_traceback(tmp_path, case):
    path = tmp_path / "bad.h5"
    BAD_FILES[case][0](path)
    result = subprocess.run([sys.executable, "-m", "galaxy_core.data", "info", str(path)],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and str(path) in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_cli_info_summarises_a_file(galaxy10_file):
    result = subprocess.run([sys.executable, "-m", "galaxy_core.data", "info", str(galaxy10_file),
                             "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "images:      40" in out and "(32, 32, 3)" in out and "uint8" in out
    assert "synthetic:   yes" in out
    for name in CLASS_NAMES:
        assert re.search(rf"{re.escape(name)}\s+4\s", out), name
    assert data.sha256_file(galaxy10_file) in out and "differs from the published checksum" in out
    quick = data.describe_file(galaxy10_file, checksum=False, progress=False)
    assert "not computed" in quick


def test_read_images_any_order_and_duplicates(galaxy10_file):
    with h5py.File(galaxy10_file, "r") as f:
        everything = f["images"][()]
    with data.open_dataset(galaxy10_file) as ds:
        for idx in ([5, 1, 5, 3, 2, 4], [39, 0, 39, 17], [7]):  # dense (slice) and sparse paths
            out = ds.read_images(np.array(idx))
            assert out.dtype == np.uint8 and out.shape == (len(idx), 32, 32, 3)
            np.testing.assert_array_equal(out, everything[idx])
        assert ds.read_images([]).shape == (0, 32, 32, 3)
        with pytest.raises(IndexError, match="out of range"):
            ds.read_images([0, 40])
        with pytest.raises(IndexError, match="out of range"):
            ds.read_images([-1])


def test_iter_chunks_covers_every_row_once(galaxy10_file):
    with h5py.File(galaxy10_file, "r") as f:
        everything = f["images"][()]
    with data.open_dataset(galaxy10_file) as ds:
        chunks = list(ds.iter_chunks(chunk_size=7))
        assert [len(i) for i, _ in chunks] == [7, 7, 7, 7, 7, 5]
        idx = np.concatenate([i for i, _ in chunks])
        assert idx.dtype == np.int64 and np.array_equal(idx, np.arange(40))
        np.testing.assert_array_equal(np.concatenate([im for _, im in chunks]), everything)

        order = np.random.default_rng(0).permutation(40)[:25]
        chunks = list(ds.iter_chunks(order, chunk_size=10))
        assert [len(i) for i, _ in chunks] == [10, 10, 5]
        np.testing.assert_array_equal(np.concatenate([i for i, _ in chunks]), order)
        np.testing.assert_array_equal(np.concatenate([im for _, im in chunks]), everything[order])
        with pytest.raises(ValueError, match="chunk_size"):
            next(ds.iter_chunks(chunk_size=0))


# --------------------------------------------------------------------------------------------
# Split and class weights
# --------------------------------------------------------------------------------------------
def _imbalanced_labels(seed=0):
    counts = np.array(data.CLASS_COUNTS) // 10  # 1,773 labels with the real imbalance
    labels = np.repeat(np.arange(10), counts)
    np.random.default_rng(seed).shuffle(labels)
    return labels, counts


def test_split_is_stratified_disjoint_and_complete():
    labels, counts = _imbalanced_labels()
    split = data.split_indices(labels, val_fraction=0.1, test_fraction=0.15, seed=42)
    parts = (split.train, split.val, split.test)
    assert all(p.dtype == np.int64 for p in parts)
    joined = np.concatenate(parts)
    assert np.array_equal(np.sort(joined), np.arange(labels.size))  # disjoint and covering
    sizes = split.sizes()
    assert sum(sizes.values()) == labels.size
    assert abs(sizes["test"] - 0.15 * labels.size) <= 1 and abs(sizes["val"] - 0.1 * labels.size) <= 1
    # Class proportions: val and test (one stratified draw each) within one image per class of
    # the proportional count; train is what is left, so its rounding errors add up (two images).
    for part, tolerance in ((split.val, 1), (split.test, 1), (split.train, 2)):
        got = np.bincount(labels[part], minlength=10)
        assert np.abs(got - part.size * counts / labels.size).max() <= tolerance


def test_split_is_reproducible_and_seed_dependent():
    labels, _ = _imbalanced_labels()
    a = data.split_indices(labels, 0.1, 0.1, seed=1)
    b = data.split_indices(labels, 0.1, 0.1, seed=1)
    c = data.split_indices(labels, 0.1, 0.1, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip((a.train, a.val, a.test), (b.train, b.val, b.test)))
    assert not np.array_equal(a.test, c.test)


def test_split_tiny_class_works_and_too_tiny_is_a_clear_error():
    labels = np.r_[np.zeros(40, int), np.ones(40, int), np.full(3, 2)]
    split = data.split_indices(labels, 0.2, 0.2, seed=0)
    for part in (split.train, split.val, split.test):
        assert set(labels[part]) == {0, 1, 2}
    with pytest.raises(DatasetError, match=r"at least 3 images.*2 \(Round Smooth\): 2"):
        data.split_indices(np.r_[np.zeros(40, int), np.full(2, 2)], 0.2, 0.2, seed=0)
    with pytest.raises(DatasetError, match="Cannot make a stratified split of 30 images"):
        data.split_indices(np.arange(30) % 10, 0.1, 0.1, seed=0)  # 3 test images, 10 classes
    with pytest.raises(ValueError, match="sum < 1"):
        data.split_indices(labels, 0.5, 0.5, seed=0)


def test_save_and_load_split(tmp_path):
    labels, _ = _imbalanced_labels()
    split = data.split_indices(labels, 0.1, 0.1, seed=3)
    path = data.save_split(split, tmp_path / "split.npz")
    back = data.load_split(path)
    assert back.sizes() == split.sizes()
    assert all(np.array_equal(x, y) and y.dtype == np.int64
               for x, y in zip((split.train, split.val, split.test), (back.train, back.val, back.test)))
    with pytest.raises(DatasetError, match="missing"):
        np.savez(tmp_path / "bad.npz", train=np.arange(3))
        data.load_split(tmp_path / "bad.npz")
    with pytest.raises(DatasetError, match="overlap"):
        np.savez(tmp_path / "overlap.npz", train=np.arange(3), val=np.arange(2), test=np.arange(5, 6))
        data.load_split(tmp_path / "overlap.npz")
    with pytest.raises(DatasetError, match="Cannot read the split file"):
        data.load_split(tmp_path / "absent.npz")


def test_class_weights_equal_scikit_learn():
    labels, _ = _imbalanced_labels()
    weights = data.compute_class_weights(labels, 10)
    expected = compute_class_weight("balanced", classes=np.arange(10), y=labels)
    assert sorted(weights) == list(range(10))
    np.testing.assert_allclose([weights[c] for c in range(10)], expected)
    assert weights[4] > weights[2]  # the rarest class (Cigar Shaped Smooth) weighs most
    with pytest.raises(DatasetError, match=r"no image of class 4 \(Cigar Shaped Smooth\)"):
        data.compute_class_weights(labels[labels != 4], 10)
