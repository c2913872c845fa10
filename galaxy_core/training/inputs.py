"""A run's inputs, settled before any work: the data file and its classes, and the parent run.

`train_run` calls `resolve_inputs` first, so the config saved in the work folder and the bundle's
config.json already say what the data and the parent decided:

- `--data` a labelled folder or `path,label` table: imported once into a Galaxy10-format file in
  the cache folder (`galaxy_core.preprocessing.labelled`); unreadable files are listed and left out.
- a data file that names its classes (an imported one): `class_names` come from it, and every class
  must be large enough for the split (`galaxy_core.data.split.check_class_sizes`).
- data without sky positions (ra/dec NaN): `split_by` "sky" becomes "random" (said in the log).
- `cfg.init_from` a run bundle: its network and preprocessing fields (`models.transfer.inherit_config`).

`parent_weights` reads the parent's weights for `build_or_resume`, and `parent_record` is run.json
`parent_run`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from galaxy_core.config import Config
from galaxy_core.errors import BundleError, TrainingError
from galaxy_core.training.checkpoint import Log


@dataclass
class Inputs:
    """The settled config and data file, and what to add to run.json."""

    cfg: Config
    data_path: Path
    run_info: dict[str, Any] = field(default_factory=dict)


def resolve_inputs(cfg: Config, data_path: str | Path, cache_dir: str | Path | None,
                   class_names: Sequence[str] | None, log: Log, progress: bool = True) -> Inputs:
    """The config and Galaxy10-format file the run trains with (see the module docstring).

    Raises:
        DatasetError: a bad labelled folder or table, or a class too small for the split.
        TrainingError: `cfg.init_from` is not a readable run bundle, or `class_names` given with
            a Galaxy10-format file.
    """
    from galaxy_core.data.galaxy10 import open_dataset
    from galaxy_core.data.split import check_class_sizes
    from galaxy_core.preprocessing.labelled import describe_unreadable, import_labelled, is_labelled_source

    data_path, info = Path(data_path), {}
    if cfg.init_from:
        cfg = _inherit(cfg, log)
    if is_labelled_source(data_path):
        result = import_labelled(data_path, cache_dir, class_names, min_side=cfg.image_size,
                                 show_progress=progress, log=log)
        log(f"labelled data: {data_path} -> {result.path} ({result.n} images, "
            f"{'imported now' if result.built else 'imported before'}); {describe_unreadable(result.unreadable)}")
        info["labelled_source"] = {"path": str(data_path.resolve()), "images": result.n,
                                   "unreadable": len(result.unreadable)}
        data_path = result.path
    elif class_names:
        raise TrainingError("--class-names names the label indices of a table given as --data; a "
                            "Galaxy10-format file keeps its own classes.")
    with open_dataset(data_path) as ds:
        if ds.has_class_names:
            if tuple(ds.class_names) != cfg.class_names:
                log(f"classes from the data: {len(ds.class_names)} ({', '.join(ds.class_names)})")
            cfg = cfg.replace(class_names=ds.class_names)
            check_class_sizes(ds.labels, ds.class_names, cfg.val_fraction, cfg.test_fraction)
        info["has_sky"] = ds.has_sky()
        if cfg.split_by == "sky" and not info["has_sky"]:
            log("split: the data has no sky positions (ra/dec), so it is split at random "
                "(split_by random), not by sky")
            cfg = cfg.replace(split_by="random")
    if cfg.init_from:
        info["parent_run"] = parent_record(cfg.init_from)
    return Inputs(cfg, data_path, info)


def _inherit(cfg: Config, log: Log) -> Config:
    from galaxy_core.models.transfer import inherit_config

    parent = _load_parent(cfg.init_from)
    cfg, changed = inherit_config(cfg, parent.config)
    log(f"init from {cfg.init_from}: {parent.config.backbone} at {parent.config.image_size} px with its "
        f"preprocessing; a new classifier layer for this data's classes"
        + (f" (the parent's values replace {sorted(changed)})" if changed else ""))
    return cfg


def _load_parent(path: str):
    from galaxy_core.bundle.read import load_bundle

    try:
        return load_bundle(path)
    except BundleError as err:
        raise TrainingError(f"--init-from {path}: not a readable run bundle ({err}). Give the folder "
                            f"of a finished run, e.g. runs/demo.") from err


def parent_weights(cfg: Config) -> dict:
    """The parent run's weights by layer name (`galaxy_core.models.transfer.parent_weights`)."""
    from galaxy_core.models.transfer import parent_weights as weights_of

    return weights_of(_load_parent(cfg.init_from).load_model())


def parent_record(path: str) -> dict[str, Any]:
    """run.json `parent_run`: the parent bundle's path, name, backbone, classes and creation time."""
    parent = _load_parent(path)
    return {"path": str(Path(path).resolve()), "name": Path(path).resolve().name,
            "backbone": parent.config.backbone, "class_names": list(parent.config.class_names),
            "created": parent.run_info.get("created"), "synthetic": parent.is_synthetic}
