"""Predictors: run a bundle's classifier through ONNX Runtime, an int8 copy, or Keras; one registry.

`make_predictor(bundle, backend="auto")` is the one place that makes a predictor, from the row of
`BACKENDS` named by `backend`. Every predictor follows `galaxy_core.inference.predictor.Predictor`:
`.predict(x) -> probs` (float32 `(N, S, S, 3)` in [0, 1] -> float32 `(N, C)`), `.predict_on_batch`
(the same, the name Keras models use, so `inference.probabilities.predict_probs` and its TTA accept a
predictor wherever they accept a model), `.backend` (the engine that runs: a row's `runs_as`) and
`.note` (one line saying why Keras is used or how approximate int8 is, or None), all set when it is
made. The registry is read by `python -m galaxy_core.predict --backend` (choices and help) and the
app (`pages/lib/state.load_predictor`, the Classify page's "Classified with ..." line).

Backends (`BACKENDS`, one row each; a new one = one make function + one row):
- "auto" (default): ONNX Runtime, else Keras with a `.note` saying why;
- "onnxruntime": ONNX Runtime or a ModelError;
- "keras": the bundle's Keras model;
- "int8" (asked for, never automatic): an int8 copy of the ONNX file (`galaxy_core.models.quantize`):
  about 2.5x faster for DenseNet201 on 2 cores, approximate (its `.note` gives its agreement with
  float32 on the run's test images).

Where `model.onnx` comes from: exported on first use and cached (`galaxy_core.models.onnx_export`, in a
child process), so bundles written before ONNX existed work too:

1. `<bundle>/model.onnx` if its fingerprint (`galaxy_core.models.fingerprint`) says it was exported
   from this very `model.keras` (SHA-256) for the run's input size and is unchanged since (written
   there on first use when the bundle folder is writable; `python -m galaxy_core.models.onnx_export`
   can pre-export it); a file that does not match is never used: it is exported again, or, when
   nothing can be written, refused with the reason;
2. otherwise `<cache dir>/onnx/<bundle name>-<key>.onnx` (`galaxy_core.io.default_cache_dir`), the
   key made of model.keras's SHA-256: a read-only runs folder still gets ONNX Runtime;
3. otherwise (no onnxruntime, export failed, ...) Keras, with `.note` saying why.

A file written by an older export (its metadata's `onnx_passes.EXPORT_VERSION` is lower) is
upgraded in place once, when its folder is writable (`onnx_passes.upgrade_file`, seconds).

Many workers (a batch runner over a catalogue): each worker process calls
`make_predictor(bundle, backend)` ONCE (ONNX sessions and Keras models are not shared between
processes; give `threads=` so the workers do not oversubscribe the cores) and then
`galaxy_core.inference.classify.classify_each(predictor, bundle.config, items, ...)` per batch of
items; `predict.classify_files` is the single-process form of that loop. The export and the int8 copy
are made once per bundle on first use (atomically), so make the first predictor before starting the
workers to keep them from exporting side by side.

Gradients (Grad-CAM, saliency, faithfulness) need TensorFlow and never go through this module.

Example:
    >>> from galaxy_core.bundle.read import load_bundle          # doctest: +SKIP
    >>> predictor = make_predictor(load_bundle("runs/demo"))  # doctest: +SKIP
    >>> predictor.predict(x).shape                            # doctest: +SKIP
    (4, 10)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from galaxy_core.errors import ModelError
from galaxy_core.inference.predictor import Predictor
from galaxy_core.models.fingerprint import check, file_sha256, read_seal, seal
from galaxy_core.models.onnx_passes import EXPORT_VERSION, upgrade_file, version_from_metadata

ONNX_NAME = "model.onnx"
DEFAULT_BACKEND = "auto"


def default_threads() -> int:
    """CPU cores this process may use (ONNX Runtime's intra-op threads)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class OnnxPredictor:
    """An ONNX Runtime session (CPU execution provider) over a `model.onnx` file.

    Args:
        path: the `.onnx` file (input "image" float32 `(N, S, S, 3)` in [0, 1], output softmax).
        threads: intra-op threads (default: all cores of this process).
        backend, note: what the predictor says it is (`Predictor.backend` / `.note`), e.g.
            "onnxruntime-int8" and the int8 copy's agreement with float32.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None, backend: str = "onnxruntime",
                 note: str | None = None):
        import onnxruntime as ort

        self.backend, self.note = backend, note

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No busy-waiting between ops: on a shared or busy CPU (the app server, other processes)
        # spinning threads steal the cores; measured 244 vs 518 ms per DenseNet201 image, loaded.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = Path(path)
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self._input = first.name
        # (S, S, 3) when the file says so (None for a dimension it leaves open).
        self.input_shape = tuple(d if isinstance(d, int) else None for d in first.shape[1:])
        self.num_classes = int(self.session.get_outputs()[0].shape[-1])
        self.export_version = version_from_metadata(self.session.get_modelmeta().custom_metadata_map)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """float32 `(N, S, S, 3)` in [0, 1] -> float32 `(N, num_classes)` probabilities.

        Raises:
            ModelError: `x`'s image size is not the file's (checked before ONNX Runtime runs).
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 1 + len(self.input_shape) or any(
                want is not None and want != got for want, got in zip(self.input_shape, x.shape[1:])):
            want = " x ".join("?" if d is None else str(d) for d in self.input_shape)
            raise ModelError(f"{self.path} takes images of {want}, not {' x '.join(map(str, x.shape[1:]))}: "
                             f"it was exported for another input size; delete it (it is exported again "
                             f"from the run's model.keras)")
        return self.session.run(None, {self._input: x})[0].astype(np.float32, copy=False)

    predict_on_batch = predict

    @property
    def output_shape(self) -> tuple:
        return (None, self.num_classes)


class KerasPredictor:
    """The bundle's Keras model (loaded on first use unless given), with the predictor interface."""

    backend = "keras"

    def __init__(self, model=None, load: Callable[[], object] | None = None, note: str | None = None):
        if model is None and load is None:
            raise ValueError("KerasPredictor needs a model or a load function")
        self._model, self._load, self.note = model, load, note

    @property
    def model(self):
        if self._model is None:
            self._model = self._load()
        return self._model

    def predict(self, x: np.ndarray) -> np.ndarray:
        """float32 `(N, S, S, 3)` in [0, 1] -> float32 `(N, num_classes)` probabilities."""
        return np.asarray(self.model.predict_on_batch(np.asarray(x, dtype=np.float32)), dtype=np.float32)

    predict_on_batch = predict

    @property
    def output_shape(self) -> tuple:
        return self.model.output_shape


def onnx_candidates(bundle_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where a bundle's ONNX file may live, in order: beside `model.keras`, then in the cache folder.

    The cache file is named for the bundle and the SHA-256 of its model.keras (its contents, not its
    path or time), so a replaced model never meets another model's export there.
    """
    from galaxy_core.io import default_cache_dir

    bundle_path = Path(bundle_path).resolve()
    model = bundle_path / "model.keras"
    try:
        key = file_sha256(model)[:16]
    except OSError:
        key = hashlib.sha256(str(model).encode()).hexdigest()[:16]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return [bundle_path / ONNX_NAME, cache / "onnx" / f"{bundle_path.name}-{key}.onnx"]


def ensure_onnx(bundle_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                export: Callable[[Path, Path], Path] | None = None,
                log: Callable[[str], None] | None = None,
                input_shape: tuple[int, ...] | None = None) -> Path:
    """The path of an ONNX file made from the bundle's model.keras, exporting it if needed.

    Tries the places of `onnx_candidates` in order. An existing file is used only when its
    fingerprint (`galaxy_core.models.fingerprint.check`) says it was exported from THIS model.keras
    (SHA-256), for `input_shape`, and its own bytes are unchanged since; any other file (another
    run's copied in, edited weights, a model.keras replaced since, no fingerprint) is never used:
    `log` is told why and the model is exported again (default
    `galaxy_core.models.onnx_export.export_model_file`, a child process) to the first place that can
    be written, replacing it.

    A failed export leaves `<onnx path>.failed` (its reason and the model's SHA-256): later calls
    for the same model.keras fail at once, until it changes or the marker is deleted.

    Args:
        input_shape: `(S, S, 3)` the run's images have (None: not checked).

    Raises:
        ModelError: model.keras unreadable, no candidate could be written (the message gives why each
            existing file was refused), or the export failed (message says why).
    """
    from galaxy_core.models.onnx_export import export_model_file

    export = export or export_model_file
    model_path = Path(bundle_path) / "model.keras"
    try:
        source = file_sha256(model_path)
    except OSError as err:
        raise ModelError(f"cannot read {model_path}: {err.strerror or err}") from err
    candidates = onnx_candidates(bundle_path, cache_dir)
    refused = []
    for path in candidates:
        if not path.is_file():
            continue
        why = check(path, source, input_shape)
        if why is None:
            return path
        refused.append(f"{path} not used: {why}")
        if log is not None:
            log(f"note: not using {path}: {why}")
    errors = []
    for path in candidates:
        failed = path.with_name(path.name + ".failed")
        reason = _failed_before(failed, source)
        if reason is not None:  # this model failed before: don't retry
            raise ModelError(f"{reason} (delete {failed} to retry)")
        if not _writable(path.parent):
            errors.append(f"{path.parent} is not writable")
            continue
        if log is not None:
            log(f"exporting {model_path} to ONNX (once; minutes for a big model): {path}")
        try:
            done = Path(export(model_path, path))  # a failed export is not retried elsewhere
            why = check(done, source, input_shape)
            if why is not None:
                raise ModelError(f"the new export {done} does not match the run: {why}")
            return done
        except Exception as err:
            from galaxy_core.io import write_text

            write_text(failed, f"{type(err).__name__}: {' '.join(str(err).split())}\n{_SOURCE_LINE}{source}\n")
            raise
    raise ModelError("no place to write the ONNX model: " + "; ".join(errors + refused))


_SOURCE_LINE = "model.keras sha256 "


def _failed_before(marker: Path, source: str) -> str | None:
    """The reason recorded in a `.failed` marker of this model.keras (SHA-256 `source`), else None."""
    try:
        lines = marker.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    if f"{_SOURCE_LINE}{source}" not in lines:
        return None  # another model's failure (or an older marker): try again
    return lines[0].strip()


def _writable(folder: Path) -> bool:
    probe = folder
    while not probe.exists():  # a cache folder not made yet: its first existing parent decides
        if probe.parent == probe:
            return False
        probe = probe.parent
    return os.access(probe, os.W_OK | os.X_OK)


@dataclass(frozen=True)
class Backend:
    """One way to run a bundle's classifier (a row of `BACKENDS`).

    Attributes:
        name: the value of `make_predictor(backend=...)` and `predict --backend`.
        label: display name of the engine, e.g. "ONNX Runtime".
        runs_as: the `.backend` of the predictors it makes ("" for "auto", which makes another row's).
        help: one phrase for `predict --help`.
        make: `(bundle, cache_dir, threads, model, export, log) -> Predictor` (keywords as in
            `make_predictor`); raises ModelError when it cannot.
    """

    name: str
    label: str
    runs_as: str
    help: str
    make: Callable[..., Predictor]


def _make_keras(bundle, cache_dir, threads, model, export, log) -> KerasPredictor:
    return KerasPredictor(model, bundle.load_model)


def _make_onnxruntime(bundle, cache_dir, threads, model, export, log) -> OnnxPredictor:
    try:
        import onnxruntime  # noqa: F401
        return _current_onnx(bundle, cache_dir, export, threads, log)[1]
    except Exception as err:  # noqa: BLE001 - any failure here means: no ONNX Runtime for this bundle
        raise ModelError(f"ONNX Runtime is not available for {bundle.path}: {err}") from err


def _make_auto(bundle, cache_dir, threads, model, export, log) -> Predictor:
    try:
        return _make_onnxruntime(bundle, cache_dir, threads, model, export, log)
    except ModelError as err:
        cause = err.__cause__ or err
        reason = " ".join(str(cause).split()) or type(cause).__name__
        return KerasPredictor(model, bundle.load_model,
                              note=f"note: classifying with Keras, not ONNX Runtime ({reason})")


def _make_int8(bundle, cache_dir, threads, model, export, log) -> OnnxPredictor:
    from galaxy_core.models.quantize import describe, ensure_int8

    try:
        path = _current_onnx(bundle, cache_dir, export, threads, log)[0]
        path, report = ensure_int8(path, bundle.read_test_images, bundle.num_test,
                                   lambda p: OnnxPredictor(p, threads=threads), log=log)
    except Exception as err:  # noqa: BLE001
        raise ModelError(f"no int8 model for {bundle.path}: {' '.join(str(err).split())}") from err
    return OnnxPredictor(path, threads=threads, backend="onnxruntime-int8", note=describe(report))


BACKENDS: dict[str, Backend] = {row.name: row for row in (
    Backend("auto", "ONNX Runtime, else Keras", "",
            "ONNX Runtime (model.onnx, exported on first use), else Keras (default)", _make_auto),
    Backend("onnxruntime", "ONNX Runtime", "onnxruntime", "ONNX Runtime; fail if unavailable", _make_onnxruntime),
    Backend("keras", "Keras", "keras", "always Keras", _make_keras),
    Backend("int8", "ONNX Runtime (int8)", "onnxruntime-int8",
            "an int8 copy (made once, ~2.5x faster for DenseNet201, approximate: the note says how "
            "close to float32)", _make_int8),
)}


def backend_label(predictor) -> str:
    """Display name of the engine a predictor runs ("ONNX Runtime", "Keras", ...), from `BACKENDS`."""
    backend = getattr(predictor, "backend", "")
    return next((row.label for row in BACKENDS.values() if row.runs_as and row.runs_as == backend),
                backend or type(predictor).__name__)


def make_predictor(bundle, backend: str = DEFAULT_BACKEND, cache_dir: str | os.PathLike | None = None,
                   threads: int | None = None, model=None, export: Callable | None = None,
                   log: Callable[[str], None] | None = None) -> Predictor:
    """A predictor for a run bundle, made by the `BACKENDS` row named `backend`.

    A batch runner over many workers calls this once per worker process (see the module docstring).

    Args:
        bundle: a `galaxy_core.bundle.read.RunBundle` (uses `.path` and `.load_model()`).
        backend: a name of `BACKENDS`: "auto" (ONNX Runtime, else Keras), "onnxruntime" (raise if
            unavailable), "keras", or "int8" (an int8 copy through ONNX Runtime,
            `galaxy_core.models.quantize`: faster, approximate; `.note` says how close it is to
            float32; raise if unavailable).
        cache_dir: cache folder for ONNX files of read-only bundles (default `default_cache_dir()`).
        threads: ONNX Runtime intra-op threads (default: all cores).
        model: the bundle's Keras model if already loaded (used by the Keras fallback).
        export: exporter `(model_path, onnx_path) -> onnx_path` (tests force failures with it).
        log: told (one line) when a first-use export starts.

    Returns:
        A `galaxy_core.inference.predictor.Predictor` (`OnnxPredictor` or `KerasPredictor`); `.note`
        is a one-line reason when Keras is used because ONNX Runtime could not be.

    Raises:
        ModelError: unknown backend; the backend cannot run for this bundle ("onnxruntime", "int8").
    """
    if backend not in BACKENDS:
        raise ModelError(f"backend must be one of {tuple(BACKENDS)}; got {backend!r}")
    return BACKENDS[backend].make(bundle, cache_dir=cache_dir, threads=threads, model=model, export=export,
                                  log=log)


def _current_onnx(bundle, cache_dir, export, threads: int | None,
                  log: Callable[[str], None] | None) -> tuple[Path, OnnxPredictor]:
    """The bundle's float32 ONNX model (exported on first use) at the current export version.

    A file exported by an older version gets the newer graph passes once, in place, before it is
    used or quantized. Returns its path and a session on it.
    """
    size = int(bundle.config.image_size)
    path = ensure_onnx(bundle.path, cache_dir=cache_dir, export=export, log=log, input_shape=(size, size, 3))
    predictor = OnnxPredictor(path, threads=threads)
    if predictor.export_version < EXPORT_VERSION and _writable(path.parent):
        if log is not None:
            log(f"updating {path} to ONNX export version {EXPORT_VERSION} (once)")
        del predictor
        recorded = read_seal(path)  # checked by ensure_onnx: the fingerprint moves to the new bytes
        upgrade_file(path)
        seal(path, recorded["source_sha256"], recorded["input_shape"])
        predictor = OnnxPredictor(path, threads=threads)
    return path, predictor
