"""galaxy_core.training.callbacks: best-weights early stopping (scripted val accuracy), the tqdm epoch bar
and the one-line epoch summary."""

import re

import keras
import numpy as np
import pytest

from galaxy_core.training.callbacks import BestWeightsEarlyStopping, EpochProgressBar, epoch_summary


# --------------------------------------------------------------------------------------------
# Early stopping with a scripted validation accuracy
# --------------------------------------------------------------------------------------------
class ScriptedAccuracy(keras.callbacks.Callback):
    """Overwrites val_accuracy with a scripted sequence and records each epoch's weights."""

    def __init__(self, values):
        super().__init__()
        self.values, self.weights = values, {}

    def on_epoch_end(self, epoch, logs=None):
        logs["val_accuracy"] = self.values[epoch]
        self.weights[epoch] = self.model.get_weights()


def _fit_scripted(values, patience, initial_epoch=0, seed_state=None):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    y = x.sum(1, keepdims=True)
    script, stopper = ScriptedAccuracy(values), BestWeightsEarlyStopping(patience)
    if seed_state is not None:
        stopper.restore_state(**seed_state)
    model.fit(x, y, epochs=len(values), initial_epoch=initial_epoch, batch_size=4, verbose=0,
              callbacks=[script, stopper])
    return model, script, stopper


def _same(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a, b))


def test_best_weights_restored_when_max_epochs_reached():
    model, script, stopper = _fit_scripted([0.1, 0.5, 0.9, 0.3, 0.2], patience=10)
    assert stopper.stopped_epoch == 0 and stopper.best_epoch == 2
    assert _same(model.get_weights(), script.weights[2])
    assert not _same(model.get_weights(), script.weights[4])


def test_best_weights_restored_when_patience_runs_out():
    model, script, stopper = _fit_scripted([0.2, 0.8, 0.4, 0.5, 0.6, 0.9, 0.1], patience=2)
    assert stopper.stopped_epoch == 3  # two epochs without improvement after epoch index 1
    assert sorted(script.weights) == [0, 1, 2, 3]
    assert _same(model.get_weights(), script.weights[1])


def test_resumed_stopper_keeps_best_so_far():
    first, script, _ = _fit_scripted([0.95], patience=10)
    best = script.weights[0]
    model, script, stopper = _fit_scripted([None, 0.5, 0.6, 0.7], patience=10, initial_epoch=1,
                                           seed_state=dict(best=0.95, best_epoch=0, wait=0,
                                                           best_weights=best))
    assert stopper.best_epoch == 0 and stopper.wait == 3
    assert _same(model.get_weights(), best)


# --------------------------------------------------------------------------------------------
# The epoch bar and summary (one format, the one the app reads)
# --------------------------------------------------------------------------------------------
def test_epoch_bar_is_tqdm_in_the_project_format(capsys):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    x = np.ones((12, 4), np.float32)
    model.fit(x, x[:, :1], epochs=2, batch_size=4, verbose=0, callbacks=[EpochProgressBar(2)])
    err = capsys.readouterr().err
    for epoch in (1, 2):  # the app reads `Epoch k/N` and `NN%|`
        assert re.search(rf"Epoch {epoch}/2: 100%\|[^|]*\| 3/3 \[", err), err
    assert "step" not in err and "━" not in err  # not Keras's own progbar


def test_epoch_summary_line():
    stopper = BestWeightsEarlyStopping(patience=3)
    stopper.best, stopper.best_epoch = 0.75, 1
    row = {"loss": 0.52134, "accuracy": 0.81, "val_loss": 0.6012, "val_accuracy": 0.78,
           "epoch_time_s": 12.34, "images_per_s": 1234.0}
    assert epoch_summary(3, 8, row, stopper) == (
        "Epoch 3/8: loss 0.5213 - acc 0.8100 - val_loss 0.6012 - val_acc 0.7800 - 12.3 s "
        "(1,234 train images/s); best val_acc 0.7500 at epoch 2")


# --------------------------------------------------------------------------------------------
# Checkpoint frequency
# --------------------------------------------------------------------------------------------
class RecordSaves(keras.callbacks.Callback):
    """Notes, after WorkCheckpoint ran, which epoch state.json names."""

    def __init__(self, work):
        super().__init__()
        self.work, self.named = work, []

    def on_epoch_end(self, epoch, logs=None):
        from galaxy_core.training.checkpoint import read_state

        state = read_state(self.work)
        self.named.append(None if state is None else state["epochs_done"])


def test_checkpoint_every_n_epochs_and_at_the_end(tmp_path):
    from galaxy_core.training.callbacks import WorkCheckpoint

    def run(values, patience, every, folder):
        folder.mkdir()
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
        stopper, history = BestWeightsEarlyStopping(patience), {"epoch": []}
        saver = WorkCheckpoint(folder, stopper, history, n_train=16, total_epochs=len(values), log=None,
                               every=every)
        record = RecordSaves(folder)
        model.fit(x, x.sum(1, keepdims=True), epochs=len(values), batch_size=4, verbose=0,
                  callbacks=[ScriptedAccuracy(values), stopper, saver, record])
        return record.named, history

    # 5 epochs, every 2: saved after epochs 2 and 4, and the last (5); history keeps every epoch.
    named, history = run([0.1, 0.2, 0.3, 0.4, 0.5], patience=10, every=2, folder=tmp_path / "a")
    assert named == [None, 2, 2, 4, 5] and history["epoch"] == [1, 2, 3, 4, 5]
    # Early stopping after epoch 3 (patience 2, best at 1) is a last epoch too: saved there.
    named, _ = run([0.5, 0.1, 0.1, 0.1, 0.1], patience=2, every=5, folder=tmp_path / "b")
    assert named == [None, None, 3]
    # every=1 (the default): after every epoch.
    named, _ = run([0.1, 0.2, 0.3], patience=10, every=1, folder=tmp_path / "c")
    assert named == [1, 2, 3]


def test_checkpoint_without_save_keeps_the_history_and_writes_nothing(tmp_path):
    from galaxy_core.training.callbacks import WorkCheckpoint

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    stopper, history, lines = BestWeightsEarlyStopping(5), {"epoch": []}, []
    saver = WorkCheckpoint(tmp_path, stopper, history, n_train=16, total_epochs=2, log=lines.append, save=False)
    model.fit(x, x.sum(1, keepdims=True), epochs=2, batch_size=4, verbose=0,
              callbacks=[ScriptedAccuracy([0.1, 0.2]), stopper, saver])
    assert history["epoch"] == [1, 2] and len(lines) == 2  # a multi-worker run's other worker
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# TensorBoard logs
# --------------------------------------------------------------------------------------------
def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    acc.Reload()
    return {tag: [(e.step, float(np.asarray(keras.ops.convert_to_numpy(_value(e))))) for e in acc.Tensors(tag)]
            for tag in acc.Tags()["tensors"]}


def _value(event):
    import tensorflow as tf

    return tf.make_ndarray(event.tensor_proto)


def test_tensorboard_log_writes_epoch_scalars_learning_rate_and_val_recall_per_class(tmp_path):
    import tensorflow as tf

    from galaxy_core.training.callbacks import TensorBoardLog

    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 4)).astype(np.float32)
    labels = np.arange(24) % 3
    y = np.eye(3, dtype=np.float32)[labels]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy", metrics=["accuracy"])
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    board = TensorBoardLog(tmp_path / "tb", ("a", "b c", "d"), (val, labels))
    model.fit(x, y, validation_data=val, epochs=2, batch_size=8, verbose=0, callbacks=[board])
    train, validation = _scalars(tmp_path / "tb" / "train"), _scalars(tmp_path / "tb" / "validation")
    assert [s for s, _ in train["epoch_loss"]] == [0, 1] and "epoch_accuracy" in train
    assert train["epoch_learning_rate"] == [(0, pytest.approx(0.01)), (1, pytest.approx(0.01))]
    assert [s for s, _ in validation["epoch_accuracy"]] == [0, 1]
    predicted = model.predict(x, verbose=0).argmax(1)  # the final epoch's recall, measured here
    for k, tag in enumerate(["recall/0_a", "recall/1_b_c", "recall/2_d"]):
        assert validation[tag][-1] == (1, pytest.approx(np.mean(predicted[labels == k] == k)))
    board2 = TensorBoardLog(tmp_path / "tb2", ("a", "b", "d"))  # a recall given (the multi-worker loop)
    board2.set_model(model)
    board2.on_train_begin()
    board2.set_recall(np.array([0.25, np.nan, 1.0]))
    board2.on_epoch_end(0, {"loss": 1.0, "val_loss": 2.0})
    board2.on_train_end()
    recall = _scalars(tmp_path / "tb2" / "validation")
    assert recall["recall/0_a"] == [(0, 0.25)] and recall["recall/2_d"] == [(0, 1.0)]


# --------------------------------------------------------------------------------------------
# Stochastic weight averaging
# --------------------------------------------------------------------------------------------
def _bn_model():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.99)(x)
    return keras.Model(inputs, keras.layers.Dense(1)(x))


def test_weight_average_is_the_mean_of_the_snapshots_from_the_start_epoch():
    from galaxy_core.training.callbacks import WeightAverage

    model = _bn_model()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    script, average = ScriptedAccuracy([0.1] * 5), WeightAverage(start_epoch=3)
    model.fit(x, x.sum(1, keepdims=True), epochs=5, batch_size=8, verbose=0, callbacks=[script, average])
    assert average.count == 3
    expected = [np.mean([script.weights[e][i] for e in (2, 3, 4)], axis=0) for i in range(len(average.mean))]
    assert all(np.allclose(m, e, atol=1e-6) for m, e in zip(average.mean, expected))
    assert not _same(average.mean, script.weights[4])  # the weights moved: the mean is not the last


def test_weight_average_resumes_from_a_saved_mean():
    from galaxy_core.training.callbacks import WeightAverage

    model = _bn_model()
    snapshots = [[np.full(w.shape, float(k), np.float32) for w in model.get_weights()] for k in (1, 2, 6)]
    average = WeightAverage(start_epoch=1)
    average.set_model(model)
    model.set_weights(snapshots[0])
    average.on_epoch_end(0)
    model.set_weights(snapshots[1])
    average.on_epoch_end(1)
    resumed = WeightAverage(start_epoch=1)
    resumed.restore_state([m.copy() for m in average.mean], average.count)  # as a checkpoint holds it
    resumed.set_model(model)
    model.set_weights(snapshots[2])
    resumed.on_epoch_end(2)
    assert resumed.count == 3 and all(np.allclose(m, 3.0) for m in resumed.mean)  # (1 + 2 + 6) / 3


def test_apply_sets_the_mean_and_recomputes_batchnorm_as_a_plain_mean_over_batches():
    from galaxy_core.training.callbacks import WeightAverage, batchnorm_layers

    model = _bn_model()
    bn = batchnorm_layers(model)[0]
    average = WeightAverage(start_epoch=1)
    average.set_model(model)
    average.on_epoch_end(0)
    dense = model.layers[1]
    rng = np.random.default_rng(1)
    batches = [(rng.normal(3.0, 2.0, size=(16, 4)).astype(np.float32), None) for _ in range(5)]
    assert average.apply(model, batches, max_batches=4) == 1
    hidden = [np.asarray(dense(b[0])) for b in batches[:4]]
    assert np.allclose(np.asarray(bn.moving_mean), np.mean([h.mean(0) for h in hidden], 0), atol=1e-4)
    assert np.allclose(np.asarray(bn.moving_variance), np.mean([h.var(0) for h in hidden], 0), rtol=1e-3)
    assert bn.momentum == 0.99  # put back
    assert WeightAverage(start_epoch=2).apply(model, batches) == 0  # no snapshot yet: left as it is
