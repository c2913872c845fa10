"""Tests of galaxy_core.synthetic: Galaxy10 format, determinism, balance, and that classes differ by
morphology (not by colour)."""

import subprocess
import sys

import h5py
import matplotlib.image
import numpy as np
import pytest
from scipy import ndimage
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from galaxy_core import synthetic
from galaxy_core.data.galaxy10 import CLASS_COUNTS, open_dataset

PER_CLASS = 30  # images per class in the shared batch
SIZE = 64


@pytest.fixture(scope="module")
def batch():
    """30 images of each class at 64x64 (seed 7): uint8 (300, 64, 64, 3) and labels (300,)."""
    labels = np.repeat(np.arange(10), PER_CLASS)
    return synthetic.generate_images(labels, SIZE, seed=7), labels


# --------------------------------------------------------------------------------------------
# Helpers: measurements made the way one would on a real cutout
# --------------------------------------------------------------------------------------------
def central_moments(image):
    """Eigenvalues (low, high) of the flux-weighted second moments of the central object.

    The central object is the connected component (3-sigma above the sky, opened once) that
    touches the central 5x5 pixels; (NaN, NaN) if there is none.
    """
    grey = image.astype(np.float64).mean(axis=-1)
    sky = np.median(grey)
    sigma = 1.4826 * np.median(np.abs(grey - sky))
    labels, _ = ndimage.label(ndimage.binary_opening(grey > sky + 3 * sigma))
    c = grey.shape[0] // 2
    ids = labels[c - 2:c + 3, c - 2:c + 3]
    ids = ids[ids > 0]
    if ids.size == 0:
        return np.nan, np.nan
    yy, xx = np.nonzero(labels == np.bincount(ids).argmax())
    cov = np.cov(np.stack([xx, yy]), aweights=grey[yy, xx] - sky)
    low, high = np.linalg.eigvalsh(cov)
    return low, high


def axis_ratio(image):
    """Axis ratio b/a of the central object (see `central_moments`)."""
    low, high = central_moments(image)
    return float(np.sqrt(low / high))


def polar_features(image, n_r=8, n_t=32):
    """Rotation-invariant morphology features: radial profile and azimuthal Fourier amplitudes."""
    grey = image.astype(np.float32).mean(axis=-1)
    grey -= np.median(grey)
    s = grey.shape[0]
    r = np.linspace(0.5, 0.3 * s, n_r)[:, None]
    t = np.linspace(0, 2 * np.pi, n_t, endpoint=False)[None, :]
    ring = ndimage.map_coordinates(grey, [s / 2 - 0.5 + r * np.sin(t), s / 2 - 0.5 + r * np.cos(t)], order=1)
    profile = ring.mean(axis=1)
    amps = np.abs(np.fft.rfft(ring, axis=1))[:, 1:6] / (np.abs(profile)[:, None] * n_t + 1)
    return np.concatenate([profile / (profile[0] + 1), amps.ravel()])


# --------------------------------------------------------------------------------------------
# Format
# --------------------------------------------------------------------------------------------
def test_write_synthetic_dataset_has_galaxy10_format(tmp_path):
    path = synthetic.write_synthetic_dataset(tmp_path / "syn.h5", n=24, size=32, seed=3, progress=False)
    assert path == tmp_path / "syn.h5"
    assert not list(tmp_path.glob(".*tmp*"))  # temporary file renamed into place
    with h5py.File(path, "r") as f:
        assert set(f.keys()) == {"images", "ans", "ra", "dec", "redshift", "pxscale"}
        assert f["images"].shape == (24, 32, 32, 3) and f["images"].dtype == np.uint8
        assert f["ans"].shape == (24,) and f["ans"].dtype == np.uint8
        for key in ("ra", "dec", "redshift", "pxscale"):
            assert f[key].shape == (24,) and f[key].dtype == np.float64
        assert f.attrs["synthetic"] == True  # noqa: E712 (numpy bool)
        assert f.attrs["generator"] == "galaxy_core.synthetic"
        assert f.attrs["seed"] == 3
        assert "synthetic" in f.attrs["note"].lower()
        ans, ra, dec, z, px = (f[k][()] for k in ("ans", "ra", "dec", "redshift", "pxscale"))
        images = f["images"][()]
    assert set(ans) == set(range(10))  # n >= 10: every class present
    assert ((0 <= ra) & (ra < 360)).all() and ((-20 <= dec) & (dec <= 35)).all()
    assert ((0.01 <= z) & (z <= 0.3)).all() and np.allclose(px, 0.262)
    assert images.std() > 5  # real pictures, not a constant fill
    with open_dataset(path) as ds:  # the project's reader accepts it and sees the flag
        assert ds.is_synthetic and ds.n == 24 and ds.image_shape == (32, 32, 3)
        np.testing.assert_array_equal(ds.labels, ans.astype(np.int64))


def test_render_galaxy_shapes_and_argument_checks():
    rng = np.random.default_rng(0)
    for size in (16, 33, 64):
        image = synthetic.render_galaxy(5, size, rng)
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
    with pytest.raises(ValueError, match="label"):
        synthetic.render_galaxy(10, 32, rng)
    with pytest.raises(ValueError, match="size"):
        synthetic.render_galaxy(0, 8, rng)
    with pytest.raises(ValueError, match="balance"):
        synthetic.write_synthetic_dataset("unused.h5", 10, balance="skewed")
    with pytest.raises(ValueError, match="seed"):
        synthetic.write_synthetic_dataset("unused.h5", 10, seed=-1)
    with pytest.raises(ValueError, match="seed"):
        synthetic.generate_images([0], 32, seed=-1)


def test_galaxy_is_centred_on_dark_noisy_sky(batch):
    images, labels = batch
    grey = images.astype(np.float64).mean(axis=-1)
    centre = grey[:, 24:40, 24:40].mean(axis=(1, 2))
    border = np.median(np.concatenate([grey[:, :6].reshape(len(grey), -1),
                                       grey[:, -6:].reshape(len(grey), -1)], axis=1), axis=1)
    assert (centre > border + 10).mean() > 0.95  # a galaxy in the middle of nearly every image
    assert ((border > 5) & (border < 70)).all()  # black-ish sky (grey level randomised), never white
    for k in range(10):  # every class has its galaxy in the middle
        assert np.median(centre[labels == k] - border[labels == k]) > 10


# --------------------------------------------------------------------------------------------
# Determinism and balance
# --------------------------------------------------------------------------------------------
def test_same_seed_same_bytes_any_chunking_different_seed_differs():
    labels = np.arange(12) % 10
    a = synthetic.generate_images(labels, 32, seed=5)
    b = synthetic.generate_images(labels, 32, seed=5)
    assert a.tobytes() == b.tobytes()
    tail = synthetic.generate_images(labels[7:], 32, seed=5, start=7)  # a chunk of the same dataset
    assert tail.tobytes() == a[7:].tobytes()
    c = synthetic.generate_images(labels, 32, seed=6)
    assert (a != c).any(axis=(1, 2, 3)).all()


def test_parallel_writer_matches_serial(tmp_path):
    n = 70  # three chunks of 32
    one = synthetic.write_synthetic_dataset(tmp_path / "a.h5", n, size=24, seed=9, workers=1, progress=False)
    two = synthetic.write_synthetic_dataset(tmp_path / "b.h5", n, size=24, seed=9, workers=2, progress=False)
    with h5py.File(one, "r") as f, h5py.File(two, "r") as g:
        for key in ("images", "ans", "ra", "dec", "redshift"):
            assert f[key][()].tobytes() == g[key][()].tobytes(), key


def test_class_counts_real_and_uniform():
    np.testing.assert_array_equal(synthetic.class_counts(sum(CLASS_COUNTS), "real"), CLASS_COUNTS)
    small = synthetic.class_counts(10, "real")
    np.testing.assert_array_equal(small, np.ones(10))
    counts = synthetic.class_counts(1000, "real")
    assert counts.sum() == 1000 and counts.min() >= 1
    assert counts[4] == counts.min() and counts[2] == counts.max()  # Cigar rarest, Round Smooth commonest
    np.testing.assert_allclose(counts / 1000, np.array(CLASS_COUNTS) / sum(CLASS_COUNTS), atol=0.002)
    uniform = synthetic.class_counts(1003, "uniform")
    assert uniform.sum() == 1003 and uniform.max() - uniform.min() <= 1
    labels = synthetic.make_labels(1000, "uniform", seed=1)
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, 100))
    assert not (np.diff(labels.astype(int)) >= 0).all()  # shuffled, not sorted
    with pytest.raises(ValueError, match="n must be"):
        synthetic.class_counts(0)


# --------------------------------------------------------------------------------------------
# Morphology decides the class, colour does not
# --------------------------------------------------------------------------------------------
def test_elongated_classes_have_lower_axis_ratio_than_round_smooth(batch):
    images, labels = batch
    q = np.array([axis_ratio(image) for image in images])
    median = {k: np.nanmedian(q[labels == k]) for k in range(10)}
    assert median[2] > 0.8  # Round Smooth: nearly circular
    assert 0.4 < median[3] < 0.75  # In-between Round Smooth
    # Cigar, edge-on disks (a wide PSF, up to 8 px at 256, rounds the small cigars a little)
    assert median[4] < 0.5 and median[8] < 0.3 and median[9] < 0.5
    for k in (4, 8, 9):
        assert median[k] < median[2] - 0.3, k
        assert np.nanpercentile(q[labels == k], 75) < np.nanpercentile(q[labels == 2], 25), k


def major_axis(image):
    """RMS extent (pixels) along the major axis of the central object (see `central_moments`)."""
    return float(np.sqrt(central_moments(image)[1]))


def test_cigars_are_short_and_disks_are_large(batch):
    """As in Galaxy10 DECaLS: cigars are small and short (not long thin edge-on disks), and
    spirals are larger than compact round smooth galaxies (though drawn at many apparent sizes)."""
    images, labels = batch
    a = np.array([major_axis(image) for image in images])
    median = {k: np.nanmedian(a[labels == k]) for k in range(10)}
    assert median[4] < 0.6 * min(median[8], median[9]), median
    assert min(median[5], median[6], median[7]) > 1.15 * median[2], median


def test_apparent_size_is_randomised(batch):
    """Domain randomisation: the same class appears at widely different sizes (many real disks
    span only 20-40 of 256 px, others most of the cutout)."""
    images, labels = batch
    a = np.array([major_axis(image) for image in images])
    for k in (5, 6, 7, 8, 9):
        sizes = a[labels == k]
        assert np.nanpercentile(sizes, 90) > 1.6 * np.nanpercentile(sizes, 10), (k, sizes)


def test_zoom_scales_the_galaxy_not_the_field(monkeypatch):
    """A galaxy drawn at zoom 0.5 (same random draws) has about half the extent; the stars and
    the sky around it are the same."""
    extent, skies = {}, {}
    for zoom in (1.0, 0.5):
        monkeypatch.setattr(synthetic.dataset, "ZOOM_RANGES", {})  # read by render_galaxy
        monkeypatch.setattr(synthetic.dataset, "ZOOM_RANGE", (zoom, zoom))
        images = synthetic.generate_images([8] * 6, 128, seed=3)  # edge-on disks: easy to measure
        extent[zoom] = np.array([major_axis(image) for image in images])
        skies[zoom] = np.median(images.astype(float).mean(axis=-1)[:, :10, :10], axis=(1, 2))
    ratio = extent[0.5] / extent[1.0]
    assert ((0.35 < ratio) & (ratio < 0.7)).all(), ratio  # PSF keeps the small one a bit wider
    np.testing.assert_allclose(skies[0.5], skies[1.0], atol=2)


def test_mean_colour_alone_does_not_decide_the_class(batch):
    """A classifier on per-image mean RGB must stay far from perfect (chance is 10%).

    Real galaxies do differ in colour a little by class (smooth ones redder), so colour may carry
    some signal, as it does in the survey; 40% is the ceiling: below half of what the morphology
    features reach in `test_morphology_is_learnable`, so a model cannot get far on colour alone.
    """
    images, labels = batch
    mean_rgb = images.reshape(len(images), -1, 3).mean(axis=1)
    features = (mean_rgb - mean_rgb.mean(axis=0)) / mean_rgb.std(axis=0)
    accuracy = cross_val_score(LogisticRegression(max_iter=2000), features, labels, cv=5).mean()
    assert accuracy < 0.40, accuracy


def test_morphology_is_learnable(batch):
    """Rotation-invariant shape features (no colour) beat chance (10%) by far."""
    images, labels = batch
    features = np.stack([polar_features(image) for image in images])
    train = np.tile(np.arange(PER_CLASS) < 20, 10)  # 20 per class to train, 10 to test
    clf = ExtraTreesClassifier(n_estimators=150, random_state=0).fit(features[train], labels[train])
    accuracy = clf.score(features[~train], labels[~train])
    assert accuracy > 0.5, accuracy


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def test_cli_writes_file_and_reports_errors(tmp_path, capsys):
    out = tmp_path / "cli.h5"
    png = tmp_path / "montage.png"
    assert synthetic.main([str(out), "--n", "12", "--size", "32", "--seed", "2", "--balance", "uniform",
                           "--quiet", "--montage", str(png)]) == 0
    with h5py.File(out, "r") as f:
        assert f["images"].shape == (12, 32, 32, 3) and f.attrs["balance"] == "uniform"
    assert matplotlib.image.imread(png).shape[:2] == (10 * 32, 6 * 32)  # 10 classes x 6 images
    assert synthetic.main([str(tmp_path / "missing" / "x.h5"), "--n", "5", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and "Traceback" not in err


def test_cli_module_entry_point(tmp_path):
    out = tmp_path / "m.h5"
    proc = subprocess.run([sys.executable, "-m", "galaxy_core.synthetic", str(out), "--n", "10",
                           "--size", "20", "--seed", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "synthetic" in proc.stderr and "100%" in proc.stderr  # progress bar
    bad = subprocess.run([sys.executable, "-m", "galaxy_core.synthetic", str(out), "--n", "0"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


def test_merger_members_are_drawn_apart(monkeypatch):
    """Version 4: a merger's two main members lie MERGER_SEPARATION apart (at least 0.08 galaxy
    units, ~2 effective radii), not overlapping into one body with two peaks (a bar's look)."""
    from galaxy_core.synthetic import classes

    centres = []
    real_member = classes._member

    def record(cv, pal, x0, y0, flux, scale):
        centres.append((x0, y0))
        return real_member(cv, pal, x0, y0, flux, scale)

    monkeypatch.setattr(classes, "_member", record)
    seps = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        centres.clear()
        classes._merging(synthetic.Canvas(64, rng), synthetic.Palette(rng))
        (x1, y1), (x2, y2) = centres[:2]
        seps.append(np.hypot(x2 - x1, y2 - y1))
    lo, hi = synthetic.MERGER_SEPARATION
    assert lo >= 0.08
    assert min(seps) >= lo - 1e-9 and max(seps) <= hi + 1e-9, (min(seps), max(seps))
    assert max(seps) - min(seps) > 0.5 * (hi - lo)  # drawn across the range, not a constant
