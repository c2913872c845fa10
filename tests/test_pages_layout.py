"""The app's layout: views in pages/views/, helpers in pages/lib/, nothing Streamlit could take for a page."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_python_file_sits_directly_in_pages():
    # Streamlit's legacy discovery makes every top-level pages/*.py (but __init__.py and dot files)
    # a page, underscore names included; files in subfolders never are.
    assert [p.name for p in (ROOT / "pages").glob("*.py") if p.name != "__init__.py"] == []


def test_the_router_lists_every_view_and_only_views():
    router = (ROOT / "streamlit_app.py").read_text()
    listed = set(re.findall(r'st\.Page\("(pages/[^"]+)"', router))
    assert listed == {f"pages/views/{p.name}" for p in (ROOT / "pages" / "views").glob("*.py")}


def test_galaxy_core_holds_no_display_code():
    for path in (ROOT / "galaxy_core").rglob("*.py"):
        text = path.read_text()
        for package in ("streamlit", "plotly", "pandas"):
            assert not re.search(rf"^\s*(import|from) {package}\b", text, re.M), (path, package)


# The app's own order, lowest first: pages/lib in layers, then pages/views, then the router. A module
# may import its own layer or a lower one (galaxy_core is below all of them; test_layers keeps it so).
APP_LAYERS: tuple[tuple[str, ...], ...] = (
    ("lib.captions", "lib.tables", "lib.jobs", "lib.lab", "lib.saliency", "lib.catalog"),
    ("lib.state", "lib.figures"),
    ("lib.compare", "lib.explanations", "lib.uploads", "lib.widgets"),
    ("lib.embedding",),
    ("views",),
    ("streamlit_app",),
)


def _app_unit(path: Path) -> str:
    if path.name == "streamlit_app.py":
        return "streamlit_app"
    rel = path.relative_to(ROOT / "pages").with_suffix("").parts
    return "views" if rel[0] == "views" else ".".join(rel)


def _app_imports(path: Path) -> set[str]:
    """The app units (see APP_LAYERS) a file imports, from `import pages.x.y` or `from pages.x import y`."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] != "pages" or len(parts) < 3:
                continue
            unit = "views" if parts[1] == "views" else ".".join(parts[1:3])
            if (ROOT / "pages" / parts[1] / f"{parts[2]}.py").exists():
                found.add(unit)
    return found


def test_the_app_imports_point_down():
    rank = {name: r for r, names in enumerate(APP_LAYERS) for name in names}
    files = [ROOT / "streamlit_app.py", *sorted((ROOT / "pages").rglob("*.py"))]
    problems = []
    for path in files:
        if path.name == "__init__.py":
            continue
        unit = _app_unit(path)
        if unit not in rank:
            problems.append(f"{path.relative_to(ROOT)} is in no layer: add '{unit}' to APP_LAYERS")
            continue
        for target in sorted(_app_imports(path) - {unit}):
            if rank.get(target, -1) > rank[unit]:
                problems.append(f"{path.relative_to(ROOT)} ({unit}, layer {rank[unit]}) imports {target} "
                                f"(layer {rank[target]}): views -> lib, never back; move the shared code down")
    assert not problems, "\n".join(problems)
