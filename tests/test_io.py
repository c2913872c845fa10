"""galaxy_core.io: atomic files and folders, file modes, JSON, default folders, progress format."""

import os
import re
import threading

import numpy as np
import pytest

from galaxy_core import io


def test_write_json_numpy_and_newline(tmp_path):
    p = io.write_json(tmp_path / "a.json", {"x": np.float32(0.25), "v": np.arange(3), "p": tmp_path})
    text = p.read_text()
    assert text.endswith("}\n")
    assert '"x": 0.25' in text and '"p": "%s"' % tmp_path in text
    assert io.to_jsonable({"i": np.int64(3)}) == {"i": 3}
    with pytest.raises(TypeError, match="object is not JSON serialisable"):
        io.dumps_json({"bad": object()})


def test_atomic_file_leaves_target_on_error(tmp_path):
    p = tmp_path / "f.txt"
    io.write_text(p, "old")
    with pytest.raises(RuntimeError):
        with io.atomic_file(p, "w", encoding="utf-8") as f:
            f.write("new")
            raise RuntimeError("boom")
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f.txt"]  # no temp file left


def test_atomic_files_honour_umask(tmp_path):
    old = os.umask(0o027)
    try:
        p = io.write_bytes(tmp_path / "b.bin", b"1")
        with io.atomic_dir(tmp_path / "bundle") as d:
            (d / "inner.txt").write_text("x")
        assert (p.stat().st_mode & 0o777) == 0o640
        assert ((tmp_path / "bundle" / "inner.txt").stat().st_mode & 0o777) == 0o640
        assert ((tmp_path / "bundle").stat().st_mode & 0o777) == 0o750
    finally:
        os.umask(old)


def test_concurrent_writers_never_share_a_temp_name(tmp_path):
    p = tmp_path / "race.txt"
    errors = []

    def writer(k):
        try:
            for _ in range(50):
                io.write_text(p, str(k) * 1000)
        except Exception as e:  # pragma: no cover - the failure being tested for
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    text = p.read_text()
    assert len(text) == 1000 and len(set(text)) == 1


def test_atomic_dir_replaces_and_keeps_old_on_failure(tmp_path):
    target = tmp_path / "run"
    with io.atomic_dir(target) as d:
        (d / "a").write_text("1")
    with pytest.raises(ValueError):
        with io.atomic_dir(target) as d:
            (d / "a").write_text("2")
            raise ValueError
    assert (target / "a").read_text() == "1"
    with io.atomic_dir(target) as d:
        (d / "b").write_text("3")
    assert sorted(x.name for x in target.iterdir()) == ["b"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["run"]


def test_default_dirs_follow_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(io.RUNS_DIR_ENV, str(tmp_path / "r"))
    monkeypatch.setenv(io.DATA_DIR_ENV, str(tmp_path / "d"))
    monkeypatch.setenv(io.CACHE_DIR_ENV, str(tmp_path / "c"))
    assert io.default_runs_dir() == tmp_path / "r"
    assert io.default_data_dir() == tmp_path / "d"
    assert io.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv(io.RUNS_DIR_ENV)
    monkeypatch.chdir(tmp_path)
    assert io.default_runs_dir() == tmp_path / "runs"


def test_progress_prints_the_one_format(capsys):
    assert list(io.progress(range(5), desc="work")) == [0, 1, 2, 3, 4]
    err = capsys.readouterr().err
    assert re.search(r"work: 100%\|.*\| 5/5 \[", err)


def test_atomic_dir_without_replace_keeps_a_finished_folder(tmp_path):
    target = tmp_path / "cache"
    with io.atomic_dir(target, replace=False) as d:
        (d / "a").write_text("first")
        assert io.partial_owner(d) == (__import__("socket").gethostname(), os.getpid())
        target.mkdir()  # another process finished the same folder meanwhile
        (target / "a").write_text("theirs")
    assert (target / "a").read_text() == "theirs"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["cache"]


def test_partial_owner_reads_host_and_pid():
    assert io.partial_owner(".run.partial-node-1.example-4242-0a1b2c3d") == ("node-1.example", 4242)
    assert io.partial_owner(".run.partial-0a1b2c3d") is None  # an older writer's name
    assert io.partial_owner("run") is None


