"""tf.data input pipeline from the preprocessed cache (uint8 memmap) to model-ready batches.

A Python generator reads one batch at a time from the memmap with a single sorted fancy-index read
(sorted rows = mostly sequential page-cache reads, no per-image Python work), then tf.data casts
uint8 -> float32 / 255 and one-hot encodes the labels in parallel and prefetches. Augmentation is
not done here: it lives in the model graph (galaxy_core.augment) and runs on the accelerator.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from galaxy_core.config import Config


def batch_index_lists(indices: np.ndarray, batch_size: int, rng: np.random.Generator | None
                      ) -> list[np.ndarray]:
    """Split `indices` into batches (shuffled first if `rng` is given), each sorted for fast reads.

    Args:
        indices: int64 `(n,)` dataset rows.
        batch_size: rows per batch (the last batch may be smaller).
        rng: shuffles the order when given (training); None keeps the given order.

    Returns:
        List of int64 arrays, every row of `indices` exactly once.
    """
    order = rng.permutation(indices) if rng is not None else np.asarray(indices)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    # Sorting inside a batch changes nothing for SGD but makes memmap reads near-sequential.
    return [np.sort(b) if rng is not None else b for b in batches]


def make_dataset(images: np.ndarray, labels: np.ndarray, indices, cfg: Config,
                 training: bool) -> tf.data.Dataset:
    """Batches of `(float32 images in [0, 1], one-hot labels)` for `fit` / `evaluate`.

    Args:
        images: uint8 `(N, S, S, 3)`, typically the preprocessed cache's memmap
            (`PreprocessedCache.images`); row i = dataset index i. S must be `cfg.image_size`.
        labels: int `(N,)` labels aligned with `images` (row i = dataset index i).
        indices: int `(n,)` rows to use (e.g. `Split.train`).
        cfg: uses `batch_size`, `num_classes`, `seed`.
        training: reshuffle every epoch (seeded from `cfg.seed`) when True; fixed order when False.
            No augmentation here in either case (it is a model layer, active in `fit` only).

    Returns:
        A `tf.data.Dataset` of `(float32 (B, S, S, 3), float32 (B, num_classes))`, B <= batch_size,
        with known cardinality `ceil(n / batch_size)`, prefetched.
    """
    indices = np.asarray(indices, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, S, S, 3); got {images.dtype} {images.shape}")
    if images.shape[1:3] != (cfg.image_size, cfg.image_size):
        raise ValueError(f"images are {images.shape[1]}x{images.shape[2]} but cfg.image_size is "
                         f"{cfg.image_size}; rebuild the preprocessed cache for this size.")
    if len(labels) != len(images):
        raise ValueError(f"labels ({len(labels)}) must be aligned with images ({len(images)})")
    if len(indices) == 0:
        raise ValueError("indices is empty: no images to feed")
    if indices.min() < 0 or indices.max() >= len(images):
        raise ValueError(f"indices out of range 0..{len(images) - 1}")
    if labels[indices].min() < 0 or labels[indices].max() >= cfg.num_classes:
        raise ValueError(f"labels must be in 0..{cfg.num_classes - 1}")

    size, batch_size, num_classes = cfg.image_size, cfg.batch_size, cfg.num_classes
    rng = np.random.default_rng(cfg.seed) if training else None
    n_batches = -(-len(indices) // batch_size)

    def generate():
        # Called once per epoch by tf.data: a new shuffle each time (same sequence for a seed).
        for rows in batch_index_lists(indices, batch_size, rng):
            yield images[rows], labels[rows]  # uint8 (b, S, S, 3), int64 (b,)

    dataset = tf.data.Dataset.from_generator(
        generate,
        output_signature=(tf.TensorSpec((None, size, size, 3), tf.uint8),
                          tf.TensorSpec((None,), tf.int64)))
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(n_batches))

    def to_model_input(x, y):
        # Same math as galaxy_core.preprocess.rescale: float32(x) / 255 (correctly rounded).
        x = tf.cast(x, tf.float32) / tf.constant(255.0, tf.float32)
        return x, tf.one_hot(y, num_classes, dtype=tf.float32)

    dataset = dataset.map(to_model_input, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    # The generator cannot be split by files; shard by data under multi-worker strategies.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
