"""Real-browser end-to-end test of the Streamlit explorer (Debian's chromium driven by Playwright).

Starts `streamlit run streamlit_app.py` on a free local port with `GALAXY_RUNS_DIR` at the tiny
bundle of `test_app.py`, opens every view, uploads an image in Classify and checks that a class name
comes back. Screenshots go to `./artifacts/` (gitignored).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from test_app import ROOT, png_bytes, shared_rich_runs, shared_tiny_runs

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# (navigation label, text that shows the view has finished drawing, screenshot name)
VIEWS = [
    ("Overview", "Class distribution", "01_overview"),
    ("Preprocessing lab", "Train with these parameters", "02_preprocessing_lab"),
    ("Classify", "Upload one or more images", "03_classify"),
    ("Confusion matrix", "Classification report", "05_confusion_matrix"),
    ("Explain errors", "Faithfulness (Petsiuk", "06_explain_errors"),
    # the tiny bundle has one run and none of issue 13's optional members: each view says so
    ("Compare runs", "at least 2 valid runs", "08_compare_runs_one_run"),
    ("Embedding map", "Compute the features and the map", "09_embedding_map_no_features"),
    ("Calibration", "predates temperature scaling", "10_calibration_no_temperature"),
    ("Galaxy properties", "keeps no sky columns", "11_galaxy_properties_no_sky"),
    ("Get started", "Offline demo run", "07_get_started"),
]
# The same views over two bundles holding every optional member (test_app.shared_rich_runs).
RICH_VIEWS = [
    ("Compare runs", "right, full-", "12_compare_runs"),
    ("Embedding map", "look-alikes share its true class", "13_embedding_map"),
    ("Calibration", "Temperature scaling", "14_calibration"),
    ("Galaxy properties", "Misclassified galaxies", "15_galaxy_properties"),
]

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout:.0f} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A Streamlit server on 127.0.0.1 serving the app over the tiny bundle; yields its URL."""
    yield from serve(shared_tiny_runs(tmp_path_factory), tmp_path_factory)


@pytest.fixture(scope="module")
def rich_server(tmp_path_factory):
    """The app over two tiny bundles with sky columns, features, map and temperature."""
    yield from serve(shared_rich_runs(tmp_path_factory), tmp_path_factory)


def serve(runs, tmp_path_factory):
    """Run `streamlit run streamlit_app.py` over the runs folder `runs`; yield its URL, then stop it."""
    port = free_port()
    env = {**os.environ, "GALAXY_RUNS_DIR": str(runs), "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def settle(page, text: str, timeout_ms: int = 120_000) -> None:
    """Wait until `text` is on the page and the script run has finished."""
    page.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=timeout_ms)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms)
    page.wait_for_function(  # every image loaded (st.image is served as a separate media file)
        "() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)",
        timeout=timeout_ms)
    page.wait_for_function(  # lazily loaded elements (charts, tables) replaced their placeholders
        "() => !document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=timeout_ms)
    page.wait_for_function(  # every plotly chart drawn (they render after the script run ends)
        "() => Array.from(document.querySelectorAll('[data-testid=\"stPlotlyChart\"]'))"
        ".every(c => c.querySelector('.main-svg'))", timeout=timeout_ms)
    page.wait_for_timeout(500)  # let charts paint before the screenshot


def open_view(page, label: str, text: str) -> None:
    page.locator('[data-testid="stSidebarNavLink"]', has_text=label).first.click()
    page.locator("h1", has_text=label if label != "Get started" else "Galaxy10 explorer").first.wait_for(
        timeout=60_000)
    settle(page, text)


def assert_no_exception(page, view: str) -> None:
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, f"{view}: {errors.first.inner_text()}"


def test_every_view_in_a_real_browser(server, browser, tmp_path):
    from galaxy_core import synthetic
    from galaxy_core.config import CLASS_NAMES

    ARTIFACTS.mkdir(exist_ok=True)
    upload = tmp_path / "galaxy.png"
    upload.write_bytes(png_bytes(synthetic.render_galaxy(2, 200, np.random.default_rng(5))))

    page = browser.new_page(viewport={"width": 1440, "height": 1500})
    page.goto(server, wait_until="domcontentloaded")
    page.locator("h1", has_text="Overview: tiny-synthetic").wait_for(timeout=90_000)
    for label, text, name in VIEWS:
        if label != "Overview":
            open_view(page, label, text)
        else:
            settle(page, text)
        banner = page.get_by_text("Synthetic run.").count()
        assert banner == 0 if label == "Get started" else banner == 1, (label, banner)
        assert_no_exception(page, label)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

        if label == "Classify":
            images = page.get_by_role("region", name="Galaxy images")
            images.locator('input[type="file"]').set_input_files(str(upload))
            result = page.get_by_text(re.compile(r"predicted .+ with [\d.]+% confidence")).first
            result.wait_for(timeout=120_000)
            settle(page, "All results")
            assert_no_exception(page, "Classify after upload")
            found = re.search(r"predicted (.+) with ([\d.]+)% confidence", result.inner_text())
            assert found and found.group(1).strip() in CLASS_NAMES, result.inner_text()
            assert 0.0 < float(found.group(2)) <= 100.0
            page.screenshot(path=str(ARTIFACTS / "04_classify_upload.png"), full_page=True)
    page.close()



def lasso(page, area) -> None:
    """Draw a lasso around the upper-left quarter of a Plotly plot area (its drag layer)."""
    box = area.bounding_box()
    x0, y0 = box["x"] + 4, box["y"] + 4
    x1, y1 = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x0, y0)
    page.mouse.down()
    for x, y in ((x1, y0), (x1, y1), (x0, y1), (x0, y0 + 2)):
        page.mouse.move(x, y, steps=8)
    page.mouse.up()


def test_the_views_of_several_runs_and_optional_members_in_a_real_browser(rich_server, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1440, "height": 1500})
    page.goto(rich_server, wait_until="domcontentloaded")
    page.locator("h1", has_text="Overview: full-").wait_for(timeout=90_000)
    settle(page, "Class distribution")
    for label, text, name in RICH_VIEWS:
        open_view(page, label, text)
        assert page.get_by_text("Synthetic run.").count() == 1, label
        assert_no_exception(page, label)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        if label == "Embedding map":  # a Plotly selection event reaches the app
            lasso(page, page.locator('[data-testid="stPlotlyChart"] .nsewdrag').first)
            page.get_by_text("selected test image(s)").first.wait_for(timeout=60_000)
            settle(page, "look-alikes share its true class")
            assert_no_exception(page, "Embedding map after a selection")
            page.screenshot(path=str(ARTIFACTS / "13b_embedding_map_selected.png"), full_page=True)
        if label == "Galaxy properties":
            links = page.locator('a[href^="https://www.legacysurvey.org/viewer?ra="]')
            assert links.count() == 0  # synthetic positions: no sky-viewer links (AppTest covers real runs)
    page.close()


# --- issue 25: nothing a bundle or an upload supplies is rendered as Markdown or HTML ------------------
@pytest.fixture(scope="module")
def beacon():
    """A tiny HTTP server on 127.0.0.1 counting the requests it gets (a planted image's URL points here)."""
    import http.server
    import threading

    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server name
            hits.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory, beacon):
    """The app over a valid bundle with a Markdown folder name and Markdown/HTML class names, and an
    invalid one whose config.json key is a Markdown image of the beacon (quoted in its error)."""
    from test_app import HOSTILE_NAME, build_tiny_bundle, plant_invalid_bundle

    from galaxy_core.config import CLASS_NAMES

    url, _ = beacon
    runs = tmp_path_factory.mktemp("hostile-runs")
    classes = (f"![c]({url}/class-markdown.png)", f"<img src={url}/class-html.png> **b**",
               f'<a href="{url}/class-link">a link</a>') + CLASS_NAMES[3:]
    good = build_tiny_bundle(runs, name=HOSTILE_NAME, class_names=classes, per_class=1)
    plant_invalid_bundle(good, runs, "[x](javascript:alert(2)) **broken**", f"![b]({url}/config-key.png)")
    yield from serve(runs, tmp_path_factory)


def assert_inert(page, beacon_url: str, where: str) -> None:
    """No planted link or image in the DOM, no bold text made from a planted name."""
    # A Markdown link, or an HTML one drawn by Plotly (an SVG <a xlink:href>: any namespace).
    links = page.locator(f'a[href^="javascript:"], [*|href^="{beacon_url}"]')
    assert links.count() == 0, (where, links.first.evaluate("e => e.outerHTML.slice(0, 300) + ' IN ' + e.parentElement.outerHTML.slice(0, 600)"))
    images = page.locator(f'img[src^="{beacon_url}"]')
    assert images.count() == 0, (where, images.first.get_attribute("src"))
    for bold in ("bold", "broken", "up", "b"):
        assert page.locator("strong", has_text=re.compile(rf"^{bold}$")).count() == 0, (where, bold)


def test_bundle_and_upload_names_are_shown_as_text_in_a_real_browser(hostile_server, browser, beacon, tmp_path):
    from galaxy_core import synthetic

    from test_app import HOSTILE_NAME

    url, hits = beacon
    page = browser.new_page(viewport={"width": 1440, "height": 1500})
    page.goto(hostile_server, wait_until="domcontentloaded")
    page.locator("h1", has_text="Overview:").wait_for(timeout=90_000)
    settle(page, "Class distribution")
    assert HOSTILE_NAME in page.locator("h1").first.inner_text()  # the name, as its characters
    page.get_by_text("1 invalid run(s)").first.click()  # the sidebar's list of invalid runs
    page.get_by_text("Unknown config field").first.wait_for(timeout=30_000)
    sidebar = page.locator('[data-testid="stSidebar"]').inner_text().replace("\u200b", "")
    assert f"![b]({url}/config-key.png)" in sidebar
    assert_inert(page, url, "Overview and sidebar")

    upload = tmp_path / "[u](javascript:alert(3)) **up**.png"
    upload.write_bytes(png_bytes(synthetic.render_galaxy(2, 200, np.random.default_rng(5))))
    for label, text in (("Classify", "Upload one or more images"), ("Preprocessing lab", "Train with these"),
                        ("Confusion matrix", "Classification report"), ("Explain errors", "Faithfulness (Petsiuk")):
        open_view(page, label, text)
        assert_no_exception(page, label)
        if label == "Classify":
            images = page.get_by_role("region", name="Galaxy images")
            images.locator('input[type="file"]').set_input_files(str(upload))
            page.get_by_text(re.compile(r"predicted .+ with [\d.]+% confidence")).first.wait_for(timeout=120_000)
            settle(page, "All results")
            assert_no_exception(page, "Classify after upload")
            shown = page.get_by_text(re.compile("predicted")).first.inner_text().replace("\u200b", "")
            assert "[u](javascript:alert(3)) **up**.png" in shown
        assert_inert(page, url, label)
    page.screenshot(path=str(ARTIFACTS / "16_hostile_names.png"), full_page=True)
    page.close()
    assert hits == [], hits  # no request reached the beacon


def test_the_catalog_view_in_a_real_browser(server, browser, tmp_path_factory):
    from test_app_catalog import shared_catalogues

    folder = shared_catalogues(tmp_path_factory)["hdf5"]
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1440, "height": 1500})
    page.goto(server, wait_until="domcontentloaded")
    page.locator("h1", has_text="Overview: tiny-synthetic").wait_for(timeout=90_000)
    open_view(page, "Catalog", "Type the path of a catalogue folder")
    box = page.get_by_label("Catalogue folder")
    box.fill(str(folder))
    box.press("Enter")
    settle(page, "rows pass the filters")
    assert_no_exception(page, "Catalog")
    assert page.get_by_text("Synthetic run.").count() == 1
    assert page.get_by_text("30 of 30 rows").count() == 1
    assert page.locator('[data-testid="stPlotlyChart"]').count() == 3
    assert page.locator('[data-testid="stImage"]').count() > 0  # the gallery, read from the HDF5 rows
    page.screenshot(path=str(ARTIFACTS / "16_catalog.png"), full_page=True)


# --- a run on your own labels: 3 classes from a class folder, no sky positions (issue 27) ---------
LABELLED_VIEWS = [
    ("Overview", "Trained on labelled images from", "16_labelled_overview"),
    ("Confusion matrix", "Classification report", "17_labelled_confusion_matrix"),
    ("Explain errors", "Explain errors", "18_labelled_explain_errors"),
    ("Calibration", "Calibration", "19_labelled_calibration"),
    ("Galaxy properties", "has no sky positions", "20_labelled_galaxy_properties"),
    ("Classify", "Upload one or more images", "21_labelled_classify"),
]


@pytest.fixture(scope="module")
def labelled_server(labelled_run, tmp_path_factory):
    """The app over a copy of the 3-class run (Classify exports ONNX into the bundle)."""
    import shutil

    runs = tmp_path_factory.mktemp("labelled-runs")
    shutil.copytree(labelled_run, runs / labelled_run.name)
    yield from serve(runs, tmp_path_factory)


def test_a_three_class_run_on_labelled_images_in_a_real_browser(labelled_server, labelled_run, browser, tmp_path):
    from galaxy_core.bundle.read import load_bundle
    from galaxy_core.synthetic import render_galaxy

    names = load_bundle(labelled_run).config.class_names
    upload = tmp_path / "ring.png"
    upload.write_bytes(png_bytes(render_galaxy(2, 64, np.random.default_rng(5))))
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1440, "height": 1500})
    page.goto(labelled_server, wait_until="domcontentloaded")
    page.locator("h1", has_text=f"Overview: {labelled_run.name}").wait_for(timeout=90_000)
    for label, text, name in LABELLED_VIEWS:
        if label != "Overview":
            open_view(page, label, text)
        else:
            settle(page, text)
        assert_no_exception(page, label)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    page.get_by_role("region", name="Galaxy images").locator('input[type="file"]').set_input_files(str(upload))
    result = page.get_by_text(re.compile(r"predicted .+ with [\d.]+% confidence")).first
    result.wait_for(timeout=180_000)
    settle(page, "All results")
    assert_no_exception(page, "Classify after upload")
    found = re.search(r"predicted (.+) with ([\d.]+)% confidence", result.inner_text())
    assert found and found.group(1).strip() in names, result.inner_text()
    page.screenshot(path=str(ARTIFACTS / "22_labelled_classify_upload.png"), full_page=True)
    page.close()
