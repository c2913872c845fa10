"""Shared test setup: quiet TensorFlow, no GPU, and small Galaxy10-format files made on the spot."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

from pathlib import Path  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def write_galaxy10_like(path, n=40, size=32, seed=0, labels=None, **overrides):
    """Write a Galaxy10-format HDF5 file of random images (format only, not learnable).

    Args:
        path: where to write.
        n: number of images.
        size: image side in pixels.
        seed: RNG seed.
        labels: optional int array of length n (default: every class, cycling).
        overrides: replace a dataset by name (e.g. `ans=np.array(...)`), or drop it with None.

    Returns:
        The path written.
    """
    rng = np.random.default_rng(seed)
    data = {
        "images": rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8),
        "ans": (np.arange(n) % 10 if labels is None else np.asarray(labels)).astype(np.uint8),
        "ra": rng.uniform(0, 360, n),
        "dec": rng.uniform(-20, 60, n),
        "redshift": rng.uniform(0.01, 0.2, n),
        "pxscale": np.full(n, 0.262),
    }
    data.update(overrides)
    with h5py.File(path, "w") as f:
        for key, value in data.items():
            if value is not None:
                f.create_dataset(key, data=value)
        f.attrs["synthetic"] = True
    return Path(path)


@pytest.fixture
def galaxy10_file(tmp_path):
    """A 40-image, 32x32 Galaxy10-format file of random pixels (every class 4 times)."""
    return write_galaxy10_like(tmp_path / "tiny.h5")


class OrientationModel:
    """A 'model' whose output depends on orientation: softmax of the mean of 4 image quadrants."""

    output_shape = (None, 4)

    def __init__(self):
        self.calls = []

    def predict_on_batch(self, x):
        self.calls.append(x.copy())
        h = x.shape[1] // 2
        quads = np.stack([x[:, :h, :h].mean((1, 2, 3)), x[:, :h, h:].mean((1, 2, 3)),
                          x[:, h:, :h].mean((1, 2, 3)), x[:, h:, h:].mean((1, 2, 3))], axis=1)
        logits = 10 * quads + np.arange(4) * x[:, 0, :, 0].mean(1, keepdims=True)
        e = np.exp(logits - logits.max(1, keepdims=True))
        return (e / e.sum(1, keepdims=True)).astype(np.float32)


@pytest.fixture
def orientation_model():
    """The `OrientationModel` class (a numpy stand-in for a Keras softmax model)."""
    return OrientationModel


# --- a small run bundle (tests of galaxy_core.bundle, runs.reevaluate, ...) -----------------------------
BUNDLE_SIZE = 32  # image size of the `parts` bundle
BUNDLE_N_TEST = 12  # its test images


def tiny_model(num_classes=10, seed=0):
    """Conv -> global pooling -> softmax on 32x32x3 [0, 1] input (a few hundred weights)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((BUNDLE_SIZE, BUNDLE_SIZE, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="session")
def parts():
    """Everything write_bundle needs, from a tiny untrained model (built once for the session)."""
    from galaxy_core.config import Config
    from galaxy_core.evaluation.metrics import assemble_metrics, evaluate_split

    cfg = Config(image_size=BUNDLE_SIZE, weights="none", epochs=3)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (BUNDLE_N_TEST, BUNDLE_SIZE, BUNDLE_SIZE, 3), dtype=np.uint8)
    labels = np.arange(BUNDLE_N_TEST) % cfg.num_classes
    model = tiny_model()
    test = evaluate_split(model, images, labels, cfg.class_names, batch_size=8, tta=False)
    history = {"loss": [2.3, 2.2, 2.1], "accuracy": [0.1, 0.2, 0.3], "val_loss": [2.31, 2.25, 2.2],
               "val_accuracy": [0.1, 0.15, 0.2], "learning_rate": [1e-3, 1e-3, 5e-4],
               "epoch_time_s": [1.0, 0.9, 0.95]}
    return dict(
        config=cfg, model=model, history=history,
        metrics=assemble_metrics(test),
        run_info={"synthetic": True, "dataset": "tiny.h5", "split_sizes": {"test": BUNDLE_N_TEST},
                  "best_epoch": 3, "wall_time_s": 3.0},
        predictions={"indices": np.arange(100, 100 + BUNDLE_N_TEST), "labels": labels,
                     "probs": test["probs"], "images": images},
    )


@pytest.fixture(scope="session")
def good_bundle(tmp_path_factory, parts):
    """One valid bundle written once; tests copy it (cheaper than writing one each)."""
    from galaxy_core.bundle.write import write_bundle

    return write_bundle(tmp_path_factory.mktemp("shared") / "good", **parts)


# --- image files of many layouts (tests of galaxy_core.preprocessing.decode and predict) ------------------------
@pytest.fixture(scope="session")
def image_files(tmp_path_factory):
    """Image files of many layouts plus broken ones; returns {kind: (path, expected RGB uint8 or None)}."""
    import cv2

    from galaxy_core.preprocessing.preprocess import to_rgb_uint8

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    rgba = rng.integers(0, 256, (30, 30, 4), dtype=np.uint8)
    large = np.zeros((800, 1000, 3), np.uint8)
    cv2.circle(large, (500, 400), 200, (255, 200, 120), -1)
    deep = (rng.integers(0, 65536, (48, 48, 3))).astype(np.uint16)
    out = {}
    for kind, image in (("rgb", rgb), ("gray", gray), ("rgba", rgba), ("large", large), ("16bit", deep)):
        path = folder / f"{kind}.png"
        bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR if image.shape[2] == 3
                                                         else cv2.COLOR_RGBA2BGRA)
        assert cv2.imwrite(str(path), bgr)
        out[kind] = (path, to_rgb_uint8(image))
    jpeg = folder / "photo.jpg"
    assert cv2.imwrite(str(jpeg), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out["jpeg"] = (jpeg, None)
    garbage = folder / "garbage.png"
    garbage.write_bytes(b"\x89PNG this is not really an image" + rng.bytes(200))
    out["garbage"] = (garbage, None)
    return out


# --- a bundle that blends a morphology classifier (as the offline demo does) ------------------------
def fitted_morphology(num_classes=10, seed=0):
    """A `MorphologyClassifier` fitted on the statistics of drawn discs (class = disc radius bin)."""
    import cv2

    from galaxy_core.morphology.statistics import features_batch
    from galaxy_core.morphology.classifier import MorphologyClassifier

    rng = np.random.default_rng(seed)
    labels = np.arange(60) % num_classes
    images = []
    for label in labels:
        img = rng.integers(0, 12, (64, 64, 3)).astype(np.uint8)
        cv2.ellipse(img, (32, 32), (4 + 2 * int(label), 3 + int(label) // 2), 0, 0, 360, (200, 180, 160), -1)
        images.append(img)
    return MorphologyClassifier.fit(features_batch(images), labels, num_classes, seed=seed)


@pytest.fixture(scope="session")
def morphology_bundle(tmp_path_factory, parts):
    """`good_bundle`'s parts with `morphology_weight=0.5` and a fitted morphology classifier."""
    import dataclasses

    from galaxy_core.bundle.write import write_bundle

    cfg = dataclasses.replace(parts["config"], morphology_weight=0.5)
    return write_bundle(tmp_path_factory.mktemp("shared") / "blended", **dict(parts, config=cfg),
                        morphology=fitted_morphology())


# --- your own labelled images (tests of galaxy_core.preprocessing.labelled, training, the app) -------
LABELLED_CLASSES = {"bar": 5, "edge-on": 8, "ring": 2}  # class folder name -> synthetic renderer used


def write_class_folder(root, per_class=12, size=32, classes=LABELLED_CLASSES, seed=0):
    """A folder with one subfolder per class of SYNTHETIC galaxy PNGs (`per_class` each); returns it."""
    import cv2

    from galaxy_core.synthetic import generate_images

    root = Path(root)
    for name, label in classes.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i, image in enumerate(generate_images([label] * per_class, size, seed + label)):
            assert cv2.imwrite(str(folder / f"{name}-{i}.png"), image[..., ::-1])
    return root


# Small and fast: SmallCNN at 32 px, one epoch, few explanations.
def labelled_config(**changes):
    from galaxy_core.config import Config

    return Config(image_size=32, backbone="SmallCNN", weights="none", head="gap", dense_units=16,
                  epochs=1, batch_size=16, patience=2, explain_errors=2, explain_correct=1, smooth_samples=2,
                  faithfulness_steps=0).replace(**changes)


_LABELLED_RUN: list[Path] = []


@pytest.fixture(scope="session")
def labelled_run(tmp_path_factory):
    """A run trained on a 3-class folder of SYNTHETIC images, one unreadable file among them (built once;
    read only). Returns the bundle path; its runs folder is the bundle's parent."""
    if not _LABELLED_RUN:
        from galaxy_core.training.train import train_run

        base = tmp_path_factory.mktemp("labelled")
        data = write_class_folder(base / "data")
        (data / "bar" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
        _LABELLED_RUN.append(train_run(labelled_config(), data, base / "runs" / "three-classes",
                                       cache_dir=base / "cache", progress=False, on_log=lambda t: None))
    return _LABELLED_RUN[0]


_TRANSFER_RUN: list[Path] = []


@pytest.fixture(scope="session")
def transfer_run(labelled_run, tmp_path_factory):
    """A run on a 2-class CSV table (label indices named by class_names) started from `labelled_run`
    with its backbone frozen but the last 2 weighted layers (built once; read only)."""
    if not _TRANSFER_RUN:
        from galaxy_core.training.train import train_run

        base = tmp_path_factory.mktemp("transfer")
        write_class_folder(base / "images", classes={"lens": 2, "no-lens": 0})
        rows = [f"images/{name}/{name}-{i}.png,{c}" for c, name in enumerate(("lens", "no-lens")) for i in range(12)]
        (base / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
        cfg = labelled_config(init_from=str(labelled_run), freeze_backbone=True, unfreeze_last=2,
                              image_size=48, backbone="VGG19", explain_errors=0, explain_correct=0)
        _TRANSFER_RUN.append(train_run(cfg, base / "labels.csv", base / "runs" / "lenses",
                                       cache_dir=base / "cache", progress=False, on_log=lambda t: None,
                                       class_names=("lens", "no lens")))
    return _TRANSFER_RUN[0]
