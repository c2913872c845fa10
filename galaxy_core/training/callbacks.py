"""The Keras callbacks of a training run: best-weights early stopping, per-epoch checkpoint, tqdm bar.

- `BestWeightsEarlyStopping`: the recipe's early stopping (val accuracy, mode max, patience,
  restore best weights) that also restores them at the maximum epoch count and after a resume.
- `WorkCheckpoint`: after every epoch, the history row, `checkpoint.save_checkpoint` and the one-line
  epoch summary (`Epoch 3/8: loss 0.5213 - acc 0.8100 - val_loss 0.6012 - val_acc 0.7800 - 12.3 s ...`).
- `WeightAverage`: stochastic weight averaging (Izmailov et al. 2018): the running mean of the
  weights after each epoch from `start_epoch` on, put into the model at the end with its
  BatchNorm statistics recomputed on training batches.
- `TensorBoardLog`: Keras's TensorBoard callback (per-epoch loss and accuracy of training and
  validation, the learning rate) writing into the work folder's `tensorboard/` (the bundle keeps
  it), plus the validation recall of each class (`recall/<k>_<class>`, in `validation/`).
- `EpochProgressBar`: Keras's own progress bar replaced by a tqdm bar per epoch on stderr in
  `io.BAR_FORMAT` with desc `Epoch k/N` (`Epoch 3/8:  42%|####      | 5/12 [...]`), the two
  patterns the app reads.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from galaxy_core.bundle.schema import TENSORBOARD_DIR
from galaxy_core.training.checkpoint import save_checkpoint
from galaxy_core.io import progress_bar
from galaxy_core.models.network import walk_layers

MONITOR = "val_accuracy"
TENSORBOARD = TENSORBOARD_DIR  # the TensorBoard logs' folder, in the work folder and in the bundle


class BestWeightsEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping on val accuracy that always ends with the best epoch's weights.

    Keras's own callback forgets its state between `fit` calls; this one can be seeded with the
    state of an interrupted run (`restore_state`), so a resumed run keeps its best-so-far epoch,
    patience counter and weights. The best weights are put back at the end of training whether or
    not the patience ran out.
    """

    def __init__(self, patience: int, **kwargs):
        super().__init__(monitor=MONITOR, mode="max", patience=patience, restore_best_weights=True,
                         verbose=0, **kwargs)
        self._seed_state: dict | None = None
        self.improved = False

    def restore_state(self, best: float | None, best_epoch: int, wait: int,
                      best_weights: list[np.ndarray] | None) -> None:
        """Seed the state (0-based best_epoch) that `on_train_begin` would otherwise reset."""
        self._seed_state = dict(best=best, best_epoch=best_epoch, wait=wait, best_weights=best_weights)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._seed_state is not None:
            self.best = self._seed_state["best"]
            self.best_epoch = self._seed_state["best_epoch"]
            self.wait = self._seed_state["wait"]
            self.best_weights = self._seed_state["best_weights"]

    def on_epoch_end(self, epoch, logs=None):
        before = (self.best, self.best_epoch)
        super().on_epoch_end(epoch, logs)
        self.improved = self.best_epoch == epoch and (self.best, self.best_epoch) != before

    def on_train_end(self, logs=None):
        # Keras restores only if best weights were recorded; make sure they always are put back.
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class WeightAverage(keras.callbacks.Callback):
    """The running mean of the model's weights after epoch `start_epoch` (1-based) and each later one.

    `apply` puts the mean into the model and refreshes BatchNorm's moving statistics, which a mean
    of weights does not carry (the averaged network's activations differ from every snapshot's).
    Must come before `WorkCheckpoint` in the callback list, so a checkpoint holds the epoch's mean.
    """

    def __init__(self, start_epoch: int):
        super().__init__()
        self.start_epoch = int(start_epoch)
        self.mean: list[np.ndarray] | None = None
        self.count = 0

    def restore_state(self, mean: list[np.ndarray] | None, count: int) -> None:
        """Continue from a checkpoint's mean of `count` snapshots (None and 0 before the first)."""
        self.mean, self.count = mean, int(count) if mean is not None else 0

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 < self.start_epoch:
            return
        weights = self.model.get_weights()
        if self.mean is None:
            self.mean = [np.array(w, np.float32) for w in weights]
        else:  # incremental mean: no sum that grows with the epoch count
            for m, w in zip(self.mean, weights):
                m += (w - m) / (self.count + 1)
        self.count += 1

    def apply(self, model: keras.Model, batches, max_batches: int = 32) -> int:
        """Set `model`'s weights to the mean and recompute its BatchNorm statistics.

        The statistics become the plain mean over the first `max_batches` batches of `batches`
        (each layer's momentum is set to k / (k + 1) for batch k, then put back), as PyTorch's
        `update_bn` does, whatever the layers' own momentum.

        Args:
            batches: an iterable of `(images, labels)` training batches (augmented as in training).
            max_batches: how many batches the statistics are averaged over.

        Returns:
            The number of snapshots averaged (0: none yet, the model is left as it is).
        """
        if not self.count:
            return 0
        model.set_weights([m.astype(w.dtype) for m, w in zip(self.mean, model.get_weights())])
        norms = batchnorm_layers(model)
        momenta = [layer.momentum for layer in norms]
        try:
            for k, (images, *_rest) in enumerate(batches):
                if k >= max_batches:
                    break
                for layer in norms:
                    layer.momentum = k / (k + 1)
                model(images, training=True)  # BatchNormalization updates its moving mean and variance
        finally:
            for layer, momentum in zip(norms, momenta):
                layer.momentum = momentum
        return self.count


def batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer of `model`, nested models (a backbone) included."""
    return [layer for layer in walk_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]


class WorkCheckpoint(keras.callbacks.Callback):
    """After every epoch the history row; every `every` epochs (and at the last one, early stop
    included) model + optimizer, best weights and state into the work folder.

    Must come after `BestWeightsEarlyStopping` and `WeightAverage` in the callback list (it reads
    their updated state).
    """

    def __init__(self, work: Path, stopper: BestWeightsEarlyStopping, history: dict[str, list],
                 n_train: int, total_epochs: int, log: Callable[[str], None] | None = print,
                 every: int = 1, average: WeightAverage | None = None, save: bool = True):
        super().__init__()
        self.work, self.stopper, self.history, self.average = work, stopper, history, average
        self.save = save  # False: the history and the log line only (a multi-worker run's other workers)
        self.n_train, self.total_epochs, self.log, self.every = n_train, total_epochs, log, max(1, int(every))
        self._epoch_start = self._val_start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start, self._val_start = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        if self._epoch_start is not None and self._val_start is None:
            self._val_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        epoch_time = now - (self._epoch_start or now)
        train_time = (self._val_start or now) - (self._epoch_start or now)
        row = {k: float(v) for k, v in (logs or {}).items()}
        row["epoch_time_s"] = epoch_time
        row["images_per_s"] = self.n_train / train_time if train_time > 0 else float("nan")
        done = len(self.history["epoch"])
        for key in row:  # a key first seen now: NaN for the earlier epochs
            self.history.setdefault(key, [float("nan")] * done)
        for key, values in self.history.items():
            values.append(epoch + 1 if key == "epoch" else row.get(key, float("nan")))
        epochs_done = epoch + 1
        if self.save and (epochs_done % self.every == 0 or epochs_done >= self.total_epochs
                          or self.model.stop_training):
            save_checkpoint(self.work, self.model, self.stopper, self.history, epochs_done,
                            policy=keras.mixed_precision.global_policy().name, average=self.average)
        if self.log is not None:
            self.log(epoch_summary(epoch + 1, self.total_epochs, row, self.stopper))


def epoch_summary(epoch: int, total: int, row: dict[str, float], stopper: BestWeightsEarlyStopping) -> str:
    """`Epoch 3/8: loss 0.5213 - acc 0.8100 - val_loss 0.6012 - val_acc 0.7800 - 12.3 s (...)`."""
    nan = float("nan")
    best = stopper.best if stopper.best is not None else nan
    return (f"Epoch {epoch}/{total}: loss {row.get('loss', nan):.4f} - acc {row.get('accuracy', nan):.4f}"
            f" - val_loss {row.get('val_loss', nan):.4f} - val_acc {row.get(MONITOR, nan):.4f}"
            f" - {row['epoch_time_s']:.1f} s ({row['images_per_s']:,.0f} train images/s);"
            f" best val_acc {best:.4f} at epoch {stopper.best_epoch + 1}")


class TensorBoardLog(keras.callbacks.TensorBoard):
    """TensorBoard logs of a run: Keras's per-epoch scalars plus the validation recall per class.

    Keras's callback writes `train/` and `validation/` event files with `epoch_loss`,
    `epoch_accuracy` (both) and `epoch_learning_rate` (train). This one adds, in `validation/`,
    `recall/<k>_<class name>` for each class k: the fraction of the validation images of class k
    predicted as k (argmax; NaN without such images). The recall comes from `set_recall` (the
    multi-worker loop measures it in its validation step) or, when none was set for the epoch,
    from `model.predict` on `val_data` (`(dataset, labels int (n,))`, the dataset in label order).
    No graph, histograms or profile: the logs stay small. `tensorboard --logdir runs` shows them.
    """

    def __init__(self, log_dir: Path, class_names, val_data=None):
        super().__init__(log_dir=str(log_dir), histogram_freq=0, write_graph=False, write_images=False,
                         update_freq="epoch", profile_batch=0)
        self.class_names, self.val_data = tuple(class_names), val_data
        self._recall: np.ndarray | None = None

    def set_recall(self, recall: np.ndarray) -> None:
        """The validation recall of each class for the epoch that ends next, float (num_classes,)."""
        self._recall = np.asarray(recall, np.float64)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        recall, self._recall = self._recall, None
        if recall is None and self.val_data is not None:
            recall = class_recall(self.model, *self.val_data, len(self.class_names))
        if recall is None:
            return
        with self._val_writer.as_default():
            for k, (name, value) in enumerate(zip(self.class_names, recall)):
                tf.summary.scalar(f"recall/{k}_{name.replace(' ', '_')}", float(value), step=epoch)
        self._val_writer.flush()


def class_recall(model: keras.Model, dataset, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Recall of each class on `dataset` (float64 (num_classes,), NaN for an absent class).

    `labels` int (n,) are the dataset's labels in its order (a validation dataset keeps its order).
    """
    from sklearn.metrics import recall_score

    predicted = np.argmax(model.predict(dataset, verbose=0), axis=1)
    return recall_score(np.asarray(labels), predicted, labels=np.arange(num_classes), average=None,
                        zero_division=np.nan)


class EpochProgressBar(keras.callbacks.Callback):
    """A tqdm bar per epoch over the training batches (`io.progress_bar`, desc `Epoch k/N`)."""

    def __init__(self, total_epochs: int, disable: bool = False):
        super().__init__()
        self.total_epochs, self.disable = total_epochs, disable
        self._bar = None

    def on_epoch_begin(self, epoch, logs=None):
        self._close()
        steps = (self.params or {}).get("steps")
        self._bar = progress_bar(steps, desc=f"Epoch {epoch + 1}/{self.total_epochs}", unit="batch",
                                 disable=self.disable, leave=True)

    def on_train_batch_end(self, batch, logs=None):
        if self._bar is not None:
            self._bar.update(1)

    def on_epoch_end(self, epoch, logs=None):
        self._close()

    def on_train_end(self, logs=None):
        self._close()

    def _close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
