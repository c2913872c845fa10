"""Multi-worker training: our own step under `strategy.run`, with the recipe's callbacks.

Keras 3's `model.fit` dies in its first step under `tf.distribute.MultiWorkerMirroredStrategy`
(`ValueError: Attempt to convert a value (PerReplica:{...}) with an unsupported type`,
keras-team/keras#20585). So `--strategy multiworker` trains with TensorFlow's documented
custom-training-loop pattern for that strategy (tensorflow.org/tutorials/distribute/multi_worker_with_ctl):
a `tf.function` step that runs the model under `strategy.run` on each replica's share of the
global batch, the loss summed over the share and divided by the GLOBAL batch size (the optimizer
all-reduces the gradients by summing), and the epoch's sums reduced over all replicas with
`strategy.reduce`. The engine is TensorFlow's; only the loop is ours. It keeps `fit`'s semantics:

- class weights: each image's loss weighs `class_weight[label]` as in Keras's `fit` (the loss
  is sum(w * loss) / images; the training accuracy is unweighted, as `fit` reports it (measured:
  tests/test_multiworker.py)); validation is unweighted;
- the same callbacks (`BestWeightsEarlyStopping`, `WeightAverage`, `WorkCheckpoint`, the epoch bar,
  TensorBoard) driven through a `keras.callbacks.CallbackList`, with the same `logs` keys;
- every worker steps the same epochs: the chief's decisions (the epoch to start from, early
  stopping) are broadcast, so no worker waits in an all-reduce that the others never start.

A resumed run (`build_synced`): every worker builds the same fresh model and optimizer in the
strategy's scope (the variables are created in the same order everywhere), the chief then loads
the checkpoint into its copy, and `sync_from_chief` broadcasts the weights and optimizer state to
the other workers. So only the chief reads the work folder: the workers need no shared disk.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from galaxy_core.config import Config
from galaxy_core.errors import TrainingError
from galaxy_core.models.network import build_model, load_model

Log = Callable[[str], None]

__all__ = ["build_synced", "sync_from_chief", "broadcast_numbers", "fit_distributed", "train_steps"]


def build_synced(cfg: Config, strategy: tf.distribute.Strategy, checkpoint: Path | None) -> keras.Model:
    """A compiled model with built optimizer in `strategy`'s scope; the chief's holds `checkpoint`.

    Every worker calls this at the same point (variable creation is collective under
    `MultiWorkerMirroredStrategy`: initial values are broadcast from the chief). Only the chief
    passes a `checkpoint` (a Keras model folder with optimizer state); its weights and optimizer
    variables reach the others in `fit_distributed`'s `sync_from_chief`.
    """
    with strategy.scope():
        model = build_model(cfg, weights=cfg.weights)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.learning_rate),
                      loss="categorical_crossentropy", metrics=["accuracy"])
        model.optimizer.build(model.trainable_variables)
    if checkpoint is not None:
        saved = load_model(checkpoint, compile=True)  # plain, outside the strategy
        with strategy.scope():
            model.set_weights(saved.get_weights())
            mine, theirs = model.optimizer.variables, saved.optimizer.variables
            if len(mine) != len(theirs):
                raise ValueError(f"checkpoint {checkpoint} has {len(theirs)} optimizer variables, the "
                                 f"new model {len(mine)}")
            for variable, value in zip(mine, theirs):
                variable.assign(value)
    return model


def _first_replica_sum(strategy: tf.distribute.Strategy, values: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    """`values` as replica 0 (the chief's first device) has them, on every replica (float64 sums)."""

    def replica_fn():
        ctx = tf.distribute.get_replica_context()
        first = tf.cast(tf.equal(ctx.replica_id_in_sync_group, 0), tf.float64)
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, [tf.cast(v, tf.float64) * first for v in values])

    return strategy.experimental_local_results(strategy.run(tf.function(replica_fn)))[0]


def broadcast_numbers(strategy: tf.distribute.Strategy, numbers: Sequence[float]) -> list[float]:
    """The chief's `numbers`, on every worker (each worker passes its own; the chief's win)."""
    values = _first_replica_sum(strategy, [tf.constant(np.asarray(numbers, np.float64))])[0]
    return [float(v) for v in values.numpy()]


def sync_from_chief(strategy: tf.distribute.Strategy, variables: Sequence) -> None:
    """Set `variables` (Keras variables of a model built in `strategy`'s scope) to the chief's values."""
    values = _first_replica_sum(strategy, [v.value for v in variables])
    with strategy.scope():
        for variable, value in zip(variables, values):
            variable.assign(tf.cast(value, variable.dtype))


def train_steps(n_train: int, batch_size: int, replicas: int, cap: int = 0) -> int:
    """Global steps per epoch: ceil(n / batch), without a last batch smaller than the replica count
    (a replica would get an empty batch, and BatchNormalization's batch mean of nothing is NaN);
    at most `cap` when `cap` > 0."""
    steps = math.ceil(n_train / batch_size)
    if 0 < n_train % batch_size < replicas:
        steps -= 1
    return max(1, min(steps, cap) if cap else steps)


def make_steps(model: keras.Model, strategy: tf.distribute.Strategy, class_weight: np.ndarray):
    """The distributed train and validation steps; each returns global sums (float32 tensors)."""
    weights = tf.constant(class_weight, tf.float32)

    def train_replica(x, y):
        ctx = tf.distribute.get_replica_context()
        w = tf.gather(weights, tf.argmax(y, axis=-1))
        n_global = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(tf.shape(y)[0], tf.float32))
        with tf.GradientTape() as tape:
            probs = tf.cast(model(x, training=True), tf.float32)
            per_image = keras.losses.categorical_crossentropy(y, probs)
            loss = tf.reduce_sum(per_image * w) / tf.maximum(n_global, 1.0)
            scaled = model.optimizer.scale_loss(loss)  # the loss-scale optimizer's scaling, if any
        grads = tape.gradient(scaled, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))  # all-reduced (sum)
        correct = tf.cast(tf.equal(tf.argmax(probs, -1), tf.argmax(y, -1)), tf.float32)
        return tf.reduce_sum(per_image * w), tf.reduce_sum(correct), tf.cast(tf.shape(y)[0], tf.float32)

    def val_replica(x, y):
        probs = tf.cast(model(x, training=False), tf.float32)
        per_image = keras.losses.categorical_crossentropy(y, probs)
        hit = tf.cast(tf.equal(tf.argmax(probs, -1), tf.argmax(y, -1)), tf.float32)
        return (tf.reduce_sum(per_image), tf.reduce_sum(hit), tf.cast(tf.shape(y)[0], tf.float32),
                tf.reduce_sum(y * hit[:, None], axis=0), tf.reduce_sum(y, axis=0))  # per-class hits, counts

    def reduce(outputs):
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, o, axis=None) for o in outputs]

    @tf.function
    def train_step(batch):
        return reduce(strategy.run(train_replica, args=batch))

    @tf.function
    def val_step(batch):
        return reduce(strategy.run(val_replica, args=batch))

    return train_step, val_step


def fit_distributed(model: keras.Model, strategy: tf.distribute.Strategy, train_ds: tf.data.Dataset,
                    val_ds: tf.data.Dataset, *, class_weight: Mapping[int, float] | None, num_classes: int,
                    epochs: int, initial_epoch: int, finished: bool, steps: int,
                    callbacks: Sequence[keras.callbacks.Callback],
                    on_val_recall: Callable[[np.ndarray], None] | None = None) -> tuple[int, int]:
    """Train `model` from `initial_epoch` (the chief's) to `epochs` or early stopping, on every worker.

    Args:
        train_ds, val_ds: `pipeline.make_dataset` datasets of GLOBAL batches (sharded by data
            between workers, split between each worker's replicas).
        class_weight: `{class: weight}` or None (all 1).
        initial_epoch, finished: the chief's resume point and whether its run had already stopped
            (other workers pass anything: the chief's values are broadcast).
        steps: global steps per epoch (`train_steps`).
        callbacks: Keras callbacks, called as `fit` calls them (`logs`: loss, accuracy, val_loss,
            val_accuracy).
        on_val_recall: called before the callbacks' `on_epoch_end` with the validation recall of
            each class, float64 (num_classes,) (NaN for a class without validation images).

    Returns:
        (first epoch trained (0-based), epochs done), the same on every worker.

    Raises:
        TrainingError: another worker stopped (its collective ops were aborted); the message says
            to start the same commands again.
    """
    try:
        return _fit(model, strategy, train_ds, val_ds, class_weight, num_classes, epochs, initial_epoch,
                    finished, steps, callbacks, on_val_recall)
    except LOST_WORKER as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
        first_line = next((line for line in lines if "unhealthy" in line or "task" in line), lines[0])
        raise TrainingError(
            f"a worker of the multi-worker run stopped ({type(err).__name__}: {first_line}). Start the "
            f"same commands again on every worker: the run continues from its last finished epoch."
        ) from None


# What a collective op raises when another worker died (heartbeats stop: the ops are aborted).
LOST_WORKER = (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.DeadlineExceededError,
               tf.errors.AbortedError)


def _fit(model, strategy, train_ds, val_ds, class_weight, num_classes, epochs, initial_epoch, finished,
         steps, callbacks, on_val_recall) -> tuple[int, int]:
    start, done_flag = broadcast_numbers(strategy, [initial_epoch, float(finished)])
    start = int(start)
    sync_from_chief(strategy, [*model.variables, *model.optimizer.variables])
    if done_flag or start >= epochs:
        return start, start
    table = np.ones(num_classes, np.float32)
    for c, w in (class_weight or {}).items():
        table[int(c)] = w
    train_step, val_step = make_steps(model, strategy, table)
    train_dist = strategy.experimental_distribute_dataset(train_ds)
    val_dist = strategy.experimental_distribute_dataset(val_ds)
    calls = keras.callbacks.CallbackList(list(callbacks), model=model, epochs=epochs, steps=steps, verbose=0)
    model.stop_training = False
    calls.on_train_begin()
    epoch = start
    for epoch in range(start, epochs):
        calls.on_epoch_begin(epoch)
        total = np.zeros(3)  # sum(w * loss), correct, images
        for step, batch in zip(range(steps), train_dist):
            calls.on_train_batch_begin(step)
            total += [float(t) for t in train_step(batch)]
            calls.on_train_batch_end(step)
        calls.on_test_begin()
        loss_sum, hits, n_val = 0.0, 0.0, 0.0
        class_hits, class_n = np.zeros(num_classes), np.zeros(num_classes)
        for batch in val_dist:
            out = val_step(batch)
            loss_sum, hits, n_val = loss_sum + float(out[0]), hits + float(out[1]), n_val + float(out[2])
            class_hits += out[3].numpy()
            class_n += out[4].numpy()
        val_logs = {"loss": loss_sum / max(n_val, 1.0), "accuracy": hits / max(n_val, 1.0)}
        calls.on_test_end(dict(val_logs))
        logs = {"loss": total[0] / max(total[2], 1.0), "accuracy": total[1] / max(total[2], 1.0),
                **{f"val_{k}": v for k, v in val_logs.items()}}
        if on_val_recall is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                on_val_recall(np.where(class_n > 0, class_hits / np.maximum(class_n, 1), np.nan))
        calls.on_epoch_end(epoch, logs)
        # the chief's early-stopping decision for everyone (val accuracy is global, but its
        # stopper may hold a resumed run's state that the other workers do not have)
        model.stop_training = bool(broadcast_numbers(strategy, [float(model.stop_training)])[0])
        if model.stop_training:
            break
    calls.on_train_end()
    return start, epoch + 1


def describe(strategy: tf.distribute.Strategy, workers: int, first: int, done: int, seconds: float) -> str:
    """`multi-worker training: 2 worker(s), 2 replica(s) in sync, epochs 1-2, 14 s` (for the log)."""
    span = f"epochs {first + 1}-{done}" if done > first else f"no epoch left after epoch {first}"
    return (f"multi-worker training: {workers} worker(s), {strategy.num_replicas_in_sync} replica(s) in "
            f"sync, {span}, {seconds:.0f} s")

