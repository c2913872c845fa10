"""Precomputed explanations for a run bundle: compute, save to and lazily load `explanations.h5`.

File layout (HDF5; maps gzip-compressed, one chunk per map):

    /                      attrs: format = "galaxy10-explanations", version = 1,
                           methods (JSON list), targets (JSON list: "predicted", "true"),
                           class_names (JSON list), image_size, steps (faithfulness steps),
                           baseline (fill value in [0, 1]), smooth_samples, seed, feature_layer
    /rows/row              int64 (R,)      row in the arrays given to compute_explanations
                                           (e.g. the test split as stored in predictions.h5)
    /rows/index            int64 (R,)      dataset index of the image
    /rows/label            int64 (R,)      true class
    /rows/pred             int64 (R,)      predicted class (argmax of probs)
    /rows/probs            float32 (R, C)  class probabilities
    /rows/correct          bool (R,)       pred == label
    /maps/<method>/<target>           uint8 (R, S, S)  map * 255, rounded (0..255)
    /scores/<method>/<target>/deletion   float32 (R,)  deletion area (lower = more faithful)
    /scores/<method>/<target>/insertion  float32 (R,)  insertion area (higher = more faithful)

Rows: the `cap` most confident errors first (see `misclassified`), then `n_correct` correctly
classified rows drawn with `seed`. <method> is a name of `galaxy_core.explain.registry.METHODS`
(saliency, smoothgrad, gradcam, gradcam_plus_plus; the file's `methods` attribute lists those it holds);
<target> "predicted" explains the predicted class, "true" the true class (for
correct rows both targets are the same class: the map is computed once and stored under both).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from galaxy_core.config import Config
from galaxy_core.errors import BundleError, ExplainError
from galaxy_core.explain.analysis import TARGETS, _check, misclassified
from galaxy_core.explain.registry import check_methods, get_method, method_names
from galaxy_core.io import atomic_path, progress_bar

FORMAT = "galaxy10-explanations"
VERSION = 1


def _take(images, rows: np.ndarray) -> np.ndarray:
    """images[rows] for numpy arrays, memmaps and h5py datasets (which need increasing indices)."""
    if isinstance(images, np.ndarray):
        return np.asarray(images[rows])
    unique, inverse = np.unique(rows, return_inverse=True)
    return np.asarray(images[unique])[inverse]


def select_rows(labels, probs, cap: int = 300, n_correct: int = 30, seed: int = Config.seed) -> np.ndarray:
    """The rows to explain: the `cap` most confident errors, then `n_correct` seeded correct rows."""
    labels, probs = _check(labels, probs)
    errors = misclassified(labels, probs)[:max(cap, 0)]
    correct = np.flatnonzero(probs.argmax(axis=1) == labels)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(correct, size=min(max(n_correct, 0), len(correct)), replace=False))
    return np.concatenate([errors, sample]).astype(np.int64)


def compute_explanations(model, images_uint8, labels, probs, indices, class_names: Sequence[str],
                         cap: int = 300, n_correct: int = 30, methods: Sequence[str] | None = None,
                         smooth_samples: int = 20, batch_size: int = 16, steps: int = 20,
                         faithfulness: bool = True, seed: int = Config.seed,
                         progress: bool = True) -> dict:
    """Maps and faithfulness scores for the misclassified images and a sample of correct ones.

    Args:
        model: the trained flat keras.Model.
        images_uint8: uint8 (N, S, S, 3) preprocessed images (array, memmap or h5py dataset).
        labels: int (N,) true classes. probs: float32 (N, C) the model's probabilities.
        indices: int (N,) dataset index of each row.
        class_names: C names (stored in the file).
        cap: at most this many errors (most confident first). n_correct: correct rows sampled.
        methods: names of `registry.METHODS` (None: all of them, in the table's order).
        smooth_samples: SmoothGrad samples.
        batch_size: images per gradient call (maps), and x2 masked images per faithfulness call.
        steps: deletion / insertion steps. faithfulness: False skips the scores (NaN stored).
        seed: sampling of correct rows and SmoothGrad noise.
        progress: draw a tqdm bar on stderr (`galaxy_core.io.progress_bar`; one unit per batch).

    Returns:
        dict with `rows` (dict of arrays as in the file's /rows), `maps[method][target]` uint8
        (R, S, S), `scores[method][target]` dict of `deletion`, `insertion` float32 (R,), and
        `attrs` (the file's attributes; "notes" is JSON `{method: why its maps are blank}`, e.g.
        Grad-CAM on a 1 x 1 feature map, `gradcam.flat_feature_map_note`). Pass it to
        `save_explanations`.
    """
    from galaxy_core.explain._engine import find_feature_layer, model_functions
    from galaxy_core.explain.faithfulness import DEFAULT_BASELINE, faithfulness_scores
    from galaxy_core.explain.gradcam import CAM_METHODS, flat_feature_map_note

    methods = check_methods(method_names() if methods is None else methods)
    labels, probs = _check(labels, probs)
    indices = np.asarray(indices, np.int64)
    if len(indices) != len(labels) or len(images_uint8) != len(labels):
        raise ExplainError(f"images ({len(images_uint8)}), labels ({len(labels)}) and indices "
                           f"({len(indices)}) must have the same length.")
    if len(class_names) != probs.shape[1]:
        raise ExplainError(f"{len(class_names)} class names for {probs.shape[1]} probability columns.")
    model_functions(model)  # model checks first: ExplainError before any work
    note = flat_feature_map_note(model)

    rows = select_rows(labels, probs, cap, n_correct, seed)
    pred = probs.argmax(axis=1)[rows]
    correct = pred == labels[rows]
    images = _take(images_uint8, rows)
    size = images.shape[1:3]
    wrong = np.flatnonzero(~correct)

    # Units of work: one per batch of maps (each with its faithfulness scores).
    def batches(n):
        return -(-n // batch_size)

    total = len(methods) * (batches(len(rows)) + batches(len(wrong)))
    maps: dict = {}
    scores: dict = {}
    with progress_bar(total, desc="explanations", unit="batch", disable=not progress) as bar:
        for method in methods:
            fn = get_method(method).bind(batch_size, smooth_samples=smooth_samples, seed=seed)
            maps[method], scores[method] = {}, {}
            for target in TARGETS:
                # "true" differs from "predicted" only on errors; correct rows reuse the map.
                todo = np.arange(len(rows)) if target == "predicted" else wrong
                classes = pred if target == "predicted" else labels[rows]
                out = maps[method]["predicted"].copy() if target == "true" else np.zeros((len(rows),) + size, np.uint8)
                deletion = scores[method]["predicted"]["deletion"].copy() if target == "true" \
                    else np.full(len(rows), np.nan, np.float32)
                insertion = scores[method]["predicted"]["insertion"].copy() if target == "true" \
                    else np.full(len(rows), np.nan, np.float32)
                for start in range(0, len(todo), batch_size):
                    part = todo[start:start + batch_size]
                    heat = fn(model, images[part], classes[part])
                    out[part] = np.rint(heat * 255.0).astype(np.uint8)
                    if faithfulness:
                        found = faithfulness_scores(model, images[part], heat, classes[part], steps=steps,
                                                    batch_size=2 * batch_size)
                        deletion[part], insertion[part] = found["deletion"], found["insertion"]
                    bar.update(1)
                maps[method][target] = out
                scores[method][target] = {"deletion": deletion, "insertion": insertion}

    attrs = {"format": FORMAT, "version": VERSION, "methods": json.dumps(list(methods)),
             "targets": json.dumps(list(TARGETS)), "class_names": json.dumps(list(class_names)),
             "image_size": int(size[0]), "steps": int(steps), "baseline": float(DEFAULT_BASELINE),
             "smooth_samples": int(smooth_samples), "seed": int(seed),
             "feature_layer": find_feature_layer(model).name,
             # Why the Grad-CAM maps are blank (a 1 x 1 feature map), for the app to show instead.
             "notes": json.dumps({m: note for m in methods if m in CAM_METHODS and note})}
    row_data = {"row": rows, "index": indices[rows], "label": labels[rows], "pred": pred.astype(np.int64),
                "probs": probs[rows].astype(np.float32), "correct": correct}
    return {"rows": row_data, "maps": maps, "scores": scores, "attrs": attrs}


def save_explanations(path: str | Path, data: dict) -> Path:
    """Write `compute_explanations`' result to `path` (HDF5, gzip) atomically.

    `galaxy_core.io.atomic_path`: a temp file renamed into place, with the umask's mode (0644 under
    umask 022) like every other bundle file.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for key, value in data["attrs"].items():
                f.attrs[key] = value
            for key, value in data["rows"].items():
                f.create_dataset(f"rows/{key}", data=np.asarray(value))
            for method, by_target in data["maps"].items():
                for target, maps in by_target.items():
                    maps = np.asarray(maps, np.uint8)
                    chunks = (1,) + maps.shape[1:] if len(maps) else None
                    f.create_dataset(f"maps/{method}/{target}", data=maps, compression="gzip",
                                     compression_opts=4, chunks=chunks)
            for method, by_target in data["scores"].items():
                for target, found in by_target.items():
                    for name in ("deletion", "insertion"):
                        f.create_dataset(f"scores/{method}/{target}/{name}",
                                         data=np.asarray(found[name], np.float32))
    return path


class Explanations:
    """Lazy reader of `explanations.h5` (see the module docstring for the layout).

    Attributes:
        rows: dict of small arrays (`row`, `index`, `label`, `pred`, `probs`, `correct`).
        scores: scores[method][target] -> dict(deletion, insertion) float32 (R,).
        methods, targets, class_names: lists. attrs: all file attributes.
    Maps are read one at a time with `map(method, target, row)`. Use as a context manager or call
    `close()`.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
        except (OSError, ValueError) as err:
            raise BundleError(f"Cannot open explanations file {self.path}: {err}") from err
        try:
            f = self._file
            self.attrs = {key: _plain(value) for key, value in f.attrs.items()}
            if self.attrs.get("format") != FORMAT:
                raise BundleError(f"{self.path} is not an explanations file (format attribute "
                                  f"{self.attrs.get('format')!r}, expected {FORMAT!r}).")
            self.methods = json.loads(self.attrs["methods"])
            self.targets = json.loads(self.attrs["targets"])
            self.class_names = json.loads(self.attrs["class_names"])
            self.rows = {key: f[f"rows/{key}"][()] for key in f["rows"]}
            self.scores = {m: {t: {name: f[f"scores/{m}/{t}/{name}"][()] for name in ("deletion", "insertion")}
                               for t in self.targets} for m in self.methods}
            for m in self.methods:
                for t in self.targets:
                    if f[f"maps/{m}/{t}"].shape[0] != len(self.rows["row"]):
                        raise BundleError(f"{self.path}: maps/{m}/{t} has a different row count.")
        except KeyError as err:
            self._file.close()
            raise BundleError(f"{self.path} is missing {err}; recompute it with compute_explanations.") from err
        except BaseException:
            self._file.close()
            raise

    def __len__(self) -> int:
        return len(self.rows["row"])

    def note(self, method: str) -> str | None:
        """Why `method`'s stored maps are blank (e.g. Grad-CAM on a 1 x 1 feature map), or None."""
        try:
            return json.loads(self.attrs.get("notes", "{}")).get(method)
        except (TypeError, ValueError, AttributeError):
            return None

    def map(self, method: str, target: str, row: int) -> np.ndarray:
        """Map of row `row` (0..len-1) as float32 (S, S) in [0, 1]."""
        if method not in self.methods or target not in self.targets:
            raise ExplainError(f"No maps for ({method!r}, {target!r}); have methods {self.methods}, "
                               f"targets {self.targets}.")
        if not 0 <= row < len(self):
            raise ExplainError(f"row must be in [0, {len(self)}); got {row}.")
        return self._file[f"maps/{method}/{target}"][row].astype(np.float32) / np.float32(255.0)

    def lookup(self, test_row: int, target: str, pred: int, label: int,
               methods: Sequence[str] | None = None) -> dict | None:
        """The stored maps and scores of one test image, or None where they cannot be used.

        Args:
            test_row: row of the image in the bundle's `predictions.h5`.
            target: one of `targets` (e.g. "pred" or "label").
            pred, label: the image's current predicted and true class; a stored row made for other
                predictions (e.g. before `train.py --evaluate`) is not used.
            methods: the methods wanted (None: all of `registry.METHODS`); None is returned unless
                all are stored.

        Returns:
            `{"maps": {method: float32 (S, S)}, "scores": {method: (deletion, insertion)}}`.
        """
        methods = method_names() if methods is None else tuple(methods)
        positions = self._positions()
        if test_row not in positions or target not in self.targets or not all(m in self.methods for m in methods):
            return None
        i = positions[test_row]
        if int(self.rows["pred"][i]) != int(pred) or int(self.rows["label"][i]) != int(label):
            return None
        return {"maps": {m: self.map(m, target, i) for m in methods},
                "scores": {m: (float(self.scores[m][target]["deletion"][i]),
                               float(self.scores[m][target]["insertion"][i])) for m in methods}}

    def _positions(self) -> dict[int, int]:
        if not hasattr(self, "_position_of"):
            self._position_of = {int(r): i for i, r in enumerate(self.rows["row"])}
        return self._position_of

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "Explanations":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_explanations(path: str | Path) -> Explanations:
    """Open `explanations.h5` for lazy reading (raises BundleError if missing or malformed)."""
    return Explanations(path)


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
