"""Tests of galaxy_core.catalog on a local Dask cluster of 2 worker processes (127.0.0.1).

One cluster, one bundle and one synthetic catalogue (PNG cutouts listed in a CSV with id/ra/dec, the
same cutouts in an HDF5 file, plus an unreadable, a missing and a 1x1 file) are shared by the module.
Fault tests kill real processes: a worker (SIGKILL) while it runs a partition, the command itself
(SIGINT, SIGKILL); a named pipe (FIFO) in the catalogue holds one partition open for as long as a
test needs (opening it blocks until a writer comes), so "mid-run" is a state, not a race.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_model
from galaxy_core.catalog.cli import main
from galaxy_core.catalog.inputs import CatalogError, open_input
from galaxy_core.catalog.manifest import MANIFEST_NAME, read_manifest
from galaxy_core.catalog.partitions import plan, stage_rows, staged_partitions
from galaxy_core.catalog.writer import probability_column

ROOT = Path(__file__).resolve().parents[1]
N_GOOD = 40
SIZE = 40
PART = 6  # rows per partition in the tests


# --- shared fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 worker processes on 127.0.0.1; yields (address, client)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as lc, Client(lc) as client:
        yield lc.scheduler_address, client


@pytest.fixture(scope="module")
def runs(tmp_path_factory, good_bundle, parts):
    """Two bundles: a copy of the session's tiny bundle, and one with another model."""
    from galaxy_core.bundle.write import write_bundle

    folder = tmp_path_factory.mktemp("catalog_runs")
    first = shutil.copytree(good_bundle, folder / "tiny")
    second = write_bundle(folder / "other", **dict(parts, model=tiny_model(seed=7)))
    return Path(first), Path(second)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """Synthetic cutouts: PNG files, a CSV of id/ra/dec/path and an HDF5 file of the good ones."""
    import cv2

    from conftest import write_galaxy10_like

    folder = tmp_path_factory.mktemp("catalogue")
    (folder / "cutouts").mkdir()
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (N_GOOD, SIZE, SIZE, 3), dtype=np.uint8)
    paths = []
    for i, image in enumerate(images):
        path = folder / "cutouts" / f"g{i:03d}.png"
        cv2.imwrite(str(path), image[..., ::-1])
        paths.append(path)
    (folder / "cutouts" / "garbage.png").write_bytes(b"\x89PNG not an image" + rng.bytes(64))
    cv2.imwrite(str(folder / "cutouts" / "dot.png"), np.zeros((1, 1, 3), np.uint8))
    bad = ["cutouts/garbage.png", "cutouts/missing.png", "cutouts/dot.png"]
    rows = [(f"G{i:03d}", round(10 + 0.5 * i, 3), round(-5 + 0.25 * i, 3), f"cutouts/g{i:03d}.png")
            for i in range(N_GOOD)]
    rows[7:7] = [("BAD0", 1.0, 2.0, bad[0])]
    rows[20:20] = [("BAD1", 1.5, 2.5, bad[1])]
    rows.append(("BAD2", 2.0, 3.0, bad[2]))
    table = folder / "sample.csv"
    write_csv(table, rows)
    h5 = write_galaxy10_like(folder / "cutouts.h5", n=N_GOOD, size=SIZE, images=images)
    return {"folder": folder, "table": table, "rows": rows, "h5": h5, "paths": paths, "images": images}


def write_csv(path: Path, rows) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "ra", "dec", "path"])
        writer.writerows(rows)
    return path


def read_out(out: Path):
    import pandas as pd

    frame = pd.read_parquet(out)
    return frame.sort_values("row").reset_index(drop=True)


def cli(*args) -> int:
    return main([str(a) for a in args])


def predict_probs(run: Path, paths) -> np.ndarray:
    """`galaxy_core.predict`'s probabilities of the files (the reference)."""
    from galaxy_core.bundle.read import load_bundle
    from galaxy_core.predict import classify_files

    rows = classify_files(load_bundle(run), paths)
    return np.array([r["probs"] for r in rows], np.float32)


# --- the catalogue of a table and of an HDF5 file ---------------------------------------------------
def test_a_table_gives_one_row_per_input_row_with_predicts_probabilities(cluster, runs, catalogue, tmp_path, capsys):
    from galaxy_core.catalog import worker
    from galaxy_core.config import Config

    address, client = cluster
    out = tmp_path / "cat"
    code = cli("--run", runs[0], "--out", out, "--scheduler", address, "--partition-size", PART,
               "--threads", 1, catalogue["table"])
    err = capsys.readouterr().err
    assert code == 1 and "3 errors" in err and "Traceback" not in err, err  # the 3 bad rows
    frame = read_out(out)
    rows = catalogue["rows"]
    assert frame["row"].tolist() == list(range(len(rows)))
    assert frame[["id", "ra", "dec", "path"]].values.tolist() == [list(r) for r in rows]
    class_names = Config().class_names
    assert list(frame.columns[-len(class_names) - 1:-1]) == [probability_column(c) for c in class_names]

    errors = dict(zip(frame["id"], frame["error"]))
    assert "Cannot decode" in errors["BAD0"] and "Cannot read" in errors["BAD1"]
    assert "1x1 pixels" in errors["BAD2"]
    bad = frame["error"].notna()
    assert bad.sum() == 3 and frame.loc[bad, "pred_name"].isna().all() and frame.loc[bad, "p_merging"].isna().all()

    good = frame[~bad]
    probs = good[[probability_column(c) for c in class_names]].to_numpy(np.float32)
    expected = predict_probs(runs[0], [catalogue["folder"] / p for p in good["path"]])
    np.testing.assert_allclose(probs, expected, atol=1e-5, rtol=0)
    assert good["pred_index"].astype(int).tolist() == expected.argmax(1).tolist()
    assert good["pred_name"].tolist() == [class_names[k] for k in expected.argmax(1)]
    np.testing.assert_allclose(good["confidence"], expected.max(1), atol=1e-6)

    record = read_manifest(out)
    n_parts = len(plan(len(rows), PART))
    assert record["complete"] and record["partitions_done"] == [[0, n_parts - 1]]
    assert record["run"]["name"] == "tiny" and record["input"]["kind"] == "table"
    # Each worker process loaded the run once for its several partitions, with 1 ONNX Runtime thread.
    loads = client.run(worker.load_count)
    assert n_parts > 2 * len(loads) and set(loads.values()) <= {0, 1} and sum(loads.values()) >= 1
    assert {t for ts in client.run(worker.loaded_threads).values() for t in ts} == {1}


def test_an_hdf5_file_is_read_in_chunks_with_its_columns_carried(cluster, runs, catalogue, tmp_path):
    import h5py

    out = tmp_path / "cat"
    assert cli("--run", runs[0], "--out", out, "--scheduler", cluster[0], "--partition-size", 9,
               "--batch-size", 4, catalogue["h5"]) == 0
    frame = read_out(out)
    with h5py.File(catalogue["h5"]) as f:
        for name in ("ra", "dec", "redshift", "ans"):
            np.testing.assert_array_equal(frame[name].to_numpy(), f[name][:])
    assert frame["error"].isna().all() and frame["row"].tolist() == list(range(N_GOOD))
    probs = frame[[c for c in frame.columns if c.startswith("p_")]].to_numpy(np.float32)
    np.testing.assert_allclose(probs, predict_probs(runs[0], catalogue["paths"]), atol=1e-5, rtol=0)


# --- exactly once, whatever is killed ----------------------------------------------------------------
def table_with_fifo(catalogue, folder: Path, at: int) -> tuple[Path, Path]:
    """The good rows of the catalogue with row `at` a named pipe (blocks whoever opens it)."""
    folder.mkdir(parents=True, exist_ok=True)
    fifo = folder / "slow.png"
    os.mkfifo(fifo)
    rows = [r for r in catalogue["rows"] if not r[0].startswith("BAD")]
    rows = [(i, ra, dec, str(catalogue["folder"] / p)) for i, ra, dec, p in rows]
    rows[at] = ("SLOW", 0.0, 0.0, str(fifo))
    return write_csv(folder / "sample.csv", rows), fifo


def executing(dask_worker):
    return [str(ts.key) for ts in dask_worker.state.executing]


def wait_for(condition, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def release_fifo(fifo: Path, timeout: float = 120.0) -> None:
    """Open the pipe's write end once a reader waits on it, and close it (the reader sees an empty file)."""
    def opened():
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK) + 1
        except OSError:
            return 0
    os.close(wait_for(opened, f"a reader of {fifo}", timeout) - 1)


def test_a_worker_killed_mid_partition_leaves_every_row_exactly_once(cluster, runs, catalogue, tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    address, client = cluster
    table, fifo = table_with_fifo(catalogue, tmp_path / "in", at=14)  # partition 2
    out = tmp_path / "cat"
    result = {}
    job = threading.Thread(target=lambda: result.setdefault("code", cli(
        "--run", runs[0], "--out", out, "--scheduler", address, "--partition-size", PART, table)))
    job.start()
    try:
        busy = wait_for(lambda: [w for w, keys in client.run(executing).items() if any(k.endswith("-2") for k in keys)],
                        "the partition of the pipe to start")
        pid = client.run(os.getpid, workers=busy)[busy[0]]
        os.kill(pid, signal.SIGKILL)  # the worker dies inside the partition; its nanny starts another
        wait_for(lambda: not _alive(pid), "the worker to die")
        release_fifo(fifo)  # the partition, run again elsewhere, now reads an empty "image"
    finally:
        job.join(timeout=180)
    assert result["code"] == 1  # the pipe's row has an error; every other row is classified
    frame = read_out(out)
    assert frame["row"].tolist() == list(range(N_GOOD)) and frame["row"].is_unique
    assert frame.loc[frame["error"].notna(), "id"].tolist() == ["SLOW"]
    assert read_manifest(out)["complete"]


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_the_command_killed_and_rerun_skips_done_partitions_and_gives_the_same_catalogue(
        sig, cluster, runs, catalogue, tmp_path):
    import psutil

    table, fifo = table_with_fifo(catalogue, tmp_path / "in", at=N_GOOD - 1)  # the last partition
    out = tmp_path / "cat"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "galaxy_core.catalog", "--run", str(runs[0]), "--out", str(out),
                             "--partition-size", str(PART), "--workers", "2", str(table)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        n_parts = len(plan(N_GOOD, PART))
        wait_for(lambda: len(list(out.glob("part-*.parquet"))) == n_parts - 1 or proc.poll() is not None,
                 "every partition but the pipe's")
        assert proc.poll() is None
        command = psutil.Process(proc.pid)
        children = command.children(recursive=True)
        listening = [c.laddr for c in command.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
        assert listening and all(a.ip == "127.0.0.1" for a in listening) and 8787 not in {a.port for a in listening}
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)  # as Ctrl-C does: the whole process group, workers included
        else:
            proc.send_signal(sig)  # the command alone: its workers must go by themselves
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in err
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "interrupted" in err and "rerun the same command" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    gone, alive = psutil.wait_procs(children, timeout=60)  # the local cluster's workers went with it
    for p in alive:
        p.kill()
    assert not alive
    assert len(list(out.glob("part-*.parquet"))) == n_parts - 1

    fifo.unlink()
    shutil.copy(catalogue["paths"][0], fifo)  # the same path, now a plain image file
    reference = tmp_path / "reference"
    assert cli("--run", runs[0], "--out", reference, "--scheduler", cluster[0], "--partition-size", PART, table) == 0
    result = {}

    def rerun():
        result["code"] = cli("--run", runs[0], "--out", out, "--scheduler", cluster[0], "--partition-size", PART, table)
    import contextlib
    import io

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        rerun()
    assert result["code"] == 0
    assert f"{n_parts - 1} of {n_parts} partition(s) already done, skipped" in stderr.getvalue()
    import pandas.testing as pdt

    pdt.assert_frame_equal(read_out(out), read_out(reference))


# --- refusals and the overwrite guard ---------------------------------------------------------------
def test_a_rerun_with_another_run_or_options_is_refused(cluster, runs, catalogue, tmp_path, capsys):
    out = tmp_path / "cat"
    base = ("--out", out, "--scheduler", cluster[0], "--partition-size", 20, catalogue["h5"])
    assert cli("--run", runs[0], *base) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert cli("--run", runs[1], *base) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and "'tiny'" in err and "another run" in err and "--overwrite" in err
    assert cli("--run", runs[0], "--tta", *base) == 2
    assert "tta False -> True" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing touched
    # --overwrite starts over with the other options.
    assert cli("--run", runs[0], "--overwrite", "--tta", *base) == 0
    assert read_manifest(out)["options"]["tta"] is True


def test_overwrite_never_deletes_a_folder_that_is_not_a_catalogue(cluster, runs, catalogue, tmp_path, capsys):
    notes = tmp_path / "thesis"
    notes.mkdir()
    (notes / "chapter1.tex").write_text("precious")
    for extra in ((), ("--overwrite",)):
        assert cli("--run", runs[0], "--out", notes, "--scheduler", cluster[0], *extra, catalogue["h5"]) == 2
        assert "not a catalogue output" in capsys.readouterr().err
    assert sorted(p.name for p in notes.iterdir()) == ["chapter1.tex"]

    out = tmp_path / "cat"
    assert cli("--run", runs[0], "--out", out, "--scheduler", cluster[0], "--partition-size", 20, catalogue["h5"]) == 0
    (out / "my_notes.txt").write_text("mine")
    assert cli("--run", runs[0], "--out", out, "--scheduler", cluster[0], "--overwrite", catalogue["h5"]) == 2
    assert "did not write (my_notes.txt)" in capsys.readouterr().err
    assert (out / "my_notes.txt").exists() and (out / MANIFEST_NAME).exists() and list(out.glob("part-*"))


def test_usage_and_bundle_errors_exit_2_without_a_traceback(tmp_path, catalogue):
    with pytest.raises(SystemExit) as info:
        main(["--run", "r", "--out", str(tmp_path / "o"), "--partition-size", "0", str(catalogue["h5"])])
    assert info.value.code == 2
    proc = subprocess.run([sys.executable, "-m", "galaxy_core.catalog", "--run", str(tmp_path / "nope"),
                           "--out", str(tmp_path / "o"), str(catalogue["h5"])],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


# --- inputs and staging (no cluster) ----------------------------------------------------------------
def test_csv_parquet_fits_and_votable_tables_stage_the_same_rows(catalogue, tmp_path):
    import pyarrow.parquet as pq
    from astropy.table import Table

    rows = catalogue["rows"]
    astropy_table = Table(rows=rows, names=("id", "ra", "dec", "file"))
    pq.write_table(Table(rows=rows, names=("id", "ra", "dec", "path")).to_pandas().pipe(
        __import__("pyarrow").Table.from_pandas, preserve_index=False), tmp_path / "t.parquet")
    astropy_table.write(tmp_path / "t.fits")
    astropy_table.write(tmp_path / "t.vot", format="votable")
    staged = {}
    for name in ("sample.csv", "t.parquet", "t.fits", "t.vot"):
        path = catalogue["table"] if name == "sample.csv" else tmp_path / name
        source, batches = open_input([path])
        assert source.kind == "table" and source.path_column in ("path", "file")
        n = stage_rows(batches(), tmp_path / f"{name}.staged", 7)
        assert n == len(rows) and staged_partitions(tmp_path / f"{name}.staged")[1] == [7] * 6 + [len(rows) - 42]
        table = pq.read_table(tmp_path / f"{name}.staged")
        staged[name] = [table.column(c).to_pylist() for c in ("id", "ra", "dec", source.path_column)]
    assert staged["sample.csv"] == [list(c) for c in zip(*rows)]
    assert all(value == staged["sample.csv"] for value in staged.values())


def test_inputs_are_refused_with_their_reason(catalogue, tmp_path):
    (tmp_path / "t.csv").write_text("id,ra\n1,2\n")
    with pytest.raises(CatalogError, match="no column of image paths named path / file / filename"):
        open_input([tmp_path / "t.csv"])
    with pytest.raises(CatalogError, match="must be the only INPUT"):
        open_input([catalogue["h5"], catalogue["paths"][0]])
    with pytest.raises(CatalogError, match="does not exist"):
        open_input([tmp_path / "nothing"])
    source, _ = open_input([catalogue["folder"] / "cutouts", tmp_path / "typo.png"])
    assert source.kind == "files" and source.n_rows == N_GOOD + 3  # the folder's PNGs (garbage, dot) + a missing file
