"""Benchmark the input pipeline and CPU training throughput.

1. Images/s delivered by `galaxy_core.training.pipeline.make_dataset` from a uint8 memmap like the
   preprocessed cache (no model): iterate the training dataset (shuffled) and the validation one.
2. CPU training throughput of the recipe's model (DenseNet201, random weights) for reference:
   `train_on_batch` steps after a warm-up step.

Usage:
    python bench/bench_pipeline.py [--n 2048] [--size 256] [--batch-size 32] [--epochs 3]
        [--train-size 224] [--train-batch 16] [--train-steps 3] [--skip-train]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def make_memmap(path: Path, n: int, size: int, seed: int = 0) -> np.memmap:
    """A uint8 (n, size, size, 3) memmap of random pixels, written in chunks."""
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    rng = np.random.default_rng(seed)
    for start in range(0, n, 256):
        stop = min(start + 256, n)
        images[start:stop] = rng.integers(0, 256, (stop - start, size, size, 3), dtype=np.uint8)
    images.flush()
    return np.load(path, mmap_mode="r")


def count_images(dataset):
    """Consume one epoch inside a tf.function, as `Model.fit` does (an eager Python loop adds
    per-batch overhead that training never pays), and return the number of images."""
    import tensorflow as tf

    @tf.function
    def consume(ds):
        total = tf.constant(0, tf.int64)
        for x, _ in ds:
            total += tf.shape(x, out_type=tf.int64)[0]
        return total

    return consume(dataset)


def bench_pipeline(n: int, size: int, batch_size: int, epochs: int) -> None:
    from galaxy_core.config import Config
    from galaxy_core.training.pipeline import make_dataset

    cfg = Config(image_size=size, batch_size=batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        images = make_memmap(Path(tmp) / "images.npy", n, size)
        labels = np.arange(n) % cfg.num_classes
        indices = np.arange(n)
        for training in (True, False):
            dataset = make_dataset(images, labels, indices, cfg, training=training)
            rates = []
            for epoch in range(epochs):
                start = time.perf_counter()
                count = int(count_images(dataset))
                rates.append(count / (time.perf_counter() - start))
            # First epoch includes tf.data start-up and tracing; report the median of the later
            # ones (epoch rates vary by up to 2x on a shared VM: the median is the honest figure).
            typical = float(np.median(rates[1:])) if len(rates) > 1 else rates[0]
            print(f"pipeline {'train' if training else 'val  '} {n} images {size}x{size} batch "
                  f"{batch_size}: median {typical:,.0f} images/s "
                  f"(epochs: {', '.join(f'{r:,.0f}' for r in rates)})")
        # References: the two halves of the work, one thread, no tf.data.
        from galaxy_core.inference.probabilities import to_model_input as rescale

        rng = np.random.default_rng(0)
        batches = [np.sort(rng.choice(n, batch_size, replace=False)) for _ in range(n // batch_size)]
        start = time.perf_counter()
        read = [images[rows] for rows in batches]
        read_rate = n / (time.perf_counter() - start)
        start = time.perf_counter()
        for batch in read:
            rescale(batch)
        rescale_rate = n / (time.perf_counter() - start)
        print(f"reference, one thread: memmap batch reads {read_rate:,.0f} images/s; "
              f"numpy rescale (uint8 -> float32 * (1/255)) {rescale_rate:,.0f} images/s")


def bench_training(size: int, batch_size: int, steps: int, backbone: str) -> None:
    import keras

    from galaxy_core.config import Config
    from galaxy_core.models.network import build_model

    cfg = Config(image_size=size, batch_size=batch_size, backbone=backbone)
    start = time.perf_counter()
    model = build_model(cfg, weights=None)
    print(f"build {backbone} at {size}x{size}: {time.perf_counter() - start:.1f} s, "
          f"{model.count_params():,} parameters")
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, size, size, 3), dtype=np.float32)
    y = np.eye(cfg.num_classes, dtype=np.float32)[rng.integers(0, cfg.num_classes, batch_size)]
    start = time.perf_counter()
    model.train_on_batch(x, y)  # compiles the train step
    print(f"first step (graph build): {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    elapsed = time.perf_counter() - start
    print(f"training {backbone} {size}x{size} batch {batch_size}: {steps * batch_size / elapsed:.1f} "
          f"images/s ({elapsed / steps:.2f} s/step over {steps} steps)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048, help="images in the memmap")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=224)
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--backbone", default="DenseNet201")
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()

    import tensorflow as tf

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}, TensorFlow {tf.__version__}, "
          f"GPUs: {len(tf.config.list_physical_devices('GPU'))}")
    bench_pipeline(args.n, args.size, args.batch_size, args.epochs)
    if not args.skip_train:
        bench_training(args.train_size, args.train_batch, args.train_steps, args.backbone)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
