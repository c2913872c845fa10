"""pages.lib.state: the cache key of a bundle folder."""

import os
import shutil

from pages.lib import state


def _bundle(folder):
    folder.mkdir(parents=True)
    for name in ("config.json", "run.json", "metrics.json"):
        (folder / name).write_text("{}")
    return folder


def test_stamp_ignores_temporary_files_and_follows_rewrites_and_replacement(tmp_path):
    run = _bundle(tmp_path / "runs" / "a")
    first = state.stamp(run)
    (run / ".tmp-load").write_bytes(b"x")  # what a model loader may leave for a moment
    (run / ".tmp-load").unlink()
    assert state.stamp(run) == first  # the cached model and predictor stay valid
    old = os.stat(run / "metrics.json").st_mtime
    (run / "metrics.json").write_text('{"test": 1}')  # train.py --evaluate rewrites it
    os.utime(run / "metrics.json", (old + 5, old + 5))
    second = state.stamp(run)
    assert second != first
    replacement = _bundle(tmp_path / "runs" / ".a.partial")
    for name in ("config.json", "run.json", "metrics.json"):
        os.utime(replacement / name, (old + 5, old + 5))
    keep = tmp_path / "keep"
    os.rename(run, keep)  # a bundle renamed into place has a new inode
    os.rename(replacement, run)
    assert os.stat(run).st_ino != os.stat(keep).st_ino
    assert state.stamp(run) != second
    shutil.rmtree(keep)


def test_stamp_of_the_runs_folder_follows_its_mtime(tmp_path):
    first = state.stamp(tmp_path)
    os.utime(tmp_path, (1, 1))  # a bundle appeared or went
    assert state.stamp(tmp_path) != first
    assert state.stamp(tmp_path / "missing") == ""


def test_stamp_changes_when_a_member_is_deleted(tmp_path):
    run = _bundle(tmp_path / "a")
    first = state.stamp(run)
    (run / "metrics.json").unlink()
    assert state.stamp(run) != first
