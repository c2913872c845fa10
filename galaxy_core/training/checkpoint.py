"""Training persistence, one owner: the run lock, the work folder, state.json, checkpoints, best weights.

While a run trains, a hidden work folder next to its bundle, `<out_dir.parent>/.<name>.work/`, holds
after EVERY epoch: the model with its optimizer state (`checkpoint-<epoch>/`, an unzipped Keras
model folder), the best weights
so far (`best_weights-<epoch>.npz`), with weight averaging the running mean of the weights
(`average-<epoch>.npz`, `callbacks.WeightAverage`), the split (`split.npz`, and its record `split.json`), the config (`config.json`), the
dataset's identity (`dataset.json`) and `state.json` (epochs done, history so far, early-stopping
state, the dtype policy and the names of the checkpoint files that belong to it). `state.json` is
written last and atomically, so a crash at any point leaves a state whose files exist and match it;
files it does not name are deleted at the next save. The work folder is removed once the bundle is
in place.

`RunLock` (`<out_dir.parent>/.<name>.lock`, `fcntl.flock` plus the holder's PID) is held for the
whole run: a second run on the same `--out` is refused with the live PID, a lock left by a dead
process is taken over (the kernel drops a dead process's flock). `clean_leftovers` removes the
hidden folders of dead runs; `not_a_bundle` guards `--overwrite`.

Example:
    >>> with RunLock("runs/demo") as lock:                    # doctest: +SKIP
    ...     work = start_work(work_dir_for("runs/demo"), cfg, data_path)
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from galaxy_core.bundle.schema import MARKER_MEMBERS, OPTIONAL_MEMBERS, REQUIRED_MEMBERS, TENSORBOARD_DIR
from galaxy_core.config import Config
from galaxy_core.data.galaxy10 import open_dataset
from galaxy_core.errors import TrainingError
from galaxy_core.io import atomic_file, file_mode, write_json, write_text
from galaxy_core.data.split import Split, load_split, save_split

STATE = "state.json"
DATASET = "dataset.json"
SPLIT = "split.npz"
SPLIT_INFO = "split.json"  # the split's run.json record (galaxy_core.data.sky.make_split)
CONFIG = "config.json"
# Hidden folders next to bundles: a run's work folder and the bundle writer's temporaries.
_LEFTOVER = re.compile(r"\.(?P<name>.+?)\.(?P<kind>work|partial-(?:.+-[0-9]+-)?[0-9a-f]+|old-[0-9a-f]+)")

Log = Callable[[str], None]


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------
def work_dir_for(out_dir: str | Path) -> Path:
    """The hidden work folder of a run: `<out_dir.parent>/.<name>.work`."""
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}.work"


def lock_path_for(out_dir: str | Path) -> Path:
    """The lock file of a bundle name (and so of its work folder): `<out_dir.parent>/.<name>.lock`."""
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}.lock"


# --------------------------------------------------------------------------------------------
# The run lock
# --------------------------------------------------------------------------------------------
class RunLock:
    """An exclusive lock on a bundle name and its work folder, held for a whole run.

    `fcntl.flock` on `.<name>.lock`, with the holder's PID written in the file so a refusal can name
    it. The kernel releases a flock when its process dies, so a lock file left by a killed run is
    not held: it is taken over and `took_over` is that run's PID. Use as a context manager.

    Raises (on enter / `acquire`):
        TrainingError: another live process holds the lock (the message names its PID).
    """

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.path = lock_path_for(self.out_dir)
        self.took_over: int | None = None
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode())
            except OSError as err:
                raise TrainingError(f"Cannot create the run lock {self.path}: {err}. Choose an --out "
                                    f"in a folder you can write to.") from err
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                who = f"PID {holder}" if holder else "another process"
                raise TrainingError(
                    f"Another training run ({who}) is using {self.out_dir} right now (it holds "
                    f"{self.path}). Wait for it to finish or stop it, or choose another --out."
                ) from None
            try:  # a holder that released meanwhile unlinks the file: lock the one on disk
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read_pid(fd)
        self.took_over = previous if previous and previous != os.getpid() else None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            if os.fstat(self._fd).st_ino == os.stat(self.path).st_ino:
                self.path.unlink()
        except FileNotFoundError:
            pass
        finally:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def clean_leftovers(parent: str | Path, log: Log, keep: str | None = None) -> list[Path]:
    """Remove the hidden folders that dead runs left in `parent`; say so for each one.

    `.<name>.partial-*` and `.<name>.old-*` (a bundle write that never finished) and a
    `.<name>.work` without `state.json` (a run that died before its first epoch) are removed when no
    live run holds `<name>`'s lock. A work folder WITH a checkpoint is kept (it can be resumed) and
    reported. `keep` is the name this process itself holds the lock of (its folders are in use).

    Returns:
        The removed folders.
    """
    parent = Path(parent)
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for entry in sorted(parent.iterdir()):
        match = _LEFTOVER.fullmatch(entry.name)
        if not match or not entry.is_dir() or match["name"] == keep:
            continue
        resumable = match["kind"] == "work" and (entry / STATE).exists()
        try:
            with RunLock(parent / match["name"]):  # held while deleting: no run can start on it
                if resumable:
                    log(f"note: {entry} holds an interrupted run; continue it with --out "
                        f"{parent / match['name']} --resume, or delete it")
                    continue
                shutil.rmtree(entry, ignore_errors=True)
        except TrainingError:
            continue  # a live run owns it
        removed.append(entry)
        log(f"cleaned up {entry} (left by a run that is no longer running)")
    return removed


# --------------------------------------------------------------------------------------------
# What may be replaced
# --------------------------------------------------------------------------------------------
def _bundle_file(name: str) -> bool:
    """A file a bundle holds: its members, or what is derived from model.keras (`model.onnx`, its
    fingerprint sidecar, the int8 copy, a failed-export marker: all named `model.*`)."""
    return name in REQUIRED_MEMBERS or name in OPTIONAL_MEMBERS or name.startswith("model.")


def not_a_bundle(path: str | Path) -> str | None:
    """Why `path` must not be replaced by a new bundle (it holds something else), or None.

    None for a missing or empty folder and for a run bundle (it has the bundle format's
    `MARKER_MEMBERS`: `config.json`, `run.json` and `model.keras`, no subfolder but its TensorBoard
    logs' `tensorboard/`, and no file a bundle does not hold). Otherwise the reason says what is in
    it (a user's own files in a bundle are named: replacing the bundle would delete them).
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return None
    if not path.is_dir() or path.is_symlink():
        return f"{path} is a file, not a run bundle; choose another --out"
    entries = sorted(path.iterdir())
    if not entries:
        return None
    names = {e.name for e in entries}
    folders = [e for e in entries if e.is_dir() and e.name != TENSORBOARD_DIR]
    foreign = [e.name for e in entries if e.is_file() and not _bundle_file(e.name)]
    if set(MARKER_MEMBERS) <= names and not folders and foreign:
        return (f"{path} is a run bundle that also holds files of its own ({', '.join(foreign[:8])}"
                f"{' and more' if len(foreign) > 8 else ''}): a new run would delete them, even with "
                f"--overwrite. Move them away, or choose another --out.")
    if set(MARKER_MEMBERS) <= names and not folders:
        return None
    missing = [m for m in MARKER_MEMBERS if m not in names]
    shown = ", ".join(e.name + ("/" if e.is_dir() else "") for e in entries[:8])
    more = f" and {len(entries) - 8} more" if len(entries) > 8 else ""
    why = f"no {', '.join(missing)}" if missing else f"it has subfolders ({folders[0].name}/)"
    return (f"{path} is not a run bundle ({why}): it holds {len(entries) - len(folders)} file(s) and "
            f"{len(folders)} folder(s): {shown}{more}. A run only replaces a run bundle, even with "
            f"--overwrite; choose another --out, or move those files away.")


# --------------------------------------------------------------------------------------------
# The work folder: start, resume guard, split
# --------------------------------------------------------------------------------------------
def dataset_identity(data_path: Path) -> dict[str, Any]:
    """What a resumed run checks about its dataset: resolved path, size and image count."""
    with open_dataset(data_path) as source:
        n_images = source.n
    return {"path": str(Path(data_path).resolve()), "size": Path(data_path).stat().st_size, "n": n_images}


def start_work(work: Path, cfg: Config, data_path: Path, out_dir: Path) -> None:
    """Make a fresh work folder for a new run (the caller holds the run lock).

    Raises:
        TrainingError: `work` holds the checkpoint of an interrupted run (resume or delete it).
    """
    if (work / STATE).exists():
        raise TrainingError(f"{work} holds the checkpoint of an interrupted run for {out_dir}. "
                            f"Continue it with --resume, or delete that folder to start over.")
    shutil.rmtree(work, ignore_errors=True)  # a run that died before its first epoch ended
    work.mkdir(parents=True)
    write_text(work / CONFIG, cfg.to_json() + "\n")
    write_json(work / DATASET, dataset_identity(data_path))


def read_config(work: Path) -> Config:
    """The config the interrupted run in `work` started with."""
    return Config.from_json(work / CONFIG)


def changed_fields(saved: Config, cfg: Config) -> list[str]:
    """The config fields whose value in `cfg` differs from `saved`, sorted."""
    new = cfg.to_dict()
    return sorted(k for k, v in saved.to_dict().items() if new.get(k) != v)


def open_for_resume(work: Path, cfg: Config, data_path: Path, log: Log) -> tuple[Config, dict[str, Any]]:
    """Check that the interrupted run in `work` can continue; return its config and state.

    A `cfg` that differs from the saved config is reported (by field name) and ignored.

    Raises:
        TrainingError: nothing to resume, or `data_path` is not the run's dataset.
    """
    state = read_state(work)
    if state is None:
        raise TrainingError(f"Nothing to resume: no checkpoint in {work}. Start the run without "
                            f"--resume.")
    check_same_dataset(work, data_path)
    saved = read_config(work)
    if changed := changed_fields(saved, cfg):
        log(f"note: resuming with the interrupted run's config (ignoring changes to {changed})")
    return saved, state


def check_same_dataset(work: Path, data_path: Path) -> None:
    """Raise TrainingError unless `data_path` is the dataset the interrupted run started on."""
    if not (work / DATASET).exists():
        raise TrainingError(f"{work} has no {DATASET} (it was not made by this version's train.py); "
                            f"delete it to start the run over.")
    started = json.loads((work / DATASET).read_text())
    now = dataset_identity(data_path)
    if (started["size"], started["n"]) != (now["size"], now["n"]):
        raise TrainingError(f"The interrupted run in {work} was trained on {started['path']} "
                            f"({started['n']} images, {started['size']:,} bytes), not on "
                            f"{now['path']} ({now['n']} images, {now['size']:,} bytes). Resume with "
                            f"--data {started['path']}.")


def check_same_policy(state: dict[str, Any], policy: str, n_gpus: int) -> None:
    """Raise TrainingError when the checkpoint was saved under another dtype policy."""
    if state.get("policy", policy) != policy:
        raise TrainingError(f"The checkpoint was saved under the {state['policy']} policy but "
                            f"this machine runs {policy} ({n_gpus} GPU(s)); the optimizer "
                            f"state would not load. Resume on a machine like the one that "
                            f"started the run.")


def load_or_make_split(work: Path, labels: np.ndarray, cfg: Config, ra: np.ndarray | None = None,
                       dec: np.ndarray | None = None) -> tuple[Split, dict[str, Any]]:
    """The run's split and its run.json record: the ones saved in `work`, else new ones saved there.

    A new split is `galaxy_core.data.sky.make_split(cfg.split_by, labels, ra, dec, ...)` (ra/dec in
    degrees, needed for "sky"). A resumed run keeps its saved split and record whatever the config
    says now (the record is written before the split, so a saved split always has one).
    """
    from galaxy_core.data.sky import make_split

    if (work / SPLIT).exists():
        return load_split(work / SPLIT), json.loads((work / SPLIT_INFO).read_text(encoding="utf-8"))
    split, info = make_split(cfg.split_by, labels, ra, dec, cfg.val_fraction, cfg.test_fraction,
                             cfg.seed)
    write_json(work / SPLIT_INFO, info)  # the record first: a split.npz never lacks its record
    save_split(split, work / SPLIT)
    return split, info


def remove_work(work: Path) -> None:
    """Delete the work folder (once the bundle is in place, or a non-chief worker's scratch)."""
    shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------
def read_state(work: Path) -> dict[str, Any] | None:
    """The work folder's `state.json`, or None before the first checkpoint."""
    return json.loads((work / STATE).read_text()) if (work / STATE).exists() else None


def checkpoint_path(work: Path, state: dict[str, Any]) -> Path:
    """The model + optimizer file `state` names."""
    return work / state["checkpoint"]


def save_checkpoint(work: Path, model, stopper, history: dict[str, list], epochs_done: int,
                    policy: str, average=None) -> None:
    """Write model + optimizer, best weights (when improved) and state, crash-consistently.

    The model and best weights go to files named by epoch; `state.json`, written last and
    atomically, names the pair that belongs to it; only then are older files deleted. A crash at
    any point leaves a state whose files exist and match it (a half-written file is never named).

    Args:
        stopper: the run's `BestWeightsEarlyStopping` (`best`, `best_epoch`, `wait`, `improved`,
            `best_weights`).
        policy: the Keras dtype policy name (a resume must load under the same).
        average: the run's `callbacks.WeightAverage` or None; its mean (once it has one) is saved
            beside the checkpoint, so a resumed run continues the same average.
    """
    previous = read_state(work)
    checkpoint = f"checkpoint-{epochs_done:04d}"
    # Unzipped (a folder: config.json + model.weights.h5): Keras writes a zipped .keras by saving the
    # weights to a temporary .h5 in the same folder and copying it into the zip. Measured for
    # DenseNet201 + Adam (1.73 GB): save 12.0 s instead of 15.8 s, load 10.1 s instead of 14.1 s,
    # and no temporary copy (the work folder peaks ~1.7 GB lower). BENCHMARKS.md, "rehearsal".
    if (work / checkpoint).exists():  # left half-written by a killed run: not named by any state
        _remove(work / checkpoint)
    model.save(work / checkpoint, zipped=False)
    best = previous.get("best_weights") if previous else None
    if stopper.improved or best is None or not (work / best).exists():
        best = f"best_weights-{epochs_done:04d}.npz"
        weights = stopper.best_weights if stopper.best_weights is not None else model.get_weights()
        _save_weights(work / best, weights)
    mean = None
    if average is not None and average.count:
        mean = f"average-{epochs_done:04d}.npz"
        _save_weights(work / mean, average.mean)
    state = {
        "epochs_done": epochs_done,
        "checkpoint": checkpoint,
        "best_weights": best,
        "average": mean,
        "average_count": average.count if mean else 0,
        "stopped": bool(model.stop_training),
        "best": None if stopper.best is None else float(stopper.best),
        "best_epoch": int(stopper.best_epoch),  # 0-based, like Keras
        "wait": int(stopper.wait),
        "policy": policy,
        "history": history,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(work / STATE, state)
    for old in [*work.glob("checkpoint-*"), *work.glob("best_weights-*.npz"), *work.glob("average-*.npz")]:
        if old.name not in (checkpoint, best, mean):
            _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _save_weights(path: Path, weights: Sequence[np.ndarray]) -> None:
    with atomic_file(path, "wb") as f:
        np.savez(f, *weights)


def load_average(work: Path) -> tuple[list[np.ndarray] | None, int]:
    """The weight average named by the work folder's state and its snapshot count, or (None, 0)."""
    state = read_state(work)
    name = state.get("average") if state else None
    if not name or not (work / name).exists():
        return None, 0
    return _load_weights(work / name), int(state.get("average_count", 0))


def load_best_weights(work: Path) -> list[np.ndarray] | None:
    """The best weights named by the work folder's state, or None before the first checkpoint."""
    state = read_state(work)
    if state is None:
        return None
    path = work / state["best_weights"]
    if not path.exists():
        return None
    return _load_weights(path)


def _load_weights(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]
