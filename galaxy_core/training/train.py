"""Training run: a short hub over named phases, each a small function.

`train_run` is everything `train.py` does:

1. `check_request`: refuse bad requests before any work (bundle name, a folder at `out_dir`
   that is not a run bundle, unknown backbone or weights).
2. under the run lock (`checkpoint.RunLock`), `prepare_work`: clean leftovers of dead runs, then a
   fresh work folder or the resume guard (`galaxy_core.training.checkpoint` owns all persistence).
3. `data_phase`: dataset, split (`cfg.split_by`: "sky" keeps twins together, `galaxy_core.data.sky`),
   class weights, preprocessed cache, the test images' catalogue columns (ra, dec, redshift, pxscale).
4. `build_or_resume`: distribution strategy, dtype policy, a new compiled model or the checkpoint.
5. `fit_phase`: `fit` with early stopping, a checkpoint after every epoch, tqdm epoch bars and
   TensorBoard logs; with `cfg.average_from_epoch`, `apply_average` then puts in the weight
   average. `--strategy multiworker` trains with `galaxy_core.training.multiworker`'s loop
   (Keras's `fit` fails under MultiWorkerMirroredStrategy) and the same callbacks; only the chief
   (`distribute.is_chief`) holds the lock, checkpoints, logs to TensorBoard and writes the bundle.
6. `evaluate_phase`: test (plain + TTA) and validation metrics, and the temperature scaling fitted
   on the validation split (`galaxy_core.evaluation.calibration`, metrics.json `calibration`).
   `embedding_phase`: penultimate-layer features of the test images and their 2-D map
   (`galaxy_core.evaluation.embedding`; t-SNE up to `embedding.TSNE_MAX_POINTS` test images, PCA above).
   `morphology_phase` (with `cfg.morphology_weight > 0`, as in the offline demo): the boosting
   classifier on morphology statistics of the raw training images (`galaxy_core.morphology.classifier`),
   its test scores alone and blended with the CNN's, and the blend's temperature fitted on the
   validation split (metrics.json `morphology`).
7. `explain_test_set`: maps and faithfulness scores of the test errors and a sample of correct ones.
8. `write_phase`: the run bundle, then the work folder is removed.

Early stopping follows the recipe (val accuracy, mode max, patience `cfg.patience`, restore best
weights); `BestWeightsEarlyStopping` also restores the best weights when training ends at the
maximum epoch count or after a resume, so the bundle holds the best epoch's weights, unless
`cfg.average_from_epoch` asks for stochastic weight averaging (the offline demo does): then it holds
the mean of the weights after that epoch and every later one, its BatchNorm statistics recomputed.
"""

from __future__ import annotations

import atexit
import contextlib
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from galaxy_core.training import checkpoint
from galaxy_core.training import multiworker
from galaxy_core.training.callbacks import (MONITOR, TENSORBOARD, BestWeightsEarlyStopping, EpochProgressBar,
                                            TensorBoardLog, WeightAverage, WorkCheckpoint)
from galaxy_core.training.checkpoint import STATE, RunLock, work_dir_for
from galaxy_core.training.distribute import cluster_for, dtype_policy, is_chief, make_strategy
from galaxy_core.config import Config
from galaxy_core.errors import ModelError, TrainingError
from galaxy_core.models.network import build_model, load_model
from galaxy_core.training.pipeline import make_dataset

__all__ = ["BestWeightsEarlyStopping", "STATE", "TrainingError", "WorkCheckpoint", "train_run",
           "work_dir_for", "check_model_names", "class_weights_for", "format_class_weights",
           "make_strategy", "is_chief", "explain_test_set"]

Log = Callable[[str], None]


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
def class_weights_for(cfg: Config, train_labels: np.ndarray) -> dict[int, float] | None:
    """Balanced class weights of the training labels (scikit-learn), or None when turned off."""
    if not cfg.class_weights:
        return None
    from galaxy_core.data.split import compute_class_weights

    return compute_class_weights(train_labels, cfg.num_classes)


def format_class_weights(weights: Mapping[int, float] | None, class_names: Sequence[str]) -> str:
    """One line per class: `  0 Disturbed                 1.641`."""
    if weights is None:
        return "class weights: off (every class weighs 1)"
    lines = ["class weights (balanced, scikit-learn compute_class_weight):"]
    lines += [f"  {c} {class_names[c]:<26} {w:.3f}" for c, w in sorted(weights.items())]
    return "\n".join(lines)


def check_model_names(cfg: Config) -> Config:
    """`cfg` with its backbone name checked (and spelled as Keras spells it) and its weights checked.

    Cheap (no model is built), so a typo is reported before the preprocessing cache is built.

    Raises:
        ModelError: unknown backbone (the message lists the valid names) or weights that are not
            "imagenet", "none" or an existing weights file.
    """
    from galaxy_core.models import network as model_mod

    cfg = cfg.replace(backbone=model_mod.resolve_backbone(cfg.backbone))
    model_mod.normalize_weights(cfg.weights)
    return cfg


def plain_copy(model: keras.Model, cfg: Config) -> keras.Model:
    """`model` rebuilt outside any distribution strategy, float32, uncompiled, same weights."""
    copy = build_model(cfg, weights=None)  # uses the current global policy (float32 here)
    copy.set_weights(model.get_weights())
    return copy


# --------------------------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------------------------
@dataclass
class Work:
    """Where the run keeps its state: work folder, the config in force, the checkpoint state."""

    folder: Path
    cfg: Config
    state: dict[str, Any] | None  # None: a new run (no epoch done yet)
    chief: bool


@dataclass
class RunData:
    """The data phase's result: labels, split (+ its run.json record), class weights, the opened
    cache, and the catalogue columns of the test images (`properties.sky_columns`, float32)."""

    labels: np.ndarray
    split: Any  # galaxy_core.data.split.Split
    class_weight: dict[int, float] | None
    cache: Any  # galaxy_core.preprocessing.cache.PreprocessedCache
    synthetic: bool
    split_info: dict[str, Any] = field(default_factory=dict)
    test_sky: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def sizes(self) -> dict[str, int]:
        return self.split.sizes()


@dataclass
class FitResult:
    history: dict[str, list]
    fit_time_s: float

    @property
    def epochs_run(self) -> int:
        return len(self.history["epoch"])

    @property
    def best_epoch(self) -> int | None:
        """1-based epoch of the best validation accuracy (None before any epoch)."""
        from galaxy_core.evaluation.metrics import best_epoch_of

        return best_epoch_of(self.history)

    @property
    def train_images_per_s(self) -> float | None:
        # Median over epochs: robust to the first epoch's graph building and to a resumed run.
        rates = [r for r in self.history.get("images_per_s", []) if np.isfinite(r)]
        return float(np.median(rates)) if rates else None


def check_request(cfg: Config, out_dir: Path, resume: bool) -> Config:
    """Refuse a run that cannot work, before any file is touched; returns the checked config."""
    if (problem := checkpoint.not_a_bundle(out_dir)) is not None:
        raise TrainingError(problem)
    return check_model_names(cfg)


def prepare_work(cfg: Config, data_path: Path, out_dir: Path, resume: bool, chief: bool,
                 log: Log) -> Work:
    """The work folder of this run: cleaned of dead runs' leftovers, new or resumed."""
    if not chief:  # other workers keep the split in a private scratch folder and write no bundle
        scratch = Path(tempfile.mkdtemp(prefix="galaxy-worker-"))
        atexit.register(checkpoint.remove_work, scratch)  # also when the run fails
        return Work(scratch, cfg, None, chief)
    checkpoint.clean_leftovers(out_dir.parent, log, keep=out_dir.name)
    folder = work_dir_for(out_dir)
    if resume:
        cfg, state = checkpoint.open_for_resume(folder, cfg, data_path, log)
        return Work(folder, cfg, state, chief)
    checkpoint.start_work(folder, cfg, data_path, out_dir)
    return Work(folder, cfg, None, chief)


def data_phase(cfg: Config, data_path: Path, work: Path, cache_dir: str | Path | None,
               log: Log, progress: bool = True) -> RunData:
    """Dataset labels, the run's split, class weights and the preprocessed cache."""
    from galaxy_core.preprocessing.cache import build_cache, open_cache
    from galaxy_core.data.galaxy10 import open_dataset
    from galaxy_core.data.properties import sky_columns
    from galaxy_core.data.split import Split

    with open_dataset(data_path) as source:
        labels, synthetic, n_images = source.labels, bool(source.is_synthetic), source.n
        meta = source.metadata()  # float64 ra/dec: twin matching needs more than float32
        split, split_info = checkpoint.load_or_make_split(work, labels, cfg, meta["ra"], meta["dec"])
        if cfg.max_eval_images:  # a bounded run (rehearsal): N evenly spaced images of val and test
            split = Split(split.train, _spread(split.val, cfg.max_eval_images),
                          _spread(split.test, cfg.max_eval_images))
        test_sky = sky_columns(source, split.test)
    sizes = split.sizes()
    log(f"data: {data_path} ({n_images} images{', SYNTHETIC' if synthetic else ''}); split "
        f"train {sizes['train']}, val {sizes['val']}, test {sizes['test']} (seed {cfg.seed}, "
        f"{describe_split(split_info)})")
    class_weight = class_weights_for(cfg, labels[split.train])
    log(format_class_weights(class_weight, cfg.class_names))
    cache = open_cache(build_cache(data_path, cfg, cache_dir=cache_dir, progress=progress))
    if cache.n != n_images:
        raise TrainingError(f"Preprocessed cache {cache.path} has {cache.n} images but the dataset "
                            f"has {n_images}; delete the cache folder and run again.")
    return RunData(labels, split, class_weight, cache, synthetic, split_info, test_sky)


def describe_split(info: Mapping[str, Any]) -> str:
    """One line about a split record (`galaxy_core.data.sky.make_split`'s info), for the run log."""
    by = info.get("split_by", "?")
    if "groups_merged" not in info:
        return f"split by {by}"
    if by == "sky":
        return (f"split by sky: {info['groups_merged']} group(s) of twins within "
                f"{info['twin_radius_arcsec']:g} arcsec kept in one split")
    return (f"split at random: {info.get('groups_across_splits', '?')} of {info['groups_merged']} "
            f"twin group(s) cross splits")


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
    if cfg.strategy == "multiworker":  # every worker builds the same; the chief loads the checkpoint
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
                model.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.learning_rate),
                              loss="categorical_crossentropy", metrics=["accuracy"])
    log(f"model: {cfg.backbone} ({'frozen' if cfg.freeze_backbone else 'trainable'} backbone, "
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


def apply_average(model: keras.Model, average: WeightAverage, train_ds, log: Log) -> None:
    """The run's final weights: the weight average (when it has snapshots), BatchNorm refreshed."""
    started = time.perf_counter()
    count = average.apply(model, train_ds)
    first = average.start_epoch
    if count:
        log(f"weights: mean of {count} epoch(s) from epoch {first} on (stochastic weight averaging), "
            f"BatchNorm statistics recomputed on training batches in {time.perf_counter() - started:.1f} s")
    else:
        log(f"weights: the best epoch's (training ended before epoch {first}, where averaging starts)")


def evaluate_phase(model: keras.Model, cfg: Config, data: RunData, fit: FitResult,
                   started: float, log: Log) -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray]:
    """Test (plain + 8-fold TTA) and validation metrics; returns (metrics.json dict, predictions,
    the plain validation probabilities float32 (n_val, C)).

    `started` is the run's `time.perf_counter()` start: `wall_time_s` counts up to here.
    The only place training calls the metrics and inference code. metrics.json `calibration` is
    `galaxy_core.evaluation.calibration.calibration_summary` of the plain validation and test probabilities
    (left out, with a log line, when the validation split is too small to fit a temperature).
    The predictions carry the test images' catalogue columns (`data.test_sky`).
    """
    from galaxy_core.evaluation import metrics as metrics_mod
    from galaxy_core.evaluation.calibration import CalibrationError, calibration_summary

    split, labels = data.split, data.labels
    test_images = np.asarray(data.cache.images[split.test])  # uint8 (n_test, S, S, 3)
    log(f"evaluating on {len(split.test)} test images (plain + 8-fold TTA) and "
        f"{len(split.val)} validation images")
    test = metrics_mod.evaluate_split(model, test_images, labels[split.test], cfg.class_names,
                                      batch_size=cfg.batch_size, tta=True)
    val = metrics_mod.evaluate_split(model, np.asarray(data.cache.images[split.val]), labels[split.val],
                                     cfg.class_names, batch_size=cfg.batch_size, tta=False)
    wall_time_s = time.perf_counter() - started
    metrics = metrics_mod.assemble_metrics(test, val, best_epoch=fit.best_epoch, wall_time_s=wall_time_s,
                                           train_images_per_s=fit.train_images_per_s,
                                           epochs_run=fit.epochs_run)
    log(f"test accuracy {metrics['test']['accuracy']:.4f} (TTA "
        f"{metrics['test_tta']['accuracy']:.4f}), val accuracy {metrics['val']['accuracy']:.4f}")
    try:
        calib = calibration_summary(labels[split.val], val["probs"], labels[split.test], test["probs"])
    except CalibrationError as err:
        log(f"calibration: skipped ({err})")
    else:
        metrics["calibration"] = calib
        log(f"calibration: temperature {calib['temperature']:.3f} (fitted on val); test ECE "
            f"{calib['test']['ece_before']:.4f} -> {calib['test']['ece_after']:.4f}")
    predictions = {"indices": split.test, "labels": labels[split.test], "probs": test["probs"],
                   "probs_tta": test["probs_tta"], "images": test_images, **data.test_sky}
    return metrics, predictions, val["probs"]


def morphology_phase(cfg: Config, data_path: Path, data: RunData, metrics: dict[str, Any],
                     predictions: Mapping[str, np.ndarray], val_probs: np.ndarray, log: Log,
                     progress: bool = True):
    """Fit the morphology classifier on the training split; score it alone and blended on the test split.

    Statistics are measured on the dataset's raw images (not the preprocessed cache), streamed in
    chunks; `val_probs` are the CNN's validation probabilities (`evaluate_phase`). Adds metrics.json `morphology`: `weight`, `test` (the classifier alone) and `test_blend`
    (`galaxy_core.evaluation.metrics.compute_metrics` dicts), `seconds`, and `calibration`: the temperature of
    the blended probabilities fitted on the validation split (`calibration.calibration_summary`;
    left out, with a log line, when the validation split is too small). Returns the classifier,
    or None when `cfg.morphology_weight == 0`.
    """
    if cfg.morphology_weight == 0:
        return None
    from galaxy_core.evaluation.calibration import CalibrationError, calibration_summary
    from galaxy_core.data.galaxy10 import open_dataset
    from galaxy_core.io import progress_bar
    from galaxy_core.evaluation.metrics import compute_metrics
    from galaxy_core.morphology.statistics import features_batch
    from galaxy_core.morphology.classifier import MorphologyClassifier, blend_probs

    def statistics(source, indices: np.ndarray, what: str) -> np.ndarray:
        rows = []
        with progress_bar(len(indices), desc=f"morphology ({what})", unit="img", disable=not progress) as bar:
            for _, images in source.iter_chunks(indices, chunk_size=256):
                rows.append(features_batch(images))
                bar.update(len(images))
        return np.concatenate(rows)

    started = time.perf_counter()
    split, labels, w = data.split, data.labels, cfg.morphology_weight
    with open_dataset(data_path) as source:
        train_stats = statistics(source, split.train, "train")
        test_stats, val_stats = statistics(source, split.test, "test"), statistics(source, split.val, "val")
    classifier = MorphologyClassifier.fit(train_stats, labels[split.train], cfg.num_classes, seed=cfg.seed)
    alone = classifier.predict_features(test_stats)
    blended = blend_probs(predictions["probs"], alone, w)
    summary = {"weight": w, "test": compute_metrics(labels[split.test], alone, cfg.class_names),
               "test_blend": compute_metrics(labels[split.test], blended, cfg.class_names)}
    val_blend = blend_probs(val_probs, classifier.predict_features(val_stats), w)
    try:
        summary["calibration"] = calibration_summary(labels[split.val], val_blend, labels[split.test], blended)
    except CalibrationError as err:
        log(f"morphology classifier: blend calibration skipped ({err})")
    summary["seconds"] = time.perf_counter() - started
    metrics["morphology"] = summary
    log(f"morphology classifier: test accuracy alone {summary['test']['accuracy']:.4f}, blended with "
        f"the CNN (weight {w:g}) {summary['test_blend']['accuracy']:.4f} ({summary['seconds']:.0f} s)")
    return classifier


def embedding_phase(model: keras.Model, cfg: Config, predictions: dict[str, np.ndarray],
                    log: Log) -> dict[str, Any]:
    """Add the test images' penultimate-layer `features` and their `embedding_2d` to `predictions`.

    The map is `embedding.project_2d` with `embedding.auto_method(N)`: t-SNE for up to
    `embedding.TSNE_MAX_POINTS` (5,000) test images, PCA above (t-SNE would take many minutes),
    seeded with `cfg.seed`. Without a penultimate layer (a model not from `build_model`) nothing is
    added: the app computes them on demand (`galaxy_core.runs.reevaluate.bundle_embedding`).

    Returns:
        run.json `embedding`: `{"method", "n", "dim", "features_s", "map_s"}` (seconds), or
        `{"skipped": reason}`.
    """
    from galaxy_core.evaluation import embedding

    images = predictions["images"]
    started = time.perf_counter()
    try:
        features = embedding.penultimate_features(model, images, batch_size=cfg.batch_size)
    except (embedding.EmbeddingError, ModelError) as err:
        log(f"embedding: skipped ({err})")
        return {"skipped": str(err)}
    features_s = time.perf_counter() - started
    info: dict[str, Any] = {"method": None, "n": int(features.shape[0]), "dim": int(features.shape[1]),
                            "features_s": round(features_s, 3), "map_s": None}
    predictions["features"] = features
    if len(features) >= 2:
        method = embedding.auto_method(len(features))
        started = time.perf_counter()
        predictions["embedding_2d"] = embedding.project_2d(features, method=method, seed=cfg.seed)
        predictions["embedding_method"] = method
        info.update(method=method, map_s=round(time.perf_counter() - started, 3))
    log(f"embedding: {info['n']} x {info['dim']} features in {features_s:.1f} s"
        + (f", {info['method']} map in {info['map_s']:.1f} s" if info["method"] else ", no map (< 2 images)"))
    return info


def explain_test_set(model: keras.Model, cfg: Config, predictions: Mapping[str, np.ndarray],
                     log: Log, progress: bool = True) -> dict | None:
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
        seed=cfg.seed, progress=progress)


def write_phase(out_dir: Path, model: keras.Model, work: Work, data: RunData, fit: FitResult,
                metrics: dict[str, Any], predictions: dict[str, np.ndarray], explanations: dict | None,
                run_info: dict[str, Any], log: Log, morphology=None) -> Path:
    """Write the run bundle (atomically), then remove the work folder."""
    from galaxy_core.bundle.format import write_bundle

    board = work.folder / TENSORBOARD
    path = write_bundle(out_dir, config=work.cfg, model=model, history=fit.history, metrics=metrics,
                        run_info=run_info, predictions=predictions, explanations=explanations,
                        morphology=morphology, tensorboard=board if board.is_dir() else None)
    checkpoint.remove_work(work.folder)  # only now: the bundle is in place
    log(f"bundle written: {path}")
    return path


def run_info_for(cfg: Config, data_path: Path, data: RunData, fit: FitResult, wall_time_s: float,
                 strategy: tf.distribute.Strategy, n_gpus: int, resume: bool,
                 extra: Mapping[str, Any] | None, progress: bool = True) -> dict[str, Any]:
    """The bundle's `run.json`: dataset source, split sizes, best epoch, timings, devices."""
    return {
        "dataset_path": str(data_path.resolve()),
        "dataset_sha256": _sha256_or_none(data_path, progress),
        "synthetic": data.synthetic,
        "split_sizes": data.sizes,
        "split": dict(data.split_info),
        "best_epoch": fit.best_epoch,
        "epochs_run": fit.epochs_run,
        "wall_time_s": wall_time_s,
        "train_images_per_s": fit.train_images_per_s,
        "backbone": cfg.backbone,
        "weights": cfg.weights,
        "strategy": cfg.strategy,
        "replicas": strategy.num_replicas_in_sync,
        "workers": cluster_for(cfg.strategy).workers,
        "gpus": n_gpus,
        "resumed": bool(resume),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **dict(extra or {}),
    }


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------
def train_run(cfg: Config, data_path: str | Path, out_dir: str | Path, *, resume: bool = False,
              cache_dir: str | Path | None = None, run_info_extra: Mapping[str, Any] | None = None,
              callbacks: Sequence[keras.callbacks.Callback] = (), progress: bool = True,
              on_log: Log | None = None) -> Path:
    """Train one model as `cfg` says, evaluate it and write its run bundle.

    Args:
        cfg: the run's config (preset + overrides). On resume the work folder's saved config is
            used (a different `cfg` is reported by field name and ignored).
        data_path: a Galaxy10-format HDF5 file (real or synthetic).
        out_dir: the bundle folder to write, e.g. `runs/densenet201-finetune-20260101-1200`. Only a
            missing or empty folder or a run bundle may be there (a bundle is replaced at the end).
        resume: continue the interrupted run whose work folder belongs to `out_dir`.
        cache_dir: parent folder of preprocessed caches (default `io.default_cache_dir()`).
        run_info_extra: more keys for `run.json` (e.g. the command line).
        callbacks: extra Keras callbacks (appended after the run's own).
        progress: a tqdm bar per epoch on stderr (`Epoch k/N:  42%|...`).
        on_log: where the run's own messages go (default: print to stdout).

    Returns:
        The bundle path (`out_dir`).

    Raises:
        TrainingError: another live run holds `out_dir`, a folder that is not a bundle is there, a
            work folder is in the way (without resume) or missing (with resume).
        GalaxyError subclasses from data, preprocessing, model and bundle modules.
    """
    from galaxy_core.bundle.format import check_bundle_name

    log = on_log or (lambda text: print(text, flush=True))
    started = time.perf_counter()
    out_dir, data_path = check_bundle_name(out_dir), Path(data_path)
    cfg = check_request(cfg, out_dir, resume)
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
        metrics, predictions, val_probs = evaluate_phase(model, work.cfg, data, fit, started, log)
        morphology = morphology_phase(work.cfg, data_path, data, metrics, predictions, val_probs, log, progress)
        embedding_info = embedding_phase(model, work.cfg, predictions, log)
        explanations = explain_test_set(model, work.cfg, predictions, log, progress)
        run_info = run_info_for(work.cfg, data_path, data, fit, metrics["wall_time_s"], strategy, len(gpus),
                                resume, {"embedding": embedding_info, **dict(run_info_extra or {})},
                                progress=progress)
        return write_phase(out_dir, model, work, data, fit, metrics, predictions, explanations,
                           run_info, log, morphology)


def _spread(indices: np.ndarray, n: int) -> np.ndarray:
    """At most `n` evenly spaced entries of `indices` (int64 (k,) -> int64 (min(n, k),))."""
    if n >= len(indices):
        return indices
    return indices[np.linspace(0, len(indices) - 1, n).round().astype(np.int64)]


def _sha256_or_none(path: Path, progress: bool = True) -> str | None:
    from galaxy_core.data.download import sha256_file

    try:  # a bar only for big files, and never with --no-progress
        return sha256_file(path, progress=progress and path.stat().st_size > 256 * 2**20)
    except OSError:
        return None
