"""Benchmark: the catalogue on Dask (1 and 2 workers) vs the predict CLI, side by side in one run.

On the same synthetic cutout files (256 px PNGs of `galaxy_core.synthetic`, `--distinct` renders
written round-robin to `--rows` files: the decode and classification work is per file), with one
run bundle (the offline demo, `python train.py --demo`), for each size in `--sizes`:

- `python -m galaxy_core.predict --run RUN --format csv FOLDER` (one process; output to /dev/null);
- `python -m galaxy_core.catalog --run RUN --out OUT --workers 1 FOLDER`, then `--workers 2`.

Each command is timed whole (wall, from start to exit: imports, cluster start and staging
included), and its peak memory sampled every 0.1 s with psutil: the command's own process (the
driver) and, for the catalogue, its largest worker process. Images/s = rows / wall.

Then a projection for 10^8 cutouts with the default recipe (DenseNet201 at 256 px), from named
figures: the model's core-seconds per image (`--model-core-ms`, default the ONNX Runtime batch
figure of BENCHMARKS.md), decode + preprocessing at 256 px with the default Config (measured here,
one core) and the engine's overhead (measured here: catalogue 1 worker vs predict CLI).

Usage:
    python bench/bench_catalog.py --run runs/demo [--sizes 2000 20000] [--distinct 500] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# DenseNet201, 256 px, ONNX Runtime (export v2), batch 32: 12.6 images/s on 2 cores (BENCHMARKS.md,
# "Predict: ONNX Runtime vs Keras", lead, 2026-12-02, quiet 2-core VM) = 2 / 12.6 core-s per image.
DENSENET_CORE_MS = 2000 / 12.6
# The same model on an NVIDIA A100: 6.7 ms per batch of 32 at 224 px (Keras Applications table,
# an ASSUMED figure, not measured here), x (256/224)^2 for 256 px.
A100_MS_PER_IMAGE = 6.7 / 32 * (256 / 224) ** 2


def make_cutouts(folder: Path, rows: int, distinct: int, size: int = 256) -> None:
    """`rows` PNG files of `distinct` synthetic renders (round-robin), named c0000000.png, ..."""
    import cv2
    import numpy as np

    from galaxy_core.synthetic.dataset import generate_images

    folder.mkdir(parents=True, exist_ok=True)
    labels = np.arange(distinct) % 10
    encoded = [cv2.imencode(".png", image[..., ::-1])[1].tobytes()
               for image in generate_images(labels, size, seed=11)]
    for i in range(rows):
        (folder / f"c{i:07d}.png").write_bytes(encoded[i % distinct])


def measure(command: list[str], cwd: Path, stdout_path: Path | None = None) -> dict:
    """Run a command; its wall time and the peak RSS of it and of its largest child process."""
    import psutil

    started = time.perf_counter()
    sink = open(stdout_path, "w") if stdout_path else subprocess.DEVNULL
    proc = subprocess.Popen(command, cwd=cwd, stdout=sink, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    me = psutil.Process(proc.pid)
    driver = worker = 0
    while proc.poll() is None:
        try:
            driver = max(driver, me.memory_info().rss)
            for child in me.children(recursive=True):
                try:
                    if "resource_tracker" not in " ".join(child.cmdline()):
                        worker = max(worker, child.memory_info().rss)
                except psutil.Error:
                    continue
        except psutil.Error:
            pass
        time.sleep(0.1)
    err = proc.stderr.read()
    wall = time.perf_counter() - started
    if stdout_path:
        sink.close()
    return {"rc": proc.returncode, "wall": wall, "driver_mb": driver / 2**20, "worker_mb": worker / 2**20,
            "tail": err.strip().splitlines()[-2:]}


def preprocess_ms(folder: Path, n: int = 200) -> float:
    """Decode + preprocess one 256 px file with the default Config (DenseNet201's), ms, one process."""
    from galaxy_core.config import Config
    from galaxy_core.inference.classify import prepare_item

    cfg = Config()
    files = sorted(folder.iterdir())[:n]
    for path in files[:10]:
        prepare_item(str(path), cfg)
    start = time.process_time()
    for path in files:
        prepare_item(str(path), cfg)
    return (time.process_time() - start) / len(files) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="run bundle (the offline demo: python train.py --demo)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--distinct", type=int, default=500)
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--model-core-ms", type=float, default=DENSENET_CORE_MS,
                        help="DenseNet201 model core-ms per image for the projection")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_catalog_"))
    run = str(Path(args.run).resolve())
    py = sys.executable
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at start; run {run}")
    results = {}
    try:
        for rows in args.sizes:
            folder = work / f"cutouts_{rows}"
            started = time.perf_counter()
            make_cutouts(folder, rows, args.distinct)
            print(f"\n{rows} cutout files written in {time.perf_counter() - started:.0f} s ({folder})")
            commands = {
                "predict CLI": [py, "-m", "galaxy_core.predict", "--run", run, "--format", "csv", str(folder)],
                "catalogue, 1 worker": [py, "-m", "galaxy_core.catalog", "--run", run, "--out",
                                        str(work / f"out1_{rows}"), "--workers", "1", str(folder)],
                "catalogue, 2 workers": [py, "-m", "galaxy_core.catalog", "--run", run, "--out",
                                         str(work / f"out2_{rows}"), "--workers", "2", str(folder)],
            }
            for name, command in commands.items():
                result = measure(command, work, work / "predict.csv" if name == "predict CLI" else None)
                results[(rows, name)] = result
                print(f"{name:22s} rc {result['rc']}  {result['wall']:7.1f} s  {rows / result['wall']:7.1f} img/s  "
                      f"driver {result['driver_mb']:6.0f} MB  worker {result['worker_mb']:6.0f} MB  "
                      f"load {os.getloadavg()[0]:.1f}  | {' / '.join(result['tail'])}")
            print(f"  max |p_catalogue - p_predict| over the {rows} rows: {max_difference(work, rows):.2e}")
            base = results[(rows, "predict CLI")]["wall"]
            for name in ("catalogue, 1 worker", "catalogue, 2 workers"):
                print(f"  {name}: {base / results[(rows, name)]['wall']:.2f}x the predict CLI's images/s")
            shutil.rmtree(folder)
        overhead = marginal(results, sorted(args.sizes))
        prep = preprocess_ms_of(work, args.distinct)
        project(prep, overhead, args.model_core_ms)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def marginal(results: dict, sizes: list[int]) -> float:
    """Per configuration, wall = fixed + per_image x rows fitted on the two sizes; returns the engine's
    per-image cost at 1 worker over the predict CLI's (1.0 when only one size was run)."""
    if len(sizes) < 2:
        return 1.0
    small, large = sizes[0], sizes[-1]
    per_image = {}
    print(f"\nper image (from {small} to {large} rows) and fixed cost (start-up: imports, cluster, staging):")
    for name in ("predict CLI", "catalogue, 1 worker", "catalogue, 2 workers"):
        slope = (results[(large, name)]["wall"] - results[(small, name)]["wall"]) / (large - small)
        fixed = results[(large, name)]["wall"] - slope * large
        per_image[name] = slope
        print(f"  {name:22s} {slope * 1000:6.2f} ms/image ({1 / slope:6.1f} img/s)  fixed {fixed:5.1f} s")
    base = per_image["predict CLI"]
    for name in ("catalogue, 1 worker", "catalogue, 2 workers"):
        print(f"  {name}: per-image images/s {base / per_image[name]:.2f}x the predict CLI's")
    return per_image["catalogue, 1 worker"] / base


def max_difference(work: Path, rows: int) -> float:
    """The largest difference between the catalogue's (2 workers) and the predict CLI's probabilities."""
    import csv

    import numpy as np
    import pyarrow.dataset as ds

    with open(work / "predict.csv", newline="") as f:
        table = [r for r in csv.DictReader(f) if not r["file"].startswith("WARNING")]
    names = [k for k in table[0] if k.startswith("p(")]
    expected = np.array([[float(r[k]) for k in names] for r in table])
    out = ds.dataset(work / f"out2_{rows}", format="parquet").to_table()
    order = np.argsort(out.column("row").to_numpy())
    got = np.stack([out.column(c).to_numpy()[order] for c in out.column_names if c.startswith("p_")], axis=1)
    return float(np.abs(got - expected).max())  # predict's CSV has 6 decimals: ~5e-7 is agreement


def preprocess_ms_of(work: Path, distinct: int) -> float:
    folder = work / "prep"
    make_cutouts(folder, min(distinct, 200), distinct)
    return preprocess_ms(folder)


def project(prep_ms: float, overhead: float, model_core_ms: float, n: float = 1e8) -> None:
    """Hours, core-hours and GPU-hours for n cutouts with DenseNet201 at 256 px, from named figures."""
    core_ms = (model_core_ms + prep_ms) * max(1.0, overhead)
    core_hours = n * core_ms / 1000 / 3600
    gpu_hours = n * A100_MS_PER_IMAGE / 1000 / 3600
    cpu_for_gpu = n * prep_ms * max(1.0, overhead) / 1000 / 3600
    print(f"\nprojection for {n:.0e} cutouts, DenseNet201 at 256 px:")
    print(f"  figures: model {model_core_ms:.1f} core-ms/image (BENCHMARKS.md, ONNX Runtime batch 32, 2-core VM); "
          f"decode + preprocess {prep_ms:.1f} core-ms/image (measured here, 256 px PNG, default Config); "
          f"engine overhead x{max(1.0, overhead):.2f} (catalogue 1 worker / predict CLI per image, measured here)")
    print(f"  CPU only: {core_ms:.1f} core-ms/image -> {core_hours:,.0f} core-hours; "
          f"{core_hours / 2:,.0f} h on this 2-core VM, {core_hours / 1000:,.1f} h on 1,000 cores")
    print(f"  GPU (A100, ASSUMED 6.7 ms per batch of 32 at 224 px, x1.31 for 256 px = {A100_MS_PER_IMAGE:.3f} ms/image): "
          f"{gpu_hours:,.1f} GPU-hours for the model, plus {cpu_for_gpu:,.0f} core-hours of decoding and "
          f"preprocessing on the workers' CPUs ({cpu_for_gpu / gpu_hours:,.0f} cores per GPU to keep it fed)")


if __name__ == "__main__":
    main()
