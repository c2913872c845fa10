"""The layer table of galaxy_core: its folders (wings) and the modules inside each, every import pointing down.

Two levels, both checked with `ast` over every file (module-level and function-level imports alike):
- `LAYERS`: the units of `galaxy_core/`, lowest first. A unit is a module directly in the package
  (`config`) or a folder (`data/`, `models/`, ...). A unit may import units of its own layer or a lower
  one, never a higher one, and the unit graph has no cycle.
- `WING_ORDER`: inside each folder, its modules in layers, lowest first; `__init__` and `__main__` sit
  above all of them. The same rule and no cycle.
At most `MAX_TOP_MODULES` modules sit directly in `galaxy_core/`, and none of its modules is longer than
`MAX_MODULE_LINES` lines. The tables are drawn in
docs/architecture.md; a module or folder missing from them fails here with what to add.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "galaxy_core"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Lowest layer first: the units of galaxy_core (modules directly in it, and folders).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "io", "tf_quiet"),
    ("config",),
    ("data",),
    ("preprocessing", "synthetic"),
    ("morphology",),
    ("inference",),
    ("models",),
    ("evaluation",),
    ("explain",),
    ("bundle",),
    ("training", "runs"),
    ("predict", "catalog"),
)
LAYER_OF = {name: rank for rank, names in enumerate(LAYERS) for name in names}

# Inside each folder, lowest first (`__init__` / `__main__` are above every module of their folder).
WING_ORDER: dict[str, tuple[tuple[str, ...], ...]] = {
    "data": (("download", "split", "label_table"), ("galaxy10", "sky"), ("properties",)),
    "preprocessing": (("crop",), ("preprocess",), ("decode", "cache"), ("labelled",)),
    "synthetic": (("settings",), ("palette", "canvas"), ("components",), ("field", "classes"), ("dataset",), ("cli",)),
    "morphology": (("statistics",), ("classifier",), ("fit",)),
    "inference": (("predictor", "tta"), ("probabilities",), ("classify",)),
    "models": (("archive", "augment", "fingerprint", "onnx_passes", "quantize"), ("network",), ("onnx_export", "transfer"), ("predictor",)),
    "evaluation": (("metrics", "calibration", "embedding"), ("curves", "scoring", "blend")),
    "explain": (("registry",), ("_engine", "analysis", "overlay"), ("saliency", "gradcam", "faithfulness"), ("gradcam_plus_plus",),
                ("store",), ("one_image",)),
    "bundle": (("schema",), ("write", "read")),
    "training": (("checkpoint", "pipeline", "distribute", "loopback"), ("callbacks", "multiworker"), ("inputs", "phases"), ("train",)),
    "runs": (("reevaluate", "compare"),),
    "catalog": (("inputs", "writer"), ("partitions",), ("manifest", "rows"), ("worker",), ("engine",), ("cli",)),
}
FACADES = ("__init__", "__main__")
MAX_TOP_MODULES = 8
MAX_MODULE_LINES = 450  # a module longer than this holds more than one concept: split it


def unit_name(path: Path) -> str:
    """`galaxy_core/explain/store.py` -> "explain", `galaxy_core/config.py` -> "config"."""
    return path.relative_to(ROOT).with_suffix("").parts[0]



def dotted_name(path: Path) -> str:
    """`galaxy_core/explain/store.py` -> "galaxy_core.explain.store" (packages: their folder)."""
    parts = (PACKAGE,) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(tree: ast.AST, dotted: str, is_package: bool) -> set[str]:
    """Every dotted name a parsed file imports anywhere, relative imports resolved.

    `from galaxy_core.models import network, augment` gives "galaxy_core.models", "galaxy_core.models.network"
    and "galaxy_core.models.augment" (a name after `import` may be a module or an attribute; callers keep
    the ones that are modules).
    """
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = dotted.split(".") if is_package else dotted.split(".")[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def galaxy_imports(tree: ast.AST, dotted: str, is_package: bool, submodules: set[str]) -> set[str]:
    """The galaxy_core units (modules directly in it, or folders, e.g. "bundle") a parsed file imports."""
    units = set()
    for name in imported_names(tree, dotted, is_package):
        parts = name.split(".")
        if parts[0] == PACKAGE and len(parts) > 1 and parts[1] in submodules:
            units.add(parts[1])
    return units


def wing_imports(tree: ast.AST, dotted: str, is_package: bool, wing: str, modules: set[str]) -> set[str]:
    """The modules of folder `wing` (names in `modules`) that a parsed file of that folder imports."""
    found = set()
    for name in imported_names(tree, dotted, is_package):
        parts = name.split(".")
        if parts[:2] == [PACKAGE, wing] and len(parts) > 2 and parts[2] in modules:
            found.add(parts[2])
    return found


def source_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if p != ROOT / "__init__.py" and "__pycache__" not in p.parts)


def import_graph() -> dict[str, set[str]]:
    """{unit: units it imports} over every file of galaxy_core (self-imports dropped)."""
    files = source_files()
    submodules = {unit_name(p) for p in files}
    graph: dict[str, set[str]] = {name: set() for name in submodules}
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        name = unit_name(path)
        graph[name] |= galaxy_imports(tree, dotted_name(path), path.name == "__init__.py", submodules) - {name}
    return graph


def wing_graph(wing: str) -> dict[str, set[str]]:
    """{module: modules of the same folder it imports} inside folder `wing` (facades included)."""
    files = sorted((ROOT / wing).glob("*.py"))
    modules = {p.stem for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[path.stem] = wing_imports(tree, dotted_name(path), path.name == "__init__.py", wing, modules) - {path.stem}
    return graph


def wings() -> list[str]:
    return sorted(p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists())


def layer_violations(graph: dict[str, set[str]], layers: tuple[tuple[str, ...], ...] = LAYERS,
                     where: str = PACKAGE, facades: tuple[str, ...] = ()) -> list[str]:
    """Messages for every unit missing from `layers` and every import that points up."""
    rank = {name: r for r, names in enumerate(layers) for name in names}
    rank |= {name: len(layers) for name in facades}
    table = "LAYERS" if where == PACKAGE else f'WING_ORDER["{where.split(".")[-1]}"]'
    problems = []
    for name in sorted(set(graph) | {t for targets in graph.values() for t in targets}):
        if name not in rank:
            problems.append(f"{where}.{name} is in no layer: add it to {table} in tests/test_layers.py "
                            f"(the layer of the modules it imports or above, below its users) and to the "
                            f"layer table in docs/architecture.md")
    for name, targets in sorted(graph.items()):
        for target in sorted(targets):
            if name in rank and target in rank and rank[target] > rank[name]:
                problems.append(f"{where}.{name} (layer {rank[name]}: {', '.join(layers[rank[name]])}) "
                                f"imports {where}.{target}, a higher layer ({rank[target]}: "
                                f"{', '.join(layers[rank[target]])}); move the shared code down")
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


def test_galaxy_core_units_import_down():
    graph = import_graph()
    assert set(WING_ORDER) <= set(graph) and {"config", "errors", "io"} <= set(graph)
    problems = layer_violations(graph)
    assert not problems, "\n".join(problems)


def test_galaxy_core_has_no_import_cycle_between_units():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(f"galaxy_core.{m}" for m in cycle)


@pytest.mark.parametrize("wing", wings())
def test_modules_inside_each_folder_import_down(wing):
    assert wing in WING_ORDER, (f"galaxy_core/{wing}/ is in no table: add WING_ORDER[\"{wing}\"] to "
                                f"tests/test_layers.py and the folder to LAYERS")
    graph = wing_graph(wing)
    problems = layer_violations(graph, WING_ORDER[wing], f"{PACKAGE}.{wing}", FACADES)
    assert not problems, "\n".join(problems)
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle in galaxy_core/{wing}/: " + " -> ".join(cycle)


def test_few_modules_sit_directly_in_the_package():
    top = sorted(p.stem for p in ROOT.glob("*.py") if p.name != "__init__.py")
    assert len(top) <= MAX_TOP_MODULES, f"{len(top)} modules directly in galaxy_core/ ({top}): give them a folder"


def test_no_module_is_over_the_line_limit():
    sizes = {str(p.relative_to(ROOT.parent)): len(p.read_text(encoding="utf-8").splitlines())
             for p in source_files() + [ROOT / "__init__.py"]}
    over = {path: n for path, n in sorted(sizes.items()) if n > MAX_MODULE_LINES}
    assert not over, (f"modules over {MAX_MODULE_LINES} lines: {over}; split each along its concepts "
                      f"(a section banner is usually where the second module starts)")


# --- the checker itself ----------------------------------------------------------------------
SOURCE = '''
import os
import galaxy_core.errors
from galaxy_core import bundle, not_a_module
from galaxy_core.evaluation.metrics import METRIC_KEYS


def late():
    from galaxy_core.training.train import train_run  # function-level imports count too
    from .store import save_explanations
    from .. import models


class Holder:
    import galaxy_core.io as gio
'''


def test_galaxy_imports_finds_every_kind_of_import():
    tree = ast.parse(SOURCE)
    found = galaxy_imports(tree, "galaxy_core.explain.x", False,
                           {"errors", "bundle", "evaluation", "training", "io", "explain", "models"})
    assert found == {"errors", "bundle", "evaluation", "training", "explain", "io", "models"}


def test_wing_imports_reads_relative_and_absolute_imports():
    tree = ast.parse("from .store import x\nfrom galaxy_core.explain import gradcam\nimport galaxy_core.explain.overlay\n"
                     "from galaxy_core.models import network\n")
    assert wing_imports(tree, "galaxy_core.explain.one_image", False, "explain",
                        {"store", "gradcam", "overlay", "saliency"}) == {"store", "gradcam", "overlay"}


@pytest.mark.parametrize("graph, expected", [
    ({"bundle": {"training"}, "training": set()}, "galaxy_core.bundle (layer 9: bundle) imports galaxy_core.training"),
    ({"models": {"explain"}}, "galaxy_core.models (layer 6: models) imports galaxy_core.explain, a higher"),
    ({"shiny_new": {"errors"}}, "galaxy_core.shiny_new is in no layer: add it to LAYERS in tests/test_layers.py"),
])
def test_layer_violations_are_reported(graph, expected):
    problems = layer_violations(graph)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_wing_violations_name_the_folder_table():
    problems = layer_violations({"crop": {"cache"}}, WING_ORDER["preprocessing"], "galaxy_core.preprocessing", FACADES)
    assert problems == [problems[0]] and problems[0].startswith("galaxy_core.preprocessing.crop (layer 0: crop) imports")
    problems = layer_violations({"new": set()}, WING_ORDER["models"], "galaxy_core.models", FACADES)
    assert 'WING_ORDER["models"]' in problems[0]


def test_find_cycle_reports_a_same_layer_cycle():
    assert find_cycle({"training": {"runs"}, "runs": {"training"}}) == ["runs", "training", "runs"]
    assert find_cycle({"training": {"runs"}, "runs": {"errors"}, "errors": set()}) is None
    assert layer_violations({"training": {"runs"}, "runs": {"training"}}) == []  # hence find_cycle
