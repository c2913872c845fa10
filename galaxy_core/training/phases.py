"""The phases of a training run (`galaxy_core.training.train.train_run` is the hub that calls them).

Each phase is a short function over named steps of the wings below: the data and its split
(`galaxy_core.data`), the preprocessed cache, the metrics and calibration (`galaxy_core.evaluation`),
the morphology classifier (`galaxy_core.morphology.fit`, scored by `galaxy_core.evaluation.blend`),
the test-set embedding (`galaxy_core.evaluation.embedding.embed_test_set`), the explanations and
the run bundle (`galaxy_core.bundle.write`). They compute nothing themselves beyond bookkeeping,
and log what they did. Persistence (work folder, checkpoints) is `galaxy_core.training.checkpoint`'s.
"""

from __future__ import annotations

import atexit
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from galaxy_core.config import Config
from galaxy_core.errors import ModelError, TrainingError
from galaxy_core.models.network import build_model
from galaxy_core.training import checkpoint
from galaxy_core.training.callbacks import TENSORBOARD, WeightAverage
from galaxy_core.training.checkpoint import Log, work_dir_for
from galaxy_core.training.distribute import cluster_for


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
    """`fit_phase`'s result: the history (every epoch, resumed ones included) and this session's seconds."""

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
        has_sky = source.has_sky()  # your own labelled images have no ra/dec (NaN)
        split, split_info = checkpoint.load_or_make_split(work, labels, cfg, *(
            (meta["ra"], meta["dec"]) if has_sky else (None, None)))
        if cfg.max_eval_images:  # a bounded run (rehearsal): N evenly spaced images of val and test
            split = Split(split.train, _spread(split.val, cfg.max_eval_images),
                          _spread(split.test, cfg.max_eval_images))
        test_sky = sky_columns(source, split.test) if has_sky else {}
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


def class_weights_for(cfg: Config, train_labels: np.ndarray) -> dict[int, float] | None:
    """Balanced class weights of the training labels (scikit-learn), or None when turned off."""
    if not cfg.class_weights:
        return None
    from galaxy_core.data.split import compute_class_weights

    return compute_class_weights(train_labels, cfg.num_classes, cfg.class_names)


def format_class_weights(weights: Mapping[int, float] | None, class_names: Sequence[str]) -> str:
    """One line per class: `  0 Disturbed                 1.641`."""
    if weights is None:
        return "class weights: off (every class weighs 1)"
    lines = ["class weights (balanced, scikit-learn compute_class_weight):"]
    lines += [f"  {c} {class_names[c]:<26} {w:.3f}" for c, w in sorted(weights.items())]
    return "\n".join(lines)


def plain_copy(model: keras.Model, cfg: Config) -> keras.Model:
    """`model` rebuilt outside any distribution strategy, float32, uncompiled, same weights."""
    copy = build_model(cfg, weights=None)  # uses the current global policy (float32 here)
    copy.set_weights(model.get_weights())
    return copy


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


def evaluate_phase(model: keras.Model, cfg: Config, data: RunData,
                   log: Log) -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray]:
    """Test (plain + 8-fold TTA) and validation metrics; returns (metrics.json dict, predictions,
    the plain validation probabilities float32 (n_val, C)).

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
    metrics = metrics_mod.assemble_metrics(test, val)
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
    """For a blended run (`cfg.blended`): the morphology classifier and metrics.json `morphology`.

    Fitted on the training split's raw images (`galaxy_core.morphology.fit.fit_on_split`), scored
    alone and blended with the CNN (`predictions["probs"]`, `val_probs` from `evaluate_phase`) by
    `galaxy_core.evaluation.blend.blend_summary`, plus `seconds`. Returns the classifier, or None
    for a CNN-only run.
    """
    if not cfg.blended:
        return None
    from galaxy_core.evaluation.blend import blend_summary
    from galaxy_core.morphology.fit import fit_on_split

    split, labels, w = data.split, data.labels, cfg.morphology_weight
    fit = fit_on_split(data_path, split, labels, cfg, progress)
    summary, skipped = blend_summary(w, cfg.class_names, labels[split.test], predictions["probs"], fit.test_probs,
                                     labels[split.val], val_probs, fit.val_probs)
    if skipped:
        log(f"morphology classifier: blend calibration skipped ({skipped})")
    metrics["morphology"] = summary = {**summary, "seconds": fit.seconds}
    log(f"morphology classifier: test accuracy alone {summary['test']['accuracy']:.4f}, blended with "
        f"the CNN (weight {w:g}) {summary['test_blend']['accuracy']:.4f} ({summary['seconds']:.0f} s)")
    return fit.classifier


def embedding_phase(model: keras.Model, cfg: Config, predictions: dict[str, np.ndarray],
                    log: Log) -> dict[str, Any]:
    """Add the test images' penultimate-layer `features` and their `embedding_2d` to `predictions`.

    `galaxy_core.evaluation.embedding.embed_test_set` (t-SNE for up to `TSNE_MAX_POINTS` test
    images, PCA above, seeded with `cfg.seed`). Without a penultimate layer (a model not from
    `build_model`) nothing is added: the app computes them on demand
    (`galaxy_core.runs.reevaluate.bundle_embedding`, the same function).

    Returns:
        run.json `embedding`: `{"method", "n", "dim", "features_s", "map_s"}` (seconds), or
        `{"skipped": reason}`.
    """
    from galaxy_core.evaluation.embedding import EmbeddingError, embed_test_set

    try:
        emb = embed_test_set(model, predictions["images"], cfg.seed, batch_size=cfg.batch_size)
    except (EmbeddingError, ModelError) as err:
        log(f"embedding: skipped ({err})")
        return {"skipped": str(err)}
    predictions["features"] = emb.features
    if emb.embedding_2d is not None:
        predictions["embedding_2d"], predictions["embedding_method"] = emb.embedding_2d, emb.method
    info = {"method": emb.method, "n": int(emb.features.shape[0]), "dim": int(emb.features.shape[1]),
            "features_s": round(emb.features_s, 3), "map_s": None if emb.map_s is None else round(emb.map_s, 3)}
    log(f"embedding: {info['n']} x {info['dim']} features in {emb.features_s:.1f} s"
        + (f", {info['method']} map in {emb.map_s:.1f} s" if info["method"] else ", no map (< 2 images)"))
    return info


def explain_test_set(model: keras.Model, cfg: Config, predictions: Mapping[str, np.ndarray],
                     log: Log, progress: bool = True) -> dict | None:
    """Maps and faithfulness scores for the test errors (+ a sample of correct ones), or None.

    Sizes come from `cfg.explain_errors`, `cfg.explain_correct`, `cfg.smooth_samples` and
    `cfg.faithfulness_steps`; the result goes into the bundle as `explanations.h5`.
    """
    from galaxy_core.explain import compute_explanations, describe_methods

    if cfg.explain_errors == 0 and cfg.explain_correct == 0:
        log("explanations: skipped (explain_errors = explain_correct = 0)")
        return None
    log(f"explanations: {describe_methods()} for up to {cfg.explain_errors} "
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
    from galaxy_core.bundle.write import write_bundle

    board = work.folder / TENSORBOARD
    path = write_bundle(out_dir, config=work.cfg, model=model, history=fit.history, metrics=metrics,
                        run_info=run_info, predictions=predictions, explanations=explanations,
                        morphology=morphology, tensorboard=board if board.is_dir() else None)
    checkpoint.remove_work(work.folder)  # only now: the bundle is in place
    log(f"bundle written: {path}")
    if work.cfg.export_onnx:
        export_phase(path, work.cfg, log)
    return path


def export_phase(bundle_path: Path, cfg: Config, log: Log) -> Path | None:
    """model.onnx in the written bundle (`galaxy_core.models.predictor.ensure_onnx`: fingerprinted
    with model.keras's SHA-256 and the input shape; a matching file is kept, anything else exported
    again). A failed export is a log line, not a failed run: the bundle is complete without it, and
    the default backend classifies with Keras then (ensure_onnx's `.failed` marker says why)."""
    from galaxy_core.models.predictor import ensure_onnx

    started = time.perf_counter()
    try:
        onnx = ensure_onnx(bundle_path, input_shape=(cfg.image_size, cfg.image_size, 3), log=log)
    except ModelError as err:
        log(f"note: model.onnx was not exported ({err}); classification uses Keras instead of ONNX Runtime")
        return None
    log(f"model.onnx for ONNX Runtime, made from this model.keras ({time.perf_counter() - started:.0f} s): {onnx}")
    return onnx


def run_info_for(cfg: Config, data_path: Path, data: RunData, fit: FitResult, wall_time_s: float,
                 strategy: tf.distribute.Strategy, n_gpus: int, resume: bool,
                 extra: Mapping[str, Any] | None, progress: bool = True) -> dict[str, Any]:
    """The bundle's `run.json`: dataset source, split sizes, the run facts (best epoch, epochs run,
    wall time up to the evaluated model, images/s; `created` is `write_bundle`'s), devices."""
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
        **dict(extra or {}),
    }


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
