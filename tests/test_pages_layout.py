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
