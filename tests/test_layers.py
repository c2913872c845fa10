"""The layer order of galaxy_core: every import (module-level or inside a function) points down, no cycles.

Each module belongs to one layer of `LAYERS` (lowest first). A module may import modules of its own
layer or of a lower one, never of a higher one; and the import graph (with the layer rule alone a
same-layer cycle would still be possible) must have no cycle. `galaxy_core/explain/` is one module
("explain") for this purpose. The order is drawn in docs/architecture.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "galaxy_core"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Lowest layer first. Names absent from the package are allowed (modules other branches add).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "config", "io", "tf_quiet"),
    ("data", "download", "split", "sky", "properties", "crop"),
    # decode's output contract (RGB uint8) is preprocess.to_rgb_uint8, so it sits with preprocess.
    ("preprocess", "cache", "synthetic", "decode", "morphology"),
    ("augment", "model", "morphology_model"),
    ("pipeline",),
    ("inference", "onnx_passes", "onnx_export", "quantize", "predictor", "metrics", "curves", "calibration", "embedding", "explain"),
    ("bundle",),
    ("checkpoint", "callbacks", "train", "evaluate", "predict", "scoring", "compare"),
)
LAYER_OF = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    """`galaxy_core/explain/store.py` -> "explain", `galaxy_core/bundle.py` -> "bundle"."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return parts[0]


def dotted_name(path: Path) -> str:
    """`galaxy_core/explain/store.py` -> "galaxy_core.explain.store" (packages: their folder)."""
    parts = (PACKAGE,) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def galaxy_imports(tree: ast.AST, dotted: str, is_package: bool, submodules: set[str]) -> set[str]:
    """The galaxy_core modules (top-level names, e.g. "bundle") that a parsed file imports anywhere.

    Args:
        tree: `ast.parse` of the file (every statement is walked: module level, functions, classes).
        dotted: the file's dotted module name (for relative imports).
        is_package: the file is a package's `__init__.py`.
        submodules: top-level module names of the package (to read `from galaxy_core import x`).
    """
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = dotted.split(".") if is_package else dotted.split(".")[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base == PACKAGE:  # from galaxy_core import bundle, data
                targets = [f"{PACKAGE}.{alias.name}" for alias in node.names if alias.name in submodules]
            else:
                targets = [base]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            if parts[0] == PACKAGE and len(parts) > 1:
                found.add(parts[1])
    return found


def import_graph() -> dict[str, set[str]]:
    """{module: modules it imports} over every file of galaxy_core (self-imports dropped)."""
    files = sorted(p for p in ROOT.rglob("*.py") if p != ROOT / "__init__.py")
    submodules = {module_name(p) for p in files}
    graph: dict[str, set[str]] = {name: set() for name in submodules}
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        name = module_name(path)
        graph[name] |= galaxy_imports(tree, dotted_name(path), path.name == "__init__.py", submodules) - {name}
    return graph


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Messages for every module missing from LAYERS and every import that points up."""
    problems = []
    for name in sorted(set(graph) | {t for targets in graph.values() for t in targets}):
        if name not in LAYER_OF:
            problems.append(f"galaxy_core.{name} is in no layer: add it to LAYERS in tests/test_layers.py "
                            f"(the layer of the modules it imports or above, below its users) and to the "
                            f"layer order in docs/architecture.md")
    for name, targets in sorted(graph.items()):
        for target in sorted(targets):
            if name in LAYER_OF and target in LAYER_OF and LAYER_OF[target] > LAYER_OF[name]:
                problems.append(f"galaxy_core.{name} (layer {LAYER_OF[name]}: {', '.join(LAYERS[LAYER_OF[name]])}) "
                                f"imports galaxy_core.{target}, a higher layer ({LAYER_OF[target]}: "
                                f"{', '.join(LAYERS[LAYER_OF[target]])}); move the shared code down")
    return problems


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path `[a, b, ..., a]`, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


# --------------------------------------------------------------------------------------------
def test_galaxy_core_imports_point_down():
    graph = import_graph()
    assert {"bundle", "evaluate", "model", "explain", "inference", "metrics", "decode"} <= set(graph)
    problems = layer_violations(graph)
    assert not problems, "\n".join(problems)


def test_galaxy_core_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(f"galaxy_core.{m}" for m in cycle)


def test_the_cycles_of_issue_9_are_gone():
    graph = import_graph()
    assert "evaluate" not in graph["bundle"] and "bundle" in graph["evaluate"]
    assert "explain" not in graph["model"] and "model" in graph["explain"]


# --- the checker itself ----------------------------------------------------------------------
SOURCE = '''
import os
import galaxy_core.errors
from galaxy_core import bundle, not_a_module
from galaxy_core.metrics import METRIC_KEYS


def late():
    from galaxy_core.train import train_run  # function-level imports count too
    from .store import save_explanations
    from .. import model


class Holder:
    import galaxy_core.io as gio
'''


def test_galaxy_imports_finds_every_kind_of_import():
    tree = ast.parse(SOURCE)
    found = galaxy_imports(tree, "galaxy_core.explain.x", False,
                           {"errors", "bundle", "metrics", "train", "io", "explain", "model"})
    assert found == {"errors", "bundle", "metrics", "train", "explain", "io", "model"}


@pytest.mark.parametrize("graph, expected", [
    ({"bundle": {"evaluate"}, "evaluate": set()}, "galaxy_core.bundle (layer 6: bundle) imports galaxy_core.evaluate"),
    ({"model": {"explain"}}, "galaxy_core.model (layer 3: augment, model, morphology_model) imports galaxy_core.explain, a higher"),
    ({"shiny_new": {"errors"}}, "galaxy_core.shiny_new is in no layer: add it to LAYERS in tests/test_layers.py"),
])
def test_layer_violations_are_reported(graph, expected):
    problems = layer_violations(graph)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_find_cycle_reports_a_same_layer_cycle():
    assert find_cycle({"metrics": {"inference"}, "inference": {"metrics"}}) == ["inference", "metrics", "inference"]
    assert find_cycle({"metrics": {"inference"}, "inference": {"errors"}, "errors": set()}) is None
    assert layer_violations({"metrics": {"inference"}, "inference": {"metrics"}}) == []  # hence find_cycle
