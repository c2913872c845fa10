"""galaxy_core.preprocessing.cache: the preprocessed cache (built once, keyed by parameters and source, atomic)."""

import json
import os
import re

import numpy as np
import pytest

from conftest import write_galaxy10_like
from galaxy_core.preprocessing import cache as pc
from galaxy_core.preprocessing import preprocess as pp
from galaxy_core.config import Config
from galaxy_core.errors import PreprocessError

CACHE_CFG = Config(image_size=32, opening_kernel_size=3)


@pytest.fixture
def source(tmp_path):
    """A 40-image, 48x48 Galaxy10-format file (resized to 32 by CACHE_CFG)."""
    return write_galaxy10_like(tmp_path / "src.h5", n=40, size=48, seed=3)


def read_source(path):
    import h5py

    with h5py.File(path, "r") as f:
        return f["images"][()], f["ans"][()]


def test_cache_rows_equal_preprocess_image(source, tmp_path, capsys):
    path = pc.build_cache(source, CACHE_CFG, cache_dir=tmp_path / "c", workers=1, progress=True)
    bar = capsys.readouterr().err  # the tqdm bar in io.BAR_FORMAT, the format the app reads
    cache = pc.open_cache(path)
    images, labels = read_source(source)
    assert cache.images.shape == (40, 32, 32, 3) and cache.images.dtype == np.uint8
    assert isinstance(cache.images, np.memmap) and not cache.images.flags.writeable
    np.testing.assert_array_equal(cache.labels, labels.astype(np.int64))
    assert cache.labels.dtype == np.int64
    for i in (0, 17, 39):
        np.testing.assert_array_equal(cache.images[i], pp.preprocess_image(images[i], CACHE_CFG))
    assert re.search(r"100%\|[^|]*\| 40/40 ", bar), bar
    assert path.parent == tmp_path / "c" and len(path.name) == 16
    meta = json.loads((path / "meta.json").read_text())
    assert meta["n"] == 40 and meta["key"]["preprocess"] == CACHE_CFG.preprocess_key
    assert meta["synthetic"] is True and meta["created"]
    assert cache.meta == meta and len(cache) == 40


def test_cache_is_built_once(source, tmp_path, capsys):
    first = pc.build_cache(source, CACHE_CFG, cache_dir=tmp_path, workers=1, progress=False)
    stamp = (first / "images.npy").stat().st_mtime_ns
    capsys.readouterr()
    second = pc.build_cache(source, CACHE_CFG, cache_dir=tmp_path, workers=1, progress=True)
    assert second == first and capsys.readouterr().err == ""  # reused: no work, no bar
    assert (first / "images.npy").stat().st_mtime_ns == stamp
    # clip 2 and 2.0 are the same parameters
    assert pc.cache_path(source, CACHE_CFG.replace(clahe_clip_limit=2), tmp_path) == first


def test_cache_key_changes_with_params_and_source(source, tmp_path):
    base = pc.cache_path(source, CACHE_CFG, tmp_path)
    changed = [CACHE_CFG.replace(clahe_clip_limit=3.0), CACHE_CFG.replace(image_size=64),
               CACHE_CFG.replace(channel_mode="per_channel"), CACHE_CFG.replace(opening_kernel_size=5),
               CACHE_CFG.replace(opening_kernel_shape="rect"), CACHE_CFG.replace(opening_iterations=2),
               CACHE_CFG.replace(clahe_tile_grid=4), CACHE_CFG.replace(crop_scale=3.0),
               CACHE_CFG.replace(crop_scale=3.0, crop_min_fraction=0.5), CACHE_CFG.replace(crop_scale=4.0)]
    paths = {pc.cache_path(source, cfg, tmp_path) for cfg in changed}
    assert base not in paths and len(paths) == len(changed)
    # fields that do not touch pixels share the cache (the crop's minimum while the crop is off too)
    assert pc.cache_path(source, CACHE_CFG.replace(epochs=3, backbone="VGG19"), tmp_path) == base
    assert pc.cache_path(source, CACHE_CFG.replace(crop_min_fraction=0.5), tmp_path) == base
    # a rewritten source file is a new cache
    write_galaxy10_like(source, n=40, size=48, seed=4)
    assert pc.cache_path(source, CACHE_CFG, tmp_path) != base


def test_cache_with_the_galaxy_crop_holds_the_cropped_images_and_old_keys_stay(source, tmp_path):
    # Crop off: the key has no crop fields, so a cache built before the crop existed is reused.
    assert not any(name.startswith("crop_") for name in CACHE_CFG.preprocess_key)
    cfg = CACHE_CFG.replace(crop_scale=3.0, crop_min_fraction=0.3)
    assert cfg.preprocess_key["crop_scale"] == 3.0 and cfg.preprocess_key["crop_min_fraction"] == 0.3
    cache = pc.open_cache(pc.build_cache(source, cfg, cache_dir=tmp_path, workers=1, progress=False))
    images, _ = read_source(source)
    for i in (0, 21):
        np.testing.assert_array_equal(cache.images[i], pp.preprocess_image(images[i], cfg))
    assert json.loads((cache.path / "meta.json").read_text())["key"]["preprocess"]["crop_scale"] == 3.0


def test_cache_default_dir_from_environment(source, tmp_path, monkeypatch):
    monkeypatch.setenv("GALAXY10_CACHE_DIR", str(tmp_path / "env_cache"))
    path = pc.build_cache(source, CACHE_CFG, progress=False)
    assert path.parent == tmp_path / "env_cache"
    assert pc.open_cache(path).meta["workers"] == 1  # 40 images: no worker processes started


def test_interrupted_build_leaves_no_cache(source, tmp_path, monkeypatch):
    real = pc.preprocess_batch
    calls = {"n": 0}

    def fail_on_second_chunk(images, cfg, out=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # like Ctrl-C in the middle of the build
        return real(images, cfg, out=out)

    monkeypatch.setattr(pc, "preprocess_batch", fail_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        pc.build_cache(source, CACHE_CFG, cache_dir=tmp_path / "c", workers=1, progress=False,
                       chunk_size=16)
    assert list((tmp_path / "c").iterdir()) == []  # neither a final folder nor a temp folder


def test_half_built_temp_folder_is_never_taken(source, tmp_path):
    root = tmp_path / "c"
    final = pc.cache_path(source, CACHE_CFG, root)
    # what a killed build leaves: a temp folder with a partly written images.npy and no meta.json
    alive = root / f".{final.name}.partial-otherhost-1-abcd"
    alive.mkdir(parents=True)
    np.lib.format.open_memmap(alive / "images.npy", mode="w+", dtype=np.uint8, shape=(40, 32, 32, 3))
    np.save(alive / "labels.npy", np.zeros(40, np.int64))
    assert not pc.is_cache_complete(alive)
    with pytest.raises(PreprocessError, match="build_cache"):
        pc.open_cache(alive)
    path = pc.build_cache(source, CACHE_CFG, cache_dir=root, workers=1, progress=False)
    assert path == final and pc.open_cache(path).images[:].any()
    assert alive.exists()  # another host's folder is left alone
    # a folder at the final name without meta.json is reported, not reused
    (path / "meta.json").unlink()
    with pytest.raises(PreprocessError, match="Delete"):
        pc.build_cache(source, CACHE_CFG, cache_dir=root, workers=1, progress=False)


def test_open_cache_missing_folder(tmp_path):
    with pytest.raises(PreprocessError):
        pc.open_cache(tmp_path / "nothing")


def test_build_cache_checks_free_disk_space(source, tmp_path, monkeypatch):
    monkeypatch.setattr(pc.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 1000})())
    with pytest.raises(PreprocessError, match="disk space"):
        pc.build_cache(source, CACHE_CFG, cache_dir=tmp_path / "c", workers=1, progress=False)
    assert list((tmp_path / "c").iterdir()) == []


def test_cache_with_worker_processes_matches_in_process(source, tmp_path):
    one = pc.open_cache(pc.build_cache(source, CACHE_CFG, cache_dir=tmp_path / "a", workers=1,
                                       progress=False))
    two = pc.open_cache(pc.build_cache(source, CACHE_CFG, cache_dir=tmp_path / "b", workers=2,
                                       progress=False, chunk_size=8))
    assert two.meta["workers"] == 2
    np.testing.assert_array_equal(one.images, two.images)
    np.testing.assert_array_equal(one.labels, two.labels)
    assert not [p for p in (tmp_path / "b").iterdir() if p.name.startswith(".tmp")]


def test_build_cache_rejects_bad_args(source, tmp_path):
    with pytest.raises(PreprocessError):
        pc.build_cache(source, CACHE_CFG, cache_dir=tmp_path, workers=0, progress=False)
    with pytest.raises(PreprocessError, match="Cannot read"):
        pc.build_cache(tmp_path / "missing.h5", CACHE_CFG, cache_dir=tmp_path, progress=False)
    assert os.listdir(tmp_path) == ["src.h5"]
