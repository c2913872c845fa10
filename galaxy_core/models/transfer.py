"""Transfer from a trained run: its config where the network and pixels must match, its weights
into a new model with a new classifier layer for other classes (`train.py --init-from runs/NAME`).

- `inherit_config(cfg, parent)`: `cfg` with the parent's `INHERITED_FIELDS` (backbone, image size,
  head and its hidden layer, every preprocessing field): the weights only fit that network, and
  they learnt features of images preprocessed that way. `weights` becomes "none": the parent's
  weights replace any backbone initialisation.
- `transfer_weights(model, parent_model)`: copy every weighted layer of the parent into the
  same-named layer of `model` when the shapes match, except the classifier (`NEW_LAYERS`), which
  keeps its fresh initialisation for the new classes.

Freezing the backbone, or all of it but its last N weighted layers, is `Config.freeze_backbone`
and `Config.unfreeze_last` (`galaxy_core.models.network.freeze_layers`), for any run.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from galaxy_core.config import PREPROCESS_FIELDS, Config
from galaxy_core.errors import ModelError

INHERITED_FIELDS: tuple[str, ...] = ("backbone", "image_size", "head", "dense_units", *PREPROCESS_FIELDS)
NEW_LAYERS: tuple[str, ...] = ("predictions",)  # the classifier: one unit per class of the new data


@dataclass(frozen=True)
class Transfer:
    """What `transfer_weights` did: layer names copied, and those left as initialised (with why)."""

    copied: tuple[str, ...]
    new: tuple[str, ...]


def inherit_config(cfg: Config, parent: Config) -> tuple[Config, dict[str, tuple]]:
    """`cfg` with the parent run's network and preprocessing fields, and `weights="none"`.

    Returns:
        The config, and `{field: (asked, parent's)}` for each field whose value changed (to log).
    """
    changed = {name: (getattr(cfg, name), getattr(parent, name)) for name in INHERITED_FIELDS
               if getattr(cfg, name) != getattr(parent, name)}
    return cfg.replace(weights="none", **{name: getattr(parent, name) for name in INHERITED_FIELDS}), changed


def parent_weights(parent_model: keras.Model) -> dict[str, list[np.ndarray]]:
    """`{layer name: its weights}` of every weighted layer (numpy copies, usable in any scope)."""
    return {layer.name: [np.asarray(w) for w in layer.get_weights()]
            for layer in parent_model.layers if layer.weights}


def transfer_weights(model: keras.Model, weights: dict[str, list[np.ndarray]]) -> Transfer:
    """Copy `weights` (from `parent_weights`) into the same-named layers of `model`.

    The `NEW_LAYERS` and layers whose shapes differ keep their initialisation.

    Raises:
        ModelError: not a single layer could be copied (the parent is another network).
    """
    copied, new = [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        source = weights.get(layer.name)
        shapes = [tuple(w.shape) for w in layer.get_weights()]
        if layer.name in NEW_LAYERS or source is None or [tuple(w.shape) for w in source] != shapes:
            new.append(layer.name)
            continue
        layer.set_weights(source)
        copied.append(layer.name)
    if not copied:
        raise ModelError(f"No layer of the parent run's model fits {model.name!r} (layers "
                         f"{new[:5]} ...); --init-from needs a run of this project's network.")
    return Transfer(tuple(copied), tuple(new))
