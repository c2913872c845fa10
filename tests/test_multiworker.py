"""galaxy_core.training.multiworker: the loop's semantics, in one process under TensorFlow's default
strategy (the same code path as under MultiWorkerMirroredStrategy with one replica): one step equals
Keras's `fit` with class weights, early stopping and the callbacks as `fit` drives them, a resumed
model that holds the checkpoint's weights and optimizer state. Real two-process runs:
tests/test_distribute.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from galaxy_core.config import Config
from galaxy_core.training.callbacks import BestWeightsEarlyStopping
from galaxy_core.training.multiworker import build_synced, fit_distributed, train_steps

STRATEGY = tf.distribute.get_strategy()


def _data(n=16, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    labels = np.arange(n) % classes
    return x, labels, np.eye(classes, dtype=np.float32)[labels]


def _model(seed=1):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="categorical_crossentropy", metrics=["accuracy"])
    model.optimizer.build(model.trainable_variables)
    return model


class Record(keras.callbacks.Callback):
    def __init__(self, script=None):
        super().__init__()
        self.logs, self.script, self.calls = [], script, []

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append("batch")

    def on_epoch_end(self, epoch, logs=None):
        if self.script is not None:
            logs["val_accuracy"] = self.script[epoch]
        self.logs.append(dict(logs))

    def on_train_end(self, logs=None):
        self.calls.append("train_end")


def test_one_step_equals_keras_fit_with_class_weights():
    x, labels, y = _data()
    weights = {0: 2.0, 1: 0.5, 2: 1.0}
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    theirs, ours = _model(), _model()
    assert all(np.array_equal(a, b) for a, b in zip(theirs.get_weights(), ours.get_weights()))
    fitted = theirs.fit(ds, validation_data=ds, epochs=1, class_weight=weights, verbose=0, shuffle=False)
    record = Record()
    first, done = fit_distributed(ours, STRATEGY, ds, ds, class_weight=weights, num_classes=3, epochs=1,
                                  initial_epoch=0, finished=False, steps=1, callbacks=[record])
    assert (first, done) == (0, 1)
    for a, b in zip(theirs.get_weights(), ours.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    logs = record.logs[0]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):  # the loss and accuracy class-weighted
        assert logs[key] == pytest.approx(fitted.history[key][0], rel=1e-5), key


def test_early_stopping_and_callbacks_as_fit_drives_them():
    x, labels, y = _data()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    model = _model()
    record, stopper = Record(script=[0.5, 0.1, 0.1, 0.1, 0.1]), BestWeightsEarlyStopping(patience=2)
    recalls = []
    first, done = fit_distributed(model, STRATEGY, ds, ds, class_weight=None, num_classes=3, epochs=5,
                                  initial_epoch=0, finished=False, steps=train_steps(16, 4, 1),
                                  callbacks=[record, stopper], on_val_recall=recalls.append)
    assert (first, done) == (0, 3)  # best at epoch 1, patience 2: stopped after epoch 3
    assert record.calls == ["train_begin"] + ["batch"] * 12 + ["train_end"]
    assert [set(logs) for logs in record.logs] == [{"loss", "accuracy", "val_loss", "val_accuracy"}] * 3
    assert len(recalls) == 3 and all(r.shape == (3,) and np.all((r >= 0) & (r <= 1)) for r in recalls)
    # a run that had already finished (the chief's checkpoint says so) trains nothing
    assert fit_distributed(model, STRATEGY, ds, ds, class_weight=None, num_classes=3, epochs=5,
                           initial_epoch=3, finished=True, steps=4, callbacks=[]) == (3, 3)


def test_train_steps_never_leave_a_replica_an_empty_batch():
    assert train_steps(160, 32, 2) == 5
    assert train_steps(161, 32, 2) == 5  # a last batch of 1 image for 2 replicas is dropped
    assert train_steps(162, 32, 2) == 6
    assert train_steps(161, 32, 1) == 6
    assert train_steps(1000, 32, 2, cap=3) == 3


def test_resumed_model_holds_the_checkpoints_weights_and_optimizer_state(tmp_path):
    cfg = Config(image_size=32, backbone="SmallCNN", weights="none", head="gap", dense_units=8,
                 rotation_factor=0, zoom_factor=0, contrast_factor=0, class_names=("a", "b"))
    model = build_synced(cfg, STRATEGY, None)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(8, 32, 32, 3)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[np.arange(8) % 2]
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    fit_distributed(model, STRATEGY, ds, ds, class_weight=None, num_classes=2, epochs=1, initial_epoch=0,
                    finished=False, steps=2, callbacks=[])
    model.save(tmp_path / "checkpoint-0001", zipped=False)
    resumed = build_synced(cfg, STRATEGY, tmp_path / "checkpoint-0001")
    assert int(resumed.optimizer.iterations.numpy()) == 2
    for a, b in zip(model.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(model.optimizer.variables, resumed.optimizer.variables):  # Adam's moments too
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
