"""galaxy_core.training.checkpoint: the run lock (live PID named, stale lock taken over), leftovers of dead runs,
what --overwrite may replace, and crash-consistent epoch checkpoints."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from galaxy_core.training import checkpoint
from galaxy_core.training.checkpoint import RunLock, clean_leftovers, lock_path_for, not_a_bundle, work_dir_for
from galaxy_core.errors import TrainingError
from galaxy_core.models.network import load_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def lock_holder():
    """Start a process that holds the run lock of an out_dir; yields (start, processes)."""
    procs = []

    def start(out_dir):
        script = textwrap.dedent(f"""
            import sys, time
            sys.path.insert(0, {str(ROOT)!r})
            from galaxy_core.training.checkpoint import RunLock
            lock = RunLock({str(out_dir)!r}).acquire()
            print("locked", flush=True)
            time.sleep(120)
        """)
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


# --------------------------------------------------------------------------------------------
# The run lock (issue 10, bug 1)
# --------------------------------------------------------------------------------------------
def test_lock_refuses_naming_the_live_pid_and_takes_over_a_dead_ones(tmp_path, lock_holder):
    out = tmp_path / "runs" / "same"
    holder = lock_holder(out)
    assert lock_path_for(out).read_text().strip() == str(holder.pid)
    with pytest.raises(TrainingError, match=rf"PID {holder.pid}\) is using .*same"):
        RunLock(out).acquire()
    os.kill(holder.pid, signal.SIGKILL)  # like kill -9: the lock file stays, its flock goes
    holder.wait()
    assert lock_path_for(out).exists()
    with RunLock(out) as lock:
        assert lock.took_over == holder.pid
        assert lock_path_for(out).read_text().strip() == str(os.getpid())
    assert not lock_path_for(out).exists()  # released: the file is removed


def test_second_run_on_a_live_out_is_refused_and_leaves_its_work_alone(tmp_path, lock_holder):
    from conftest import write_galaxy10_like
    from galaxy_core.config import Config
    from galaxy_core.training.train import train_run

    data = write_galaxy10_like(tmp_path / "q.h5", n=40)
    out = tmp_path / "runs" / "same"
    work = work_dir_for(out)
    work.mkdir(parents=True)
    (work / "config.json").write_text("{}")  # the live run is in its first epoch (no state.json yet)
    holder = lock_holder(out)
    cfg = Config(backbone="SmallCNN", weights="none", image_size=32)
    with pytest.raises(TrainingError, match=f"PID {holder.pid}"):
        train_run(cfg, data, out, cache_dir=tmp_path / "cache")
    assert (work / "config.json").read_text() == "{}"  # not deleted, not called "interrupted"
    assert not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------------------------
# Leftovers of dead runs (issue 10, #11)
# --------------------------------------------------------------------------------------------
def test_clean_leftovers_removes_dead_runs_folders_only(tmp_path, lock_holder):
    runs = tmp_path / "runs"
    dead = [runs / ".a.partial-1234abcd", runs / ".a.old-deadbeef", runs / ".b.work"]
    resumable, live = runs / ".c.work", runs / ".d.partial-0badcafe"
    for folder in (*dead, resumable, live, runs / "a"):
        folder.mkdir(parents=True)
        (folder / "x").write_text("x")
    (resumable / "state.json").write_text("{}")
    lock_holder(runs / "d")
    messages = []
    removed = clean_leftovers(runs, messages.append)
    assert sorted(removed) == sorted(dead)
    assert all(not p.exists() for p in dead)
    assert resumable.exists() and live.exists() and (runs / "a" / "x").exists()
    assert sum("cleaned up" in m for m in messages) == 3
    assert any("--resume" in m and ".c.work" in m for m in messages)
    assert not lock_path_for(runs / "a").exists()  # the locks taken while deleting are gone


# --------------------------------------------------------------------------------------------
# What may be replaced (issue 10, bug 2)
# --------------------------------------------------------------------------------------------
def _fake_bundle(path):
    path.mkdir(parents=True)
    for name in ("config.json", "run.json", "model.keras", "metrics.json"):
        (path / name).write_text("{}")
    return path


def test_not_a_bundle(tmp_path):
    assert not_a_bundle(tmp_path / "missing") is None
    (tmp_path / "empty").mkdir()
    assert not_a_bundle(tmp_path / "empty") is None
    assert not_a_bundle(_fake_bundle(tmp_path / "runs" / "r1")) is None
    _fake_bundle(tmp_path / "runs" / "r2")
    reason = not_a_bundle(tmp_path / "runs")  # a folder of bundles is not a bundle
    assert "not a run bundle" in reason and "2 folder(s)" in reason and "r1/" in reason
    thesis = tmp_path / "mythesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("...")
    (thesis / "figures").mkdir()
    reason = not_a_bundle(thesis)
    assert "chapter1.tex" in reason and "figures/" in reason and "no config.json" in reason
    (tmp_path / "afile").write_text("x")
    assert "is a file" in not_a_bundle(tmp_path / "afile")
    (tmp_path / "runs" / "r1" / "tensorboard" / "train").mkdir(parents=True)  # a bundle's TensorBoard logs
    assert not_a_bundle(tmp_path / "runs" / "r1") is None


def test_a_bundle_holding_a_users_own_files_is_not_replaced_silently(tmp_path):
    """Issue 25 item 14: --overwrite deleted a user's own files inside a bundle folder without naming them."""
    run = _fake_bundle(tmp_path / "runs" / "r1")
    for derived in ("model.onnx", "model.onnx.sha256.json", "model.int8.onnx", "explanations.h5"):
        (run / derived).write_text("x")  # what a bundle holds or derives from model.keras
    assert not_a_bundle(run) is None
    (run / "my-notes.txt").write_text("observing log")
    reason = not_a_bundle(run)
    assert "my-notes.txt" in reason and "would delete them, even with --overwrite" in reason


def test_cli_overwrite_refuses_a_folder_that_is_not_a_bundle(tmp_path):
    from conftest import write_galaxy10_like

    data = write_galaxy10_like(tmp_path / "q.h5", n=40)
    thesis = tmp_path / "mythesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("my thesis")
    runs = tmp_path / "runs"
    _fake_bundle(runs / "r1")
    for out, shown in ((thesis, "chapter1.tex"), (runs, "r1/")):
        proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "--data", str(data), "--out", str(out),
                               "--overwrite", "--backbone", "SmallCNN", "--weights", "none"],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert proc.returncode == 2 and "not a run bundle" in proc.stderr, proc.stderr
        assert shown in proc.stderr and "Traceback" not in proc.stderr
    assert (thesis / "chapter1.tex").read_text() == "my thesis" and (runs / "r1" / "run.json").exists()


def test_train_run_refuses_to_replace_user_files(tmp_path):
    from conftest import write_galaxy10_like
    from galaxy_core.config import Config
    from galaxy_core.training.train import train_run

    data = write_galaxy10_like(tmp_path / "q.h5", n=40)
    (tmp_path / "mythesis").mkdir()
    (tmp_path / "mythesis" / "notes.txt").write_text("keep")
    with pytest.raises(TrainingError, match="notes.txt"):
        train_run(Config(backbone="SmallCNN", weights="none", image_size=32), data, tmp_path / "mythesis")
    assert (tmp_path / "mythesis" / "notes.txt").read_text() == "keep"
    assert not work_dir_for(tmp_path / "mythesis").exists()


# --------------------------------------------------------------------------------------------
# Epoch checkpoints
# --------------------------------------------------------------------------------------------
def test_save_checkpoint_names_its_files_and_drops_older_ones(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.stop_training = False
    stopper = SimpleNamespace(improved=True, best=0.5, best_epoch=0, wait=0, best_weights=None)
    history = {"epoch": [1], "val_accuracy": [0.5]}
    checkpoint.save_checkpoint(tmp_path, model, stopper, history, 1, policy="float32")
    (tmp_path / "checkpoint-0002").mkdir()  # half written by a killed run
    (tmp_path / "checkpoint-0002" / "model.weights.h5").write_bytes(b"half")
    (tmp_path / "checkpoint-0000.keras").write_bytes(b"an older version's zipped checkpoint")
    stopper.improved, stopper.wait = False, 1
    history = {"epoch": [1, 2], "val_accuracy": [0.5, float("nan")]}
    checkpoint.save_checkpoint(tmp_path, model, stopper, history, 2, policy="float32")
    state = checkpoint.read_state(tmp_path)
    assert state["checkpoint"] == "checkpoint-0002" and state["best_weights"] == "best_weights-0001.npz"
    assert state["epochs_done"] == 2 and state["wait"] == 1 and state["policy"] == "float32"
    assert np.isnan(state["history"]["val_accuracy"][1])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best_weights-0001.npz", "checkpoint-0002", "state.json"]
    # An unzipped model folder (no temporary copy while saving); the half-written one was replaced.
    assert sorted(p.name for p in (tmp_path / "checkpoint-0002").iterdir()) == [
        "assets", "config.json", "metadata.json", "model.weights.h5"]
    loaded = load_model(tmp_path / state["checkpoint"], compile=False)
    assert len(loaded.get_weights()) == 2
    best = checkpoint.load_best_weights(tmp_path)
    assert all(np.array_equal(a, b) for a, b in zip(best, model.get_weights()))
    json.loads((tmp_path / "state.json").read_text())


def test_a_zipped_checkpoint_of_an_older_version_still_resumes(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.save(tmp_path / "checkpoint-0003.keras")  # what state.json named before the folders
    path = checkpoint.checkpoint_path(tmp_path, {"checkpoint": "checkpoint-0003.keras"})
    loaded = load_model(path, compile=True)
    assert all(np.array_equal(a, b) for a, b in zip(loaded.get_weights(), model.get_weights()))
    stopper = SimpleNamespace(improved=True, best=0.5, best_epoch=3, wait=0, best_weights=None)
    model.stop_training = False
    checkpoint.save_checkpoint(tmp_path, loaded, stopper, {"epoch": [1, 2, 3, 4]}, 4, policy="float32")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_weights-0004.npz", "checkpoint-0004", "state.json"]


def test_resume_guard_reports_changed_fields_only(tmp_path):
    from conftest import write_galaxy10_like
    from galaxy_core.config import Config

    data = write_galaxy10_like(tmp_path / "q.h5", n=40)
    cfg = Config(backbone="SmallCNN", weights="none", image_size=32)
    work = tmp_path / ".r.work"
    checkpoint.start_work(work, cfg, data, tmp_path / "r")
    (work / "state.json").write_text("{}")
    messages = []
    saved, _ = checkpoint.open_for_resume(work, cfg, data, messages.append)
    assert saved == cfg and messages == []
    saved, _ = checkpoint.open_for_resume(work, cfg.replace(epochs=99), data, messages.append)
    assert saved == cfg and messages == ["note: resuming with the interrupted run's config "
                                         "(ignoring changes to ['epochs'])"]
    with pytest.raises(TrainingError, match="interrupted run"):
        checkpoint.start_work(work, cfg, data, tmp_path / "r")


def test_load_or_make_split_saves_the_split_with_its_record_and_a_resume_keeps_both(tmp_path):
    from galaxy_core.config import Config
    labels = np.arange(60) % 3
    ra, dec = np.arange(60, dtype=float), np.zeros(60)
    ra[7] = ra[4] + 0.2 / 3600  # rows 4 and 7 (both label 1): one galaxy
    cfg = Config(class_names=("a", "b", "c"), split_by="sky", seed=3)
    work = tmp_path / "work"
    work.mkdir()
    split, info = checkpoint.load_or_make_split(work, labels, cfg, ra, dec)
    assert info["split_by"] == "sky" and info["groups_merged"] == 1
    assert json.loads((work / checkpoint.SPLIT_INFO).read_text()) == info
    # A resumed run keeps the saved split and record, whatever the config says now.
    again, again_info = checkpoint.load_or_make_split(work, labels, cfg.replace(split_by="random", seed=9))
    assert again_info == info
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(again, name), getattr(split, name))

