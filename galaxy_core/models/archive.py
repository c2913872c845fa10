"""The `.keras` archive check: what safe mode would refuse, found without building the model.

`network.load_model` runs it before Keras reads a `.keras` file, and `galaxy_core.bundle.read`
when it validates a bundle. It imports no Keras (a bundle listing stays cheap).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from galaxy_core.errors import ModelError

# Keras classes that safe mode refuses to deserialise (they carry Python code): a Lambda layer and
# a pickled lambda function anywhere in the config.
UNSAFE_CLASSES = ("Lambda", "__lambda__")


def check_model_archive(path: str | Path, where: str = "Model") -> dict:
    """Check a `.keras` archive without building the model; return its model config (dict).

    The archive must be a zip holding a `config.json` that is a JSON object, and the model it
    describes must hold nothing that safe mode refuses (`UNSAFE_CLASSES`).

    Raises:
        ModelError: naming `where` and the problem.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{where}: {path.name} is not a Keras archive (zip)")
    try:
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise ModelError(f"{where}: {path.name} has no config.json (not a model saved by Keras 3 "
                                 f"model.save); re-run training, or delete the run")
            config = json.loads(archive.read("config.json").decode("utf-8"))
    except ModelError:
        raise
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{where}: {path.name}'s config.json cannot be read: {err}") from err
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelError(f"{where}: {path.name}'s config.json is not a Keras model config")
    unsafe = _find_unsafe(config)
    if unsafe:
        raise ModelError(f"{where}: {path.name} contains {unsafe}, which Keras safe mode refuses to load "
                         f"(it would run arbitrary Python code). Models of this project never do; "
                         f"re-run training, or delete the run")
    return config


def _find_unsafe(node: Any) -> str | None:
    """Description of the first unsafe object in a Keras config tree, or None."""
    if isinstance(node, dict):
        if node.get("class_name") in UNSAFE_CLASSES:
            name = (node.get("config") or {}).get("name") if isinstance(node.get("config"), dict) else None
            kind = "a Lambda layer" if node["class_name"] == "Lambda" else "a pickled Python lambda"
            return kind + (f" ({name!r})" if name else "")
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _find_unsafe(child)
        if found:
            return found
    return None
