"""Importing your own labelled images (a class folder or a path,label table) into a Galaxy10-format file."""

import json
import os
import shutil

import h5py
import numpy as np
import pytest
from conftest import LABELLED_CLASSES, write_class_folder

from galaxy_core.data.galaxy10 import open_dataset
from galaxy_core.errors import DatasetError
from galaxy_core.preprocessing.decode import read_image
from galaxy_core.preprocessing.labelled import (common_side, import_labelled, is_labelled_source, scan,
                                                square_resize)


def test_a_class_folder_imports_with_its_classes_and_unreadable_files_listed(tmp_path, capsys):
    data = write_class_folder(tmp_path / "data", per_class=4)
    (data / "ring" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (data / "ring" / "notes.txt").write_text("not an image")
    (data / "README.md").write_text("ignored: not an image, not a class")
    (data / "bar" / ".DS_Store").write_bytes(b"\0")
    lines = []
    result = import_labelled(data, cache_dir=tmp_path / "cache", min_side=32, log=lines.append)
    assert result.built and result.n == 12
    assert result.class_names == tuple(sorted(LABELLED_CLASSES))
    assert sorted(p.rsplit("/", 1)[1] for p, _ in result.unreadable) == ["broken.png", "notes.txt"]
    assert "2 unreadable file(s) left out" in lines[0]
    assert "import images" in capsys.readouterr().err  # the progress bar
    with open_dataset(result.path) as ds:
        assert ds.class_names == result.class_names and ds.has_class_names and not ds.has_sky()
        assert np.bincount(ds.labels).tolist() == [4, 4, 4]
        assert ds.image_shape == (32, 32, 3)
        first = sorted((data / "bar").glob("*.png"))[0]
        np.testing.assert_array_equal(ds.read_images([0])[0], read_image(first))
        assert np.isnan(ds.metadata()["ra"]).all()


def test_the_import_is_built_once_and_again_when_an_image_changes(tmp_path):
    data = write_class_folder(tmp_path / "data", per_class=3)
    first = import_labelled(data, cache_dir=tmp_path / "cache", min_side=32, show_progress=False)
    again = import_labelled(data, cache_dir=tmp_path / "cache", min_side=32, show_progress=False)
    assert first.built and not again.built and again.path == first.path
    image = sorted((data / "ring").glob("*.png"))[0]
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    changed = import_labelled(data, cache_dir=tmp_path / "cache", min_side=32, show_progress=False)
    assert changed.built and changed.path != first.path


def test_a_csv_table_with_indices_and_class_names_imports(tmp_path):
    data = write_class_folder(tmp_path / "data", per_class=3, classes={"lens": 2, "no-lens": 0})
    rows = [f"data/{name}/{name}-{i}.png,{c}" for c, name in enumerate(("lens", "no-lens")) for i in range(3)]
    (tmp_path / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    assert is_labelled_source(tmp_path / "labels.csv") and is_labelled_source(data)
    result = import_labelled(tmp_path / "labels.csv", tmp_path / "cache", class_names=["lens", "no lens"],
                             min_side=32, show_progress=False)
    assert result.class_names == ("lens", "no lens") and result.n == 6 and not result.unreadable
    with h5py.File(result.path) as f:
        assert json.loads(f.attrs["class_names"]) == ["lens", "no lens"]
        assert f["ans"][()].tolist() == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "ring").mkdir(), "Class folder .*ring is empty"),
    (lambda d: shutil.rmtree(d / "edge"), "only one class"),
    (lambda d: (d / "bar" / "more").mkdir(), "holds folder\\(s\\) \\['more'\\]: one level of class folders"),
    (lambda d: (d / "loose.png").write_bytes(b"x"), "holds images directly"),
])
def test_bad_class_folders_are_refused_with_a_clear_reason(tmp_path, make, message):
    data = write_class_folder(tmp_path / "data", per_class=1, classes={"bar": 5, "edge": 8})
    make(data)
    with pytest.raises(DatasetError, match=message):
        import_labelled(data, cache_dir=tmp_path / "cache", show_progress=False)


def test_a_folder_without_classes_or_readable_images_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="has no class subfolders"):
        scan(tmp_path / "empty")
    data = write_class_folder(tmp_path / "data", per_class=2, classes={"bar": 5, "ring": 2})
    for image in (data / "ring").glob("*.png"):
        image.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"no readable image in class\(es\) \['ring'\]"):
        import_labelled(data, cache_dir=tmp_path / "cache", show_progress=False)
    assert not list((tmp_path / "cache").rglob("*.h5"))  # nothing half-written is left


def test_images_of_any_size_are_squared_to_a_common_side():
    assert common_side([(100, 80), (64, 64), (300, 200)], min_side=32) == 80
    assert common_side([(20, 20)], min_side=64) == 64 and common_side([(4000, 3000)], 32) == 512
    image = np.zeros((60, 100, 3), np.uint8)
    image[:, 20:80] = 255  # the central square
    out = square_resize(image, 30)
    assert out.shape == (30, 30, 3) and out.min() == 255
