"""galaxy_core.data.galaxy10: reader validation, streaming, `info` and `info --check`."""

import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import write_galaxy10_like
from galaxy_core.data import galaxy10 as data
from galaxy_core.config import CLASS_NAMES
from galaxy_core.errors import DatasetError

REPO = Path(__file__).resolve().parents[1]


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
# info --check: every chunk read (issue 10, bug 8)
# --------------------------------------------------------------------------------------------
def _corrupt_chunk_file(path, n=40, bad_chunk=5):
    """A gzip-chunked Galaxy10 file (one image per chunk) with chunk `bad_chunk` overwritten."""
    rng = np.random.default_rng(0)
    write_galaxy10_like(path, n=n, images=None)
    with h5py.File(path, "a") as f:
        f.create_dataset("images", data=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                         chunks=(1, 32, 32, 3), compression="gzip")
        info = f["images"].id.get_chunk_info(bad_chunk)
    with open(path, "r+b") as f:
        f.seek(info.byte_offset + 8)
        f.write(b"\xff" * 64)
    return path


def test_info_check_reads_every_chunk_and_reports_a_corrupt_one(tmp_path):
    path = _corrupt_chunk_file(tmp_path / "corrupt.h5")
    plain = subprocess.run([sys.executable, "-m", "galaxy_core.data", "info", str(path), "--no-checksum"],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0  # the header and labels are fine: only a full read finds it
    result = subprocess.run([sys.executable, "-m", "galaxy_core.data", "info", str(path), "--no-checksum",
                             "--check"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error:" in result.stderr and "images 5..5 cannot be read" in result.stderr
    assert re.search(r"check corrupt\.h5:\s+\d+%\|", result.stderr)  # the tqdm bar, one format


def test_info_check_passes_a_good_file(galaxy10_file):
    result = subprocess.run([sys.executable, "-m", "galaxy_core.data", "info", str(galaxy10_file),
                             "--no-checksum", "--check"], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "all 40 images read without error" in result.stdout
    assert data.check_file(galaxy10_file, progress_on=False) == 40


def test_reading_a_corrupt_chunk_names_info_check(tmp_path):
    path = _corrupt_chunk_file(tmp_path / "corrupt.h5")
    with data.open_dataset(path) as ds:
        ds.read_images([0, 1])  # other chunks read fine
        with pytest.raises(DatasetError, match=r"info --check .*corrupt\.h5"):
            ds.read_images([5])
