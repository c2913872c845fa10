"""Training run: `train_run`, a short hub over named phases (`galaxy_core.training.phases`).

`train_run` is everything `train.py` does:

1. `check_request`: refuse bad requests before any work (bundle name, multiworker resume, a
   folder at `out_dir` that is not a run bundle, unknown backbone or weights); `resolve_inputs`
   (`galaxy_core.training.inputs`): a labelled folder or table imported, the classes from the
   data, the parent run of `cfg.init_from`.
2. under the run lock (`checkpoint.RunLock`), `prepare_work`: clean leftovers of dead runs, then a
   fresh work folder or the resume guard (`galaxy_core.training.checkpoint` owns all persistence).
3. `data_phase`: dataset, split (`cfg.split_by`: "sky" keeps twins together, `galaxy_core.data.sky`),
   class weights, preprocessed cache, the test images' catalogue columns (ra, dec, redshift, pxscale).
4. `build_or_resume` (here): distribution strategy, dtype policy, a new compiled model or the checkpoint.
5. `fit_phase` (here): `fit` with early stopping, a checkpoint after every epoch and tqdm epoch bars;
   with `cfg.average_from_epoch`, `apply_average` then puts in the weight average.
6. `evaluate_phase`: test (plain + TTA) and validation metrics, and the temperature scaling fitted
   on the validation split (`galaxy_core.evaluation.calibration`, metrics.json `calibration`);
   the run's wall time counts up to here.
   `morphology_phase` (a blended run, `cfg.blended`, as in the offline demo): the boosting classifier
   on morphology statistics (`galaxy_core.morphology.fit`), scored alone and blended with the CNN
   (`galaxy_core.evaluation.blend`, metrics.json `morphology`).
   `embedding_phase`: penultimate-layer features of the test images and their 2-D map
   (`galaxy_core.evaluation.embedding.embed_test_set`).
7. `explain_test_set`: maps and faithfulness scores of the test errors and a sample of correct ones.
8. `write_phase`: the run bundle (run facts in run.json), then the work folder is removed.

Early stopping follows the recipe (val accuracy, mode max, patience `cfg.patience`, restore best
weights); `BestWeightsEarlyStopping` also restores the best weights when training ends at the
maximum epoch count or after a resume, so the bundle holds the best epoch's weights, unless
`cfg.average_from_epoch` asks for stochastic weight averaging (the offline demo does): then it holds
the mean of the weights after that epoch and every later one, its BatchNorm statistics recomputed.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from galaxy_core.bundle.schema import check_bundle_name
from galaxy_core.config import Config
from galaxy_core.models.network import build_model, load_model
from galaxy_core.errors import TrainingError
from galaxy_core.models.transfer import transfer_weights
from galaxy_core.training import checkpoint, multiworker
from galaxy_core.training.callbacks import (MONITOR, TENSORBOARD, BestWeightsEarlyStopping, EpochProgressBar,
                                            TensorBoardLog, WeightAverage,
                                   WorkCheckpoint)
from galaxy_core.training.checkpoint import Log, RunLock, work_dir_for
from galaxy_core.training.distribute import cluster_for, dtype_policy, is_chief, make_strategy
from galaxy_core.training.phases import (FitResult, RunData, Work, apply_average, check_request, data_phase,
                                         embedding_phase, evaluate_phase, explain_test_set, morphology_phase,
                                         plain_copy, prepare_work, run_info_for, write_phase)
from galaxy_core.training.inputs import parent_weights, resolve_inputs
from galaxy_core.training.pipeline import make_dataset


def build_or_resume(work: Work, gpus: list, log: Log) -> tuple[tf.distribute.Strategy, keras.Model]:
    """The strategy and, in its scope, a new compiled model or the checkpoint's model."""
    cfg = work.cfg
    strategy = make_strategy(cfg.strategy)
    policy = keras.mixed_precision.global_policy().name
    log(f"devices: {len(gpus)} GPU(s), strategy {cfg.strategy} ({strategy.num_replicas_in_sync} "
        f"replica(s)), policy {policy}" + (f"; {cluster_for(cfg.strategy).describe()}"
                                          if cfg.strategy == "multiworker" else ""))
    if work.state is not None:
        checkpoint.check_same_policy(work.state, policy, len(gpus))
    parent = parent_weights(cfg) if cfg.init_from and work.state is None else None
    if cfg.strategy == "multiworker":  # every worker builds the same; the chief loads the checkpoint
        if parent is not None:
            raise TrainingError("--init-from is not supported with --strategy multiworker yet; train with "
                                "--strategy mirrored (one machine), or start the multi-worker run from scratch")
        path = checkpoint.checkpoint_path(work.folder, work.state) if work.state is not None else None
        model = multiworker.build_synced(cfg, strategy, path)
        if path is not None:
            log(f"resuming after epoch {work.state['epochs_done']} from {path}")
    else:
        with strategy.scope():
            if work.state is not None:
                path = checkpoint.checkpoint_path(work.folder, work.state)
                model = load_model(path, compile=True)
                log(f"resuming after epoch {work.state['epochs_done']} from {path}")
            else:
                model = build_model(cfg, weights=cfg.weights)
                if parent is not None:
                    moved = transfer_weights(model, parent)
                    log(f"init from {cfg.init_from}: {len(moved.copied)} layers' weights copied, new: "
                        f"{', '.join(moved.new)} ({cfg.num_classes} classes)")
                model.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.learning_rate),
                              loss="categorical_crossentropy", metrics=["accuracy"])
    frozen = (f"frozen except its last {cfg.unfreeze_last} weighted layers" if cfg.unfreeze_last else "frozen")
    log(f"model: {cfg.backbone} (backbone {frozen if cfg.freeze_backbone else 'trainable'}, "
        f"{cfg.head} head), {model.count_params():,} parameters, "
        f"{int(sum(np.prod(w.shape) for w in model.trainable_weights)):,} trainable")
    return strategy, model


def fit_phase(model: keras.Model, data: RunData, work: Work,
              callbacks: Sequence[keras.callbacks.Callback], progress: bool, log: Log) -> FitResult:
    """`fit` (multiworker: `multiworker.fit_distributed`) from the last finished epoch,
    checkpointing every epoch (the chief); best weights restored."""
    cfg, state = work.cfg, work.state
    train_ds = make_dataset(data.cache.images, data.cache.labels, data.split.train, cfg, training=True)
    val_ds = make_dataset(data.cache.images, data.cache.labels, data.split.val, cfg, training=False)
    stopper = BestWeightsEarlyStopping(cfg.patience)
    history: dict[str, list] = {"epoch": []}
    initial_epoch, best_weights = 0, None
    if state is not None:
        history = {k: list(v) for k, v in state["history"].items()}
        initial_epoch = int(state["epochs_done"])
        best_weights = checkpoint.load_best_weights(work.folder)  # read once (DenseNet201: ~0.5 GB)
        stopper.restore_state(state["best"], state["best_epoch"], state["wait"], best_weights)
    average = WeightAverage(cfg.average_from_epoch) if cfg.average_from_epoch else None
    if average is not None and state is not None:
        average.restore_state(*checkpoint.load_average(work.folder))
    n_train = min(data.sizes["train"], cfg.steps_per_epoch * cfg.batch_size or data.sizes["train"])
    saver = WorkCheckpoint(work.folder, stopper, history, n_train, cfg.epochs, log=log,
                           every=cfg.checkpoint_every, average=average, save=work.chief)
    board = (TensorBoardLog(work.folder / TENSORBOARD, cfg.class_names, (val_ds, data.labels[data.split.val]))
             if work.chief else None)
    own = [stopper, EpochProgressBar(cfg.epochs, disable=not progress), *([average] if average else []),
           saver, *([board] if board else []), *callbacks]
    started = time.perf_counter()
    finished = state is not None and (state["stopped"] or initial_epoch >= cfg.epochs)
    if cfg.strategy == "multiworker":  # Keras's fit fails under MultiWorkerMirroredStrategy
        strategy = make_strategy(cfg.strategy)
        steps = multiworker.train_steps(n_train, cfg.batch_size, strategy.num_replicas_in_sync,
                                        cfg.steps_per_epoch)
        first, done = multiworker.fit_distributed(
            model, strategy, train_ds, val_ds, class_weight=data.class_weight, num_classes=cfg.num_classes,
            epochs=cfg.epochs, initial_epoch=initial_epoch, finished=finished, steps=steps, callbacks=own,
            on_val_recall=board.set_recall if board else None)
        log(multiworker.describe(strategy, cluster_for(cfg.strategy).workers, first, done,
                                 time.perf_counter() - started))
        finished = done == first
    elif not finished:
        model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, initial_epoch=initial_epoch,
                  class_weight=data.class_weight, shuffle=False, verbose=0,
                  steps_per_epoch=cfg.steps_per_epoch or None, callbacks=own)
    if finished and best_weights is not None:
        model.set_weights(best_weights)
    result = FitResult(history, time.perf_counter() - started)
    best = result.best_epoch
    log(f"training done: {result.epochs_run} epoch(s), best {MONITOR} "
        f"{history[MONITOR][best - 1] if best else float('nan'):.4f} at epoch {best}"
        f" (weights restored), {result.fit_time_s:.0f} s this session")
    if average is not None and work.chief:  # (a worker writes no bundle)
        apply_average(model, average, train_ds, log)
    return result


def train_run(cfg: Config, data_path: str | Path, out_dir: str | Path, *, resume: bool = False,
              cache_dir: str | Path | None = None, run_info_extra: Mapping[str, Any] | None = None,
              callbacks: Sequence[keras.callbacks.Callback] = (), progress: bool = True,
              on_log: Log | None = None, class_names: Sequence[str] | None = None) -> Path:
    """Train one model as `cfg` says, evaluate it and write its run bundle.

    Args:
        cfg: the run's config (preset + overrides). On resume the work folder's saved config is
            used (a different `cfg` is reported by field name and ignored).
        data_path: a Galaxy10-format HDF5 file (real or synthetic), or your own labelled images: a
            folder with one subfolder per class, or a `path,label` table (CSV, Parquet, FITS),
            imported once into the cache folder (`galaxy_core.training.inputs.resolve_inputs`).
        out_dir: the bundle folder to write, e.g. `runs/densenet201-finetune-20260101-1200`. Only a
            missing or empty folder or a run bundle may be there (a bundle is replaced at the end).
        resume: continue the interrupted run whose work folder belongs to `out_dir`.
        cache_dir: parent folder of preprocessed caches (default `io.default_cache_dir()`).
        run_info_extra: more keys for `run.json` (e.g. the command line).
        callbacks: extra Keras callbacks (appended after the run's own).
        progress: a tqdm bar per epoch on stderr (`Epoch k/N:  42%|...`).
        on_log: where the run's own messages go (default: print to stdout).
        class_names: the names of a label table's class indices (or the order of its names).

    Returns:
        The bundle path (`out_dir`).

    Raises:
        TrainingError: another live run holds `out_dir`, a folder that is not a bundle is there, a
            work folder is in the way (without resume) or missing (with resume).
        GalaxyError subclasses from data, preprocessing, model and bundle modules.
    """
    log = on_log or (lambda text: print(text, flush=True))
    started = time.perf_counter()
    out_dir, data_path = check_bundle_name(out_dir), Path(data_path)
    cfg = check_request(cfg, out_dir, resume)
    inputs = resolve_inputs(cfg, data_path, cache_dir, class_names, log, progress)
    cfg, data_path = inputs.cfg, inputs.data_path
    chief = is_chief(cfg.strategy)
    with RunLock(out_dir) if chief else contextlib.nullcontext() as lock:
        if lock is not None and lock.took_over:
            log(f"note: took over the lock of {out_dir} from PID {lock.took_over}, which is no "
                f"longer running")
        if chief and cfg.strategy == "multiworker" and not resume and checkpoint.read_state(work_dir_for(out_dir)):
            resume = True  # as Keras's BackupAndRestore: the same commands continue a run that lost a worker
            log(f"multiworker: {work_dir_for(out_dir)} holds the interrupted run; continuing it")
        work = prepare_work(cfg, data_path, out_dir, resume, chief, log)
        data = data_phase(work.cfg, data_path, work.folder, cache_dir, log, progress)
        with dtype_policy(work.cfg) as gpus:
            strategy, model = build_or_resume(work, gpus, log)
            fit = fit_phase(model, data, work, callbacks, progress, log)
        if not chief:  # the chief evaluates and writes the bundle; a worker leaves nothing behind
            checkpoint.remove_work(work.folder)
            log(f"worker done ({cluster_for(cfg.strategy).describe()}): the chief writes {out_dir}")
            return out_dir
        # Evaluate and save a plain float32 copy without optimizer state: Keras's predict_on_batch
        # under a multi-replica strategy returns per-replica rows, the app runs on CPUs where
        # float16 is slow, and Adam's slots would triple the size of the bundle's model.keras.
        model = plain_copy(model, work.cfg)
        metrics, predictions, val_probs = evaluate_phase(model, work.cfg, data, log)
        wall_time_s = time.perf_counter() - started  # training and evaluation (the run's model)
        morphology = morphology_phase(work.cfg, data_path, data, metrics, predictions, val_probs, log, progress)
        embedding_info = embedding_phase(model, work.cfg, predictions, log)
        explanations = explain_test_set(model, work.cfg, predictions, log, progress)
        run_info = run_info_for(work.cfg, data_path, data, fit, wall_time_s, strategy, len(gpus),
                                resume, {"embedding": embedding_info, **inputs.run_info,
                                         **dict(run_info_extra or {})},
                                progress=progress)
        return write_phase(out_dir, model, work, data, fit, metrics, predictions, explanations,
                           run_info, log, morphology)
