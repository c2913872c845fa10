"""Benchmark: the app on a big bundle (the rehearsal's DenseNet201, 256 px), in a real browser.

Starts `streamlit run streamlit_app.py --server.headless true` on 127.0.0.1 with `GALAXY_RUNS_DIR`
at `--runs` (default: the rehearsal's, /tmp/rehearsal/runs), drives Debian's chromium with
Playwright and measures:

- server start (until /_stcore/health answers) and the first page (Overview drawn);
- Classify: first upload (includes loading the model once per server), a second and a third upload
  (model loaded: the goal is <= 2 s from upload to the shown class);
- Grad-CAM switched on for an upload (on demand, TensorFlow gradients);
- the server's RSS after one session and after a second browser session classified too;
- saliency of one image on the bundle's model, timed in this process (the maps the Explain errors
  view computes on demand for images outside explanations.h5).

Usage:
    python bench/bench_app_bundle.py [--runs /tmp/rehearsal/runs]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
CHROMIUM = "/usr/bin/chromium"


def rss_mb(pid: int) -> float:
    """RSS of a process and its children, in MB."""
    total = 0.0
    pids = [pid]
    try:
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            total += int(Path(f"/proc/{p}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024
        except (OSError, IndexError):
            pass
    return total


def wait_idle(page, timeout_ms=600_000):
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                           timeout=timeout_ms)


def upload_and_time(page, path: Path) -> float:
    """Seconds from choosing the file to its predicted class on the page (its own result line)."""
    start = time.perf_counter()
    page.get_by_role("region", name="Galaxy images").locator('input[type="file"]').set_input_files(str(path))
    page.get_by_text(re.compile(re.escape(path.name) + r" — predicted .+ with [\d.]+% confidence")).first.wait_for(
        timeout=600_000)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="/tmp/rehearsal/runs")
    args = parser.parse_args(argv)

    import cv2
    import numpy as np
    from playwright.sync_api import sync_playwright

    from galaxy_core.synthetic import render_galaxy

    folder = Path(tempfile.mkdtemp(prefix="bench_app_bundle_"))
    uploads = []
    for i in range(4):
        path = folder / f"galaxy{i}.png"
        image = render_galaxy(i + 2, 256, np.random.default_rng(i))
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        uploads.append(path)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GALAXY_RUNS_DIR": args.runs}
    log = open(folder / "streamlit.log", "w")
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py",
                               "--server.port", str(port), "--server.address", "127.0.0.1",
                               "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    figures = {}
    try:
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.perf_counter() - start > 180:
                    raise RuntimeError("streamlit did not start")
                time.sleep(0.3)
        figures["server start (health) s"] = time.perf_counter() - start
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox",
                                                                        "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            start = time.perf_counter()
            page.goto(url, wait_until="domcontentloaded")
            page.locator("h1", has_text="Overview").first.wait_for(timeout=600_000)
            wait_idle(page)
            figures["first page (Overview drawn) s"] = time.perf_counter() - start
            figures["server RSS after first page MB"] = rss_mb(server.pid)

            start = time.perf_counter()
            page.locator('[data-testid="stSidebarNavLink"]', has_text="Classify").first.click()
            page.get_by_text("Upload one or more images").first.wait_for(timeout=600_000)
            wait_idle(page)
            figures["open Classify s"] = time.perf_counter() - start
            figures["first classify (incl. model load) s"] = upload_and_time(page, uploads[0])
            wait_idle(page)
            figures["server RSS after first classify MB"] = rss_mb(server.pid)
            figures["second classify s"] = upload_and_time(page, uploads[1])
            wait_idle(page)
            figures["third classify s"] = upload_and_time(page, uploads[2])
            wait_idle(page)

            start = time.perf_counter()
            page.get_by_text("Grad-CAM overlay").first.click()
            page.get_by_text(re.compile(r"^Grad-CAM: ")).first.wait_for(timeout=600_000)
            wait_idle(page)
            figures["Grad-CAM on demand s"] = time.perf_counter() - start
            page.screenshot(path=str(folder / "classify.png"), full_page=True)

            second = browser.new_context().new_page()
            start = time.perf_counter()
            second.goto(url + "/classify", wait_until="domcontentloaded")
            second.get_by_text("Upload one or more images").first.wait_for(timeout=600_000)
            wait_idle(second)
            figures["session 2: open Classify s"] = time.perf_counter() - start
            figures["session 2: classify s"] = upload_and_time(second, uploads[3])
            wait_idle(second)
            figures["server RSS with two sessions MB"] = rss_mb(server.pid)
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()

    # Saliency on demand (what the Explain errors view computes for an image outside explanations.h5).
    from galaxy_core import explain
    from galaxy_core.bundle.read import list_bundles
    from galaxy_core.inference.probabilities import to_model_input as rescale

    entry = next(e for e in list_bundles(args.runs) if e.ok)
    model = entry.bundle.load_model()
    x = rescale(entry.bundle.read_test_images([0]))
    for name, fn in (("saliency", explain.saliency_map), ("Grad-CAM", explain.gradcam_map)):
        fn(model, x, np.array([0]))  # first call builds the gradient graph
        start = time.perf_counter()
        fn(model, x, np.array([0]))
        figures[f"{name} map, one image, warm (core) s"] = time.perf_counter() - start

    print(f"bundle: {entry.path}; screenshots/log in {folder}")
    for key, value in figures.items():
        print(f"{key:<45} {value:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
