"""Benchmark: server time of a Preprocessing-lab slider change (target <= 150 ms at 256x256).

Two measurements:
1. `apptest`: a full script rerun of the app (router + sidebar + the lab view) after a slider change,
   timed around `AppTest.run()` (streamlit.testing.v1). This includes AppTest's own overhead
   (building the element tree from the protobuf messages), so it is an upper bound of the server
   time of a real session; no browser, no network.
2. `core`: only the lab's computations for one change: the three stages of the chosen image,
   the histogram figure serialised to JSON, and the ten per-class images.

Runs with no run bundle (an empty `GALAXY_RUNS_DIR`), so the lab uses `Config()`'s 256x256 size and
generated (synthetic) galaxies.

Usage:
    python bench/bench_app.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLIP_VALUES = (1.0, 2.5, 4.0, 6.0, 8.0)


def summary(times_ms: list[float]) -> str:
    times = sorted(times_ms)
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    return (f"median {statistics.median(times):6.1f} ms   p90 {p90:6.1f} ms   "
            f"min {times[0]:6.1f} ms   max {times[-1]:6.1f} ms   (n={len(times)})")


def bench_apptest(repeats: int) -> list[float]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120).run()
    at.switch_page("pages/views/preprocessing_lab.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Preprocessing lab"
    times = []
    for i in range(repeats + 2):
        at.slider(key="lab_clahe_clip_limit").set_value(CLIP_VALUES[i % len(CLIP_VALUES)])
        start = time.perf_counter()
        at.run()
        elapsed = (time.perf_counter() - start) * 1000.0
        assert not at.exception, at.exception
        if i >= 2:  # the first reruns warm caches (generated samples, OpenCV CLAHE objects)
            times.append(elapsed)
    return times


def bench_core(repeats: int) -> list[float]:
    import numpy as np

    from galaxy_core import synthetic
    from galaxy_core.config import Config
    from galaxy_core.preprocessing.preprocess import preprocess_stages
    from pages.lib.figures import histogram_figure
    from pages.lib.lab import preprocess_thumbnails

    base = Config()
    size = base.image_size
    image = synthetic.render_galaxy(0, size, np.random.default_rng(0))
    samples = [synthetic.render_galaxy(c, size, np.random.default_rng(0)) for c in range(base.num_classes)]
    times = []
    for i in range(repeats + 2):
        cfg = base.replace(clahe_clip_limit=CLIP_VALUES[i % len(CLIP_VALUES)])
        start = time.perf_counter()
        stages = preprocess_stages(image, cfg)
        histogram_figure(stages).to_json()
        preprocess_thumbnails(samples, cfg, 160)
        elapsed = (time.perf_counter() - start) * 1000.0
        if i >= 2:
            times.append(elapsed)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed slider changes per measurement")
    args = parser.parse_args()
    os.environ["GALAXY_RUNS_DIR"] = tempfile.mkdtemp(prefix="bench-app-runs-")  # no run: Config() defaults
    print(f"machine: {os.cpu_count()} CPU(s) visible, load average {os.getloadavg()[0]:.1f}")
    from galaxy_core.config import Config

    size = Config().image_size
    print(f"Preprocessing lab, {size}x{size} image, one slider change (clip limit):")
    print(f"  core     {summary(bench_core(args.repeats))}")
    print(f"  apptest  {summary(bench_apptest(args.repeats))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
