"""tf.data input pipeline from the preprocessed cache (uint8 memmap) to model-ready batches.

Shuffled int64 row indices are batched, then each batch is read from the memmap with one sorted
fancy-index read (`tf.numpy_function`, in parallel; sorted rows = near-sequential page-cache reads,
no per-image Python work), then tf.data casts uint8 -> float32 * (1/255) and one-hot encodes the labels
in parallel and prefetches. (Measured faster than `Dataset.from_generator`, whose op also lowers
glibc's trim threshold for the whole process: see BENCHMARKS.md.) Augmentation is
not done here: it lives in the model graph (galaxy_core.models.augment) and runs on the accelerator.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from galaxy_core.config import Config
from galaxy_core.preprocessing.preprocess import INVERSE_255


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

    size, num_classes = cfg.image_size, cfg.num_classes

    def read_batch(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # One sorted fancy-index read per batch: near-sequential memmap access. The order inside
        # a batch does not matter for SGD; validation indices keep their given order.
        if training:
            rows = np.sort(rows)
        return images[rows], labels[rows]  # uint8 (b, S, S, 3), int64 (b,)

    def read(rows):
        x, y = tf.numpy_function(read_batch, [rows], (tf.uint8, tf.int64), stateful=False)
        # Same math as galaxy_core.inference.probabilities.to_model_input: float32(x) * float32(1/255), bit for bit.
        x = tf.cast(x, tf.float32) * tf.constant(INVERSE_255, tf.float32)
        x.set_shape((None, size, size, 3))
        y.set_shape((None,))  # numpy_function outputs have unknown shapes; Keras needs the ranks
        return x, tf.one_hot(y, num_classes, dtype=tf.float32)

    # Shuffle the (cheap) int64 indices, not the images; a new order every epoch, seeded.
    dataset = tf.data.Dataset.from_tensor_slices(indices)
    if training:
        dataset = dataset.shuffle(len(indices), seed=cfg.seed, reshuffle_each_iteration=True)
    # Training batches may come out of order (their content is already shuffled): this lets the
    # parallel reads overlap instead of waiting on the slowest (measured: BENCHMARKS.md).
    # Validation and test keep their order.
    dataset = dataset.batch(cfg.batch_size).map(read, num_parallel_calls=tf.data.AUTOTUNE,
                                                deterministic=not training)
    options = tf.data.Options()
    # There are no files to split between workers: shard by data under multi-worker strategies.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
