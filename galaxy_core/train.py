"""Training run: data -> split -> class weights -> cache -> fit (checkpointed, resumable) -> bundle.

`train_run` is everything `train.py` does. While it trains, a hidden work folder next to the bundle,
`<out_dir.parent>/.<name>.work/`, holds after EVERY epoch: the model with its optimizer state
(`checkpoint-<epoch>.keras`), the best weights so far (`best_weights-<epoch>.npz`), the split
(`split.npz`), the config, the dataset's identity and `state.json` (epochs done, history so far,
early-stopping state, and the names of the checkpoint files that belong to it). `resume=True` continues
from there. The work folder is removed only once the bundle is in place.

Early stopping follows the recipe (val accuracy, mode max, patience `cfg.patience`, restore best
weights); `BestWeightsEarlyStopping` also restores the best weights when training ends at the
maximum epoch count or after a resume, so the bundle always holds the best epoch's weights.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from galaxy_core.config import Config
from galaxy_core.errors import GalaxyError
from galaxy_core.model import build_model, load_model
from galaxy_core.pipeline import make_dataset

CHECKPOINT = "checkpoint.keras"  # names used by work folders from before state.json named its files
BEST_WEIGHTS = "best_weights.npz"
STATE = "state.json"
DATASET = "dataset.json"
SPLIT = "split.npz"
CONFIG = "config.json"
MONITOR = "val_accuracy"


class TrainingError(GalaxyError):
    """A training run cannot start or resume as asked (the message says how to fix it)."""


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
def work_dir_for(out_dir: str | Path) -> Path:
    """The hidden work folder of a run: `<out_dir.parent>/.<name>.work`."""
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}.work"


def class_weights_for(cfg: Config, train_labels: np.ndarray) -> dict[int, float] | None:
    """Balanced class weights of the training labels (scikit-learn), or None when turned off."""
    if not cfg.class_weights:
        return None
    from galaxy_core.data import compute_class_weights

    return compute_class_weights(train_labels, cfg.num_classes)


def format_class_weights(weights: Mapping[int, float] | None, class_names: Sequence[str]) -> str:
    """One line per class: `  0 Disturbed                 1.641`."""
    if weights is None:
        return "class weights: off (every class weighs 1)"
    lines = ["class weights (balanced, scikit-learn compute_class_weight):"]
    lines += [f"  {c} {class_names[c]:<26} {w:.3f}" for c, w in sorted(weights.items())]
    return "\n".join(lines)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The distribution strategy named by `cfg.strategy`.

    "default": one device (the first GPU if any, else CPU). "mirrored": all local GPUs (or the
    logical CPU devices). "multiworker": `MultiWorkerMirroredStrategy`, cluster from `TF_CONFIG`.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            print("note: strategy 'multiworker' without TF_CONFIG runs as a single worker",
                  file=sys.stderr)
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise TrainingError(f"Unknown strategy {name!r}; use default, mirrored or multiworker.")


def is_chief() -> bool:
    """True unless TF_CONFIG names this process a non-chief worker (only the chief writes files)."""
    try:
        task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    except json.JSONDecodeError:
        return True
    kind, index = task.get("type"), int(task.get("index", 0))
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    if kind is None or kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in cluster


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.generic,)):
        return value.item()
    return value


# --------------------------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------------------------
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


class WorkCheckpoint(keras.callbacks.Callback):
    """After every epoch: history row, model + optimizer, best weights and state into the work folder.

    Must come after `BestWeightsEarlyStopping` in the callback list (it reads its updated state).
    """

    def __init__(self, work: Path, stopper: BestWeightsEarlyStopping, history: dict[str, list],
                 n_train: int, total_epochs: int, log: Callable[[str], None] | None = print):
        super().__init__()
        self.work, self.stopper, self.history = work, stopper, history
        self.n_train, self.total_epochs, self.log = n_train, total_epochs, log
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
        save_checkpoint(self.work, self.model, self.stopper, self.history, epoch + 1)
        if self.log is not None:
            best = self.stopper.best
            self.log(f"epoch {epoch + 1}/{self.total_epochs}: {epoch_time:.1f} s, "
                  f"{row['images_per_s']:,.0f} train images/s, {MONITOR} {row.get(MONITOR, float('nan')):.4f}"
                  f" (best {best if best is not None else float('nan'):.4f} at epoch "
                  f"{self.stopper.best_epoch + 1})")


def save_checkpoint(work: Path, model: keras.Model, stopper: BestWeightsEarlyStopping,
                    history: dict[str, list], epochs_done: int) -> None:
    """Write model + optimizer, best weights (when improved) and state, crash-consistently.

    The model and best weights go to files named by epoch; `state.json`, written last and
    atomically, names the pair that belongs to it; only then are older files deleted. A crash at
    any point leaves a state whose files exist and match it.
    """
    previous = _read_state(work)
    checkpoint = f"checkpoint-{epochs_done:04d}.keras"
    _atomic_save(work / checkpoint, model.save)
    best = previous.get("best_weights") if previous else None
    if stopper.improved or best is None or not (work / best).exists():
        best = f"best_weights-{epochs_done:04d}.npz"
        weights = stopper.best_weights if stopper.best_weights is not None else model.get_weights()
        _atomic_save(work / best, lambda path: _save_weights(path, weights))
    state = {
        "epochs_done": epochs_done,
        "checkpoint": checkpoint,
        "best_weights": best,
        "stopped": bool(model.stop_training),
        "best": None if stopper.best is None else float(stopper.best),
        "best_epoch": int(stopper.best_epoch),  # 0-based, like Keras
        "wait": int(stopper.wait),
        "policy": keras.mixed_precision.global_policy().name,  # resume must load under the same
        "history": history,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _atomic_write_text(work / STATE, json.dumps(_json_ready(state), indent=1))
    for old in [*work.glob("checkpoint-*.keras"), *work.glob("best_weights-*.npz")]:
        if old.name not in (checkpoint, best):
            old.unlink(missing_ok=True)


def _atomic_save(path: Path, save: Callable[[Path], None]) -> None:
    tmp = path.with_name("tmp-" + path.name)
    save(tmp)
    os.replace(tmp, path)


def _save_weights(path: Path, weights: Sequence[np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez(f, *weights)


def _read_state(work: Path) -> dict[str, Any] | None:
    return json.loads((work / STATE).read_text()) if (work / STATE).exists() else None


def dataset_identity(data_path: Path) -> dict[str, Any]:
    """What a resumed run checks about its dataset: resolved path, size and image count."""
    from galaxy_core.data import open_dataset

    with open_dataset(data_path) as source:
        n_images = source.n
    return {"path": str(data_path.resolve()), "size": data_path.stat().st_size, "n": n_images}


def check_same_dataset(work: Path, data_path: Path) -> None:
    """Raise TrainingError unless `data_path` is the dataset the interrupted run started on."""
    if not (work / DATASET).exists():  # a work folder from before this check existed
        return
    started = json.loads((work / DATASET).read_text())
    now = dataset_identity(data_path)
    if (started["size"], started["n"]) != (now["size"], now["n"]):
        raise TrainingError(f"The interrupted run in {work} was trained on {started['path']} "
                            f"({started['n']} images, {started['size']:,} bytes), not on "
                            f"{now['path']} ({now['n']} images, {now['size']:,} bytes). Resume with "
                            f"--data {started['path']}.")


def plain_copy(model: keras.Model, cfg: Config) -> keras.Model:
    """`model` rebuilt outside any distribution strategy, float32, uncompiled, same weights."""
    copy = build_model(cfg, weights=None)  # uses the current global policy (float32 here)
    copy.set_weights(model.get_weights())
    return copy


def load_best_weights(work: Path) -> list[np.ndarray] | None:
    """The best weights named by the work folder's state, or None before the first checkpoint."""
    state = _read_state(work)
    if state is None:
        return None
    path = work / state.get("best_weights", BEST_WEIGHTS)
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------
def train_run(cfg: Config, data_path: str | Path, out_dir: str | Path, *, resume: bool = False,
              cache_dir: str | Path | None = None, run_info_extra: Mapping[str, Any] | None = None,
              callbacks: Sequence[keras.callbacks.Callback] = (), verbose: int | str = "auto",
              on_log: Callable[[str], None] | None = None) -> Path:
    """Train one model as `cfg` says, evaluate it and write its run bundle.

    Args:
        cfg: the run's config (preset + overrides). On resume the work folder's saved config is
            used (a different `cfg` is reported and ignored).
        data_path: a Galaxy10-format HDF5 file (real or synthetic).
        out_dir: the bundle folder to write, e.g. `runs/densenet201-finetune-20260101-1200`.
        resume: continue the interrupted run whose work folder belongs to `out_dir`.
        cache_dir: parent folder of preprocessed caches (default `$GALAXY10_CACHE_DIR` or ./cache).
        run_info_extra: more keys for `run.json` (e.g. the command line).
        callbacks: extra Keras callbacks (appended after the run's own).
        verbose: Keras `fit` verbosity ("auto": progress bar on a terminal, one line otherwise).
        on_log: where the run's own messages go (default: print to stdout).

    Returns:
        The bundle path (`out_dir`).

    Raises:
        TrainingError: a work folder is in the way (without resume) or missing (with resume).
        GalaxyError subclasses from data, preprocessing, model and bundle modules.
    """
    from galaxy_core import bundle, data, evaluate, preprocess

    log = on_log or (lambda text: print(text, flush=True))
    started = time.perf_counter()
    out_dir, data_path = bundle.check_bundle_name(out_dir), Path(data_path)
    if resume and cfg.strategy == "multiworker":
        raise TrainingError("--resume is not supported with --strategy multiworker: the workers "
                            "keep no shared checkpoint. Start the run again, or resume it with "
                            "--strategy mirrored on one machine.")
    work = work_dir_for(out_dir)
    chief = is_chief()
    if not chief:  # other workers checkpoint into a private folder and write no bundle
        work = Path(tempfile.mkdtemp(prefix="galaxy-worker-"))
    elif resume:
        if not (work / STATE).exists():
            raise TrainingError(f"Nothing to resume: no checkpoint in {work}. Start the run without "
                                f"--resume.")
        check_same_dataset(work, data_path)
        saved = Config.from_json(work / CONFIG)
        if saved != cfg:
            changed = sorted(k for k, v in saved.to_dict().items() if cfg.to_dict().get(k) != v)
            log(f"note: resuming with the interrupted run's config (ignoring changes to {changed})")
        cfg = saved
    else:
        if (work / STATE).exists():
            raise TrainingError(f"{work} holds the checkpoint of an interrupted run for {out_dir}. "
                                f"Continue it with --resume, or delete that folder to start over.")
        shutil.rmtree(work, ignore_errors=True)  # a run that failed before its first epoch ended
        work.mkdir(parents=True)
        cfg.to_json(work / CONFIG)
        _atomic_write_text(work / DATASET, json.dumps(dataset_identity(data_path)))

    # --- data, split, class weights -----------------------------------------------------------
    with data.open_dataset(data_path) as source:
        labels, synthetic, n_images = source.labels, bool(source.is_synthetic), source.n
    if (work / SPLIT).exists():
        split = data.load_split(work / SPLIT)
    else:
        split = data.split_indices(labels, cfg.val_fraction, cfg.test_fraction, cfg.seed)
        data.save_split(split, work / SPLIT)
    if cfg.max_eval_images:  # a bounded run (rehearsal): N evenly spaced images of val and test
        split = data.Split(split.train, _spread(split.val, cfg.max_eval_images),
                           _spread(split.test, cfg.max_eval_images))
    sizes = split.sizes()
    log(f"data: {data_path} ({n_images} images{', SYNTHETIC' if synthetic else ''}); split "
        f"train {sizes['train']}, val {sizes['val']}, test {sizes['test']} (seed {cfg.seed})")
    class_weight = class_weights_for(cfg, labels[split.train])
    log(format_class_weights(class_weight, cfg.class_names))

    cache = preprocess.open_cache(preprocess.build_cache(data_path, cfg, cache_dir=cache_dir))
    if cache.n != n_images:
        raise TrainingError(f"Preprocessed cache {cache.path} has {cache.n} images but the dataset "
                            f"has {n_images}; delete the cache folder and run again.")

    # --- model ---------------------------------------------------------------------------------
    gpus = tf.config.list_physical_devices("GPU")
    old_policy = keras.mixed_precision.global_policy()
    if cfg.mixed_precision and gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        strategy = make_strategy(cfg.strategy)
        log(f"devices: {len(gpus)} GPU(s), strategy {cfg.strategy} ({strategy.num_replicas_in_sync} "
            f"replica(s)), policy {keras.mixed_precision.global_policy().name}")
        state = json.loads((work / STATE).read_text()) if resume and (work / STATE).exists() else None
        policy = keras.mixed_precision.global_policy().name
        if state is not None and state.get("policy", policy) != policy:
            raise TrainingError(f"The checkpoint was saved under the {state['policy']} policy but "
                                f"this machine runs {policy} ({len(gpus)} GPU(s)); the optimizer "
                                f"state would not load. Resume on a machine like the one that "
                                f"started the run.")
        with strategy.scope():
            if state is not None:
                checkpoint = work / state.get("checkpoint", CHECKPOINT)
                model = load_model(checkpoint, compile=True)
                log(f"resuming after epoch {state['epochs_done']} from {checkpoint}")
            else:
                model = build_model(cfg, weights=cfg.weights)
                model.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.learning_rate),
                              loss="categorical_crossentropy", metrics=["accuracy"])
        log(f"model: {cfg.backbone} ({'frozen' if cfg.freeze_backbone else 'trainable'} backbone, "
            f"{cfg.head} head), {model.count_params():,} parameters, "
            f"{int(sum(np.prod(w.shape) for w in model.trainable_weights)):,} trainable")

        # --- fit -------------------------------------------------------------------------------
        train_ds = make_dataset(cache.images, cache.labels, split.train, cfg, training=True)
        val_ds = make_dataset(cache.images, cache.labels, split.val, cfg, training=False)
        stopper = BestWeightsEarlyStopping(cfg.patience)
        history: dict[str, list] = {"epoch": []}
        initial_epoch = 0
        if state is not None:
            history = {k: list(v) for k, v in state["history"].items()}
            initial_epoch = int(state["epochs_done"])
            stopper.restore_state(state["best"], state["best_epoch"], state["wait"],
                                  load_best_weights(work))
        n_train = min(sizes["train"], cfg.steps_per_epoch * cfg.batch_size or sizes["train"])
        checkpoint = WorkCheckpoint(work, stopper, history, n_train, cfg.epochs, log=log)
        done = state is not None and (state["stopped"] or initial_epoch >= cfg.epochs)
        fit_started = time.perf_counter()
        if not done:
            if verbose == "auto":
                verbose = 1 if sys.stdout.isatty() else 2
            model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs,
                      initial_epoch=initial_epoch, class_weight=class_weight, shuffle=False,
                      steps_per_epoch=cfg.steps_per_epoch or None,
                      callbacks=[stopper, keras.callbacks.ProgbarLogger(), checkpoint, *callbacks],
                      verbose=verbose)  # our ProgbarLogger first: the summary line comes after it
        else:
            best_weights = load_best_weights(work)
            if best_weights is not None:
                model.set_weights(best_weights)
        fit_time = time.perf_counter() - fit_started
    finally:
        keras.mixed_precision.set_global_policy(old_policy)
    # Evaluate and save a plain float32 copy without optimizer state: Keras's predict_on_batch
    # under a multi-replica strategy returns per-replica rows, the app runs on CPUs where float16
    # is slow, and Adam's slots would triple the size of the bundle's model.keras.
    model = plain_copy(model, cfg)

    epochs_run = len(history["epoch"])
    best_epoch = int(np.nanargmax(history[MONITOR])) + 1 if history.get(MONITOR) else None
    rates = [r for r in history.get("images_per_s", []) if np.isfinite(r)]
    # Median over epochs: robust to the first epoch's graph building and to a resumed run.
    train_rate = float(np.median(rates)) if rates else None
    log(f"training done: {epochs_run} epoch(s), best {MONITOR} "
        f"{history[MONITOR][best_epoch - 1] if best_epoch else float('nan'):.4f} at epoch {best_epoch}"
        f" (weights restored), {fit_time:.0f} s this session")

    # --- evaluate and write the bundle ----------------------------------------------------------
    test_images = np.asarray(cache.images[split.test])  # uint8 (n_test, S, S, 3)
    test_labels = labels[split.test]
    log(f"evaluating on {len(split.test)} test images (plain + 8-fold TTA) and "
        f"{len(split.val)} validation images")
    test_result = evaluate.evaluate_split(model, test_images, test_labels, cfg.class_names,
                                          batch_size=cfg.batch_size, tta=True)
    val_result = evaluate.evaluate_split(model, np.asarray(cache.images[split.val]),
                                         labels[split.val], cfg.class_names,
                                         batch_size=cfg.batch_size, tta=False)
    wall_time = time.perf_counter() - started
    metrics = evaluate.assemble_metrics(test_result, val_result, best_epoch=best_epoch,
                                        wall_time_s=wall_time, train_images_per_s=train_rate,
                                        epochs_run=epochs_run)
    log(f"test accuracy {metrics['test']['accuracy']:.4f} (TTA "
        f"{metrics['test_tta']['accuracy']:.4f}), val accuracy {metrics['val']['accuracy']:.4f}")
    if not chief:
        shutil.rmtree(work, ignore_errors=True)
        return out_dir

    run_info = {
        "dataset_path": str(data_path.resolve()),
        "dataset_sha256": _sha256_or_none(data_path),
        "synthetic": synthetic,
        "split_sizes": sizes,
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "wall_time_s": wall_time,
        "train_images_per_s": train_rate,
        "backbone": cfg.backbone,
        "weights": cfg.weights,
        "strategy": cfg.strategy,
        "replicas": strategy.num_replicas_in_sync,
        "gpus": len(gpus),
        "resumed": bool(resume),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **dict(run_info_extra or {}),
    }
    predictions = {"indices": split.test, "labels": test_labels, "probs": test_result["probs"],
                   "probs_tta": test_result["probs_tta"], "images": test_images}
    explanations = explain_test_set(model, cfg, predictions, log)
    path = bundle.write_bundle(out_dir, config=cfg, model=model, history=history, metrics=metrics,
                               run_info=run_info, predictions=predictions, explanations=explanations)
    shutil.rmtree(work, ignore_errors=True)  # only now: the bundle is in place
    log(f"bundle written: {path}")
    return path


def explain_test_set(model: keras.Model, cfg: Config, predictions: Mapping[str, np.ndarray],
                     log: Callable[[str], None]) -> dict | None:
    """Maps and faithfulness scores for the test errors (+ a sample of correct ones), or None.

    Sizes come from `cfg.explain_errors`, `cfg.explain_correct`, `cfg.smooth_samples` and
    `cfg.faithfulness_steps`; the result goes into the bundle as `explanations.h5`.
    """
    from galaxy_core.explain import compute_explanations

    if cfg.explain_errors == 0 and cfg.explain_correct == 0:
        log("explanations: skipped (explain_errors = explain_correct = 0)")
        return None
    log(f"explanations: saliency, SmoothGrad, Grad-CAM, Grad-CAM++ for up to {cfg.explain_errors} "
        f"test errors and {cfg.explain_correct} correct images"
        f"{'' if cfg.faithfulness_steps else ' (no faithfulness scores)'}")
    return compute_explanations(
        model, predictions["images"], predictions["labels"], predictions["probs"],
        predictions["indices"], cfg.class_names, cap=cfg.explain_errors,
        n_correct=cfg.explain_correct, smooth_samples=cfg.smooth_samples,
        steps=max(cfg.faithfulness_steps, 1), faithfulness=cfg.faithfulness_steps > 0,
        seed=cfg.seed)


def _spread(indices: np.ndarray, n: int) -> np.ndarray:
    """At most `n` evenly spaced entries of `indices` (int64 (k,) -> int64 (min(n, k),))."""
    if n >= len(indices):
        return indices
    return indices[np.linspace(0, len(indices) - 1, n).round().astype(np.int64)]


def _sha256_or_none(path: Path) -> str | None:
    from galaxy_core.data import sha256_file

    try:
        return sha256_file(path, progress=path.stat().st_size > 256 * 2**20)
    except OSError:
        return None
