"""AppTest (streamlit.testing.v1) tests of every view of the Streamlit explorer.

A tiny run bundle is built once per session (a small flat CNN, untrained; synthetic galaxies as the
test images; probabilities drawn at random with a known confusion pattern), so no training is needed.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
TINY_SIZE = 64
PER_CLASS = 3


# --- the tiny bundle ------------------------------------------------------------------------------
def tiny_model(image_size: int, num_classes: int):
    """A small flat CNN: [0, 1] input (S, S, 3) -> two convolutions -> softmax (C,)."""
    import keras

    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny_test_cnn")


def build_tiny_bundle(out_dir, image_size: int = TINY_SIZE, per_class: int = PER_CLASS, seed: int = 0,
                      name: str = "tiny-synthetic") -> Path:
    """Write a small, valid run bundle (labelled synthetic) under `out_dir/name`.

    Test images are synthetic galaxies (`per_class` per class, preprocessed like training); the
    probabilities are random with the true class most likely for about 2 of 3 images, so every view
    has both correct and misclassified images.
    """
    import keras

    from galaxy_core import bundle, evaluate, preprocess, synthetic
    from galaxy_core.config import Config

    keras.utils.set_random_seed(seed)
    cfg = Config(image_size=image_size, backbone="tiny-test-cnn", weights="none", epochs=3)
    c = cfg.num_classes
    labels = np.repeat(np.arange(c), per_class).astype(np.int64)
    raw = synthetic.generate_images(labels, image_size, seed)
    images = preprocess.preprocess_batch(raw, cfg)
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, size=(len(labels), c))
    correct = rng.random(len(labels)) < 0.67
    logits[np.arange(len(labels))[correct], labels[correct]] += 3.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    history = {"loss": [2.3, 2.0, 1.8], "accuracy": [0.1, 0.2, 0.3],
               "val_loss": [2.2, 2.1, 2.0], "val_accuracy": [0.15, 0.2, 0.25]}
    test = {"plain": evaluate.compute_metrics(labels, probs, cfg.class_names), "tta": None}
    metrics = evaluate.assemble_metrics(test, None, best_epoch=3, wall_time_s=12.5, images_per_s=40.0)
    run_info = {
        "synthetic": True,
        "dataset": "synthetic galaxies (test fixture, random probabilities)",
        "split_sizes": {"train": 8 * len(labels), "val": len(labels), "test": len(labels)},
        "best_epoch": 3,
        "wall_time_s": 12.5,
    }
    predictions = {"indices": np.arange(len(labels)), "labels": labels, "probs": probs.astype(np.float32),
                   "images": images}
    return bundle.write_bundle(Path(out_dir) / name, config=cfg, model=tiny_model(image_size, c),
                               history=history, metrics=metrics, run_info=run_info,
                               predictions=predictions)
