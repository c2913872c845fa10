"""Benchmark preprocessing: (a) CLAHE + opening throughput, (b) preprocessed-cache build time.

(a) 256x256 RGB images through `preprocess_batch` (CLAHE -> 3x3 opening, no resize), for both
    channel modes, in one process and in one process per core; plus plain OpenCV (per-channel
    CLAHE + opening, no checks) as a reference.
(b) `build_cache` of a full-size Galaxy10-format file (17,736 x 256 x 256 x 3). Without --dataset
    a SYNTHETIC file of random smooth blobs is written once to /tmp and reused (timing only: the
    pixels are not galaxies).

Targets (issue 2, on 2 cores): >= 1,500 images/s; full cache <= 60 s.

Usage:
    python bench/bench_preprocess.py                      # both parts, full size
    python bench/bench_preprocess.py --n 2000 --images 256   # quick run
    python bench/bench_preprocess.py --skip-cache --dataset data/Galaxy10_DECals.h5
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from galaxy_core.preprocessing import cache as pc  # noqa: E402
from galaxy_core.preprocessing import preprocess as pp  # noqa: E402
from galaxy_core.config import Config  # noqa: E402
from galaxy_core.errors import GalaxyError  # noqa: E402

FULL_N = 17_736
SIZE = 256


# --------------------------------------------------------------------------------------------
# synthetic images (random smooth blobs; timing only)
# --------------------------------------------------------------------------------------------
def blob_image(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """One SYNTHETIC 'galaxy': a tilted elliptical Gaussian blob, a few stars, sky noise: uint8 (size, size, 3)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    cx, cy = rng.normal(size / 2, size / 20, 2)
    angle = rng.uniform(0, np.pi)
    sx, sy = rng.uniform(size / 25, size / 6, 2)
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    light = rng.uniform(60, 200) * np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    image = 15.0 + light[..., None] * rng.uniform(0.6, 1.0, 3) + rng.normal(0, 4, (size, size, 3))
    for _ in range(rng.integers(2, 8)):  # foreground stars (1-2 px)
        y, x = rng.integers(0, size - 2, 2)
        image[y:y + rng.integers(1, 3), x:x + rng.integers(1, 3)] += rng.uniform(100, 200)
    return np.clip(image, 0, 255).astype(np.uint8)


def blob_bank(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([blob_image(rng) for _ in range(count)])


def write_blob_dataset(path: Path, n: int, seed: int = 0, chunk: int = 512,
                       compression: str | None = None) -> Path:
    """Write a SYNTHETIC Galaxy10-format file of n blob images (a bank of 128, rotated).

    `compression="gzip"` stores one HDF5 chunk per image, gzip level 4 (the published file is
    compressed too: 2.5 GB for 3.5 GB of pixels), so workers also pay for decompression.

    Written to a temporary name and renamed, so an interrupted run leaves no half file.
    """
    rng = np.random.default_rng(seed)
    bank = blob_bank(128, seed)
    tmp = path.with_name(path.name + ".part")
    print(f"writing SYNTHETIC benchmark file {path} ({n} x {SIZE}x{SIZE}x3, random blobs) ...",
          file=sys.stderr)
    with h5py.File(tmp, "w") as f:
        layout = {} if compression is None else {"chunks": (1, SIZE, SIZE, 3), "compression": compression}
        images = f.create_dataset("images", shape=(n, SIZE, SIZE, 3), dtype=np.uint8, **layout)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            block = bank[rng.integers(0, len(bank), stop - start)]
            images[start:stop] = np.rot90(block, k=start // chunk % 4, axes=(1, 2))
        f.create_dataset("ans", data=(np.arange(n) % 10).astype(np.uint8))
        f.create_dataset("ra", data=rng.uniform(0, 360, n))
        f.create_dataset("dec", data=rng.uniform(-20, 60, n))
        f.create_dataset("redshift", data=rng.uniform(0.01, 0.2, n))
        f.create_dataset("pxscale", data=np.full(n, 0.262))
        f.attrs["synthetic"] = True
        f.attrs["note"] = "SYNTHETIC random smooth blobs for bench_preprocess.py timing only"
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------------
# (a) throughput
# --------------------------------------------------------------------------------------------
def plain_opencv(images: np.ndarray) -> None:
    """Reference: per-channel CLAHE (2.0, 8x8) + 3x3 ellipse opening with bare OpenCV calls."""
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    for image in images:
        out = cv2.merge([clahe.apply(c) for c in cv2.split(image)])
        cv2.morphologyEx(out, cv2.MORPH_OPEN, kernel)


def run_method(method: str, images: np.ndarray) -> None:
    if method == "plain":
        plain_opencv(images)
    else:
        pp.preprocess_batch(images, Config(image_size=SIZE, channel_mode=method))


_bank: np.ndarray | None = None


def _worker_init(count: int) -> None:
    global _bank
    cv2.setNumThreads(1)
    _bank = blob_bank(count, seed=1)


def _worker_pass(method: str) -> tuple[int, float]:
    cpu = time.process_time()
    run_method(method, _bank)
    return len(_bank), time.process_time() - cpu


def time_single(method: str, images: np.ndarray, repeats: int) -> tuple[float, float]:
    """(images per second, CPU ms per image) in this process (OpenCV threads off); best pass."""
    run_method(method, images[:8])  # warm-up (CLAHE object, kernel, page faults)
    best, best_cpu = 0.0, float("inf")
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        run_method(method, images)
        best = max(best, len(images) / (time.perf_counter() - start))
        best_cpu = min(best_cpu, 1000 * (time.process_time() - cpu) / len(images))
    return best, best_cpu


def time_pool(pool, workers: int, method: str, repeats: int) -> tuple[float, float]:
    """(images per second, CPU ms per image) over `workers` processes, each processing its own
    bank; process startup excluded; best pass."""
    pool.map(_worker_pass, [method] * workers, chunksize=1)  # warm-up
    best, best_cpu = 0.0, float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        results = pool.map(_worker_pass, [method] * workers, chunksize=1)
        done, cpu = sum(r[0] for r in results), sum(r[1] for r in results)
        best = max(best, done / (time.perf_counter() - start))
        best_cpu = min(best_cpu, 1000 * cpu / done)
    return best, best_cpu


def bench_throughput(count: int, workers: int, repeats: int) -> list[tuple[str, int, float, float]]:
    cv2.setNumThreads(1)
    images = blob_bank(count, seed=1)
    rows = []
    methods = ["luminance", "per_channel", "plain"]
    for method in methods:
        rows.append((method, 1, *time_single(method, images, repeats)))
    if workers > 1:
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_worker_init, initargs=(count,)) as pool:
            for method in methods:
                rows.append((method, workers, *time_pool(pool, workers, method, repeats)))
    return rows


# --------------------------------------------------------------------------------------------
# (b) cache build
# --------------------------------------------------------------------------------------------
def bench_cache(dataset: Path, workers: int, keep: bool) -> dict:
    cfg = Config()  # the project defaults: 256 px, luminance CLAHE 2.0 / 8x8, 3x3 ellipse opening
    cache_dir = Path(tempfile.mkdtemp(prefix="galaxy10_bench_cache_", dir=tempfile.gettempdir()))
    try:
        start, cpu = time.perf_counter(), cpu_seconds()
        path = pc.build_cache(dataset, cfg, cache_dir=cache_dir, workers=workers, progress=True)
        build, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        start = time.perf_counter()
        again = pc.build_cache(dataset, cfg, cache_dir=cache_dir, workers=workers, progress=False)
        reuse = time.perf_counter() - start
        assert again == path
        cache = pc.open_cache(path)
        n = cache.n
        if keep:
            print(f"cache kept at {path}", file=sys.stderr)
    finally:
        if not keep:
            shutil.rmtree(cache_dir, ignore_errors=True)
    return {"n": n, "build_s": build, "reuse_s": reuse, "images_per_s": n / build,
            "cpu_ms": 1000 * cpu / n}


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished child processes."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


# --------------------------------------------------------------------------------------------
def machine_info() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"CPU: {cpu}; usable cores: {pc._usable_cores()}; load average (1, 5, 15 min): {load}\n"
            f"Python {platform.python_version()}, numpy {np.__version__}, OpenCV {cv2.__version__}, "
            f"h5py {h5py.__version__}, {platform.system()} {platform.release()}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512, help="images per pass in (a) (default 512)")
    parser.add_argument("--repeats", type=int, default=3, help="passes in (a); the best is reported")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--dataset", type=Path, default=None,
                        help="Galaxy10-format file for (b) (default: a SYNTHETIC file in /tmp, made once)")
    parser.add_argument("--n", type=int, default=FULL_N, help=f"images in the SYNTHETIC file (default {FULL_N})")
    parser.add_argument("--compression", choices=("none", "gzip"), default="none",
                        help="HDF5 compression of the SYNTHETIC file (default none)")
    parser.add_argument("--keep-cache", action="store_true", help="keep the cache built in (b)")
    parser.add_argument("--skip-throughput", action="store_true", help="skip (a)")
    parser.add_argument("--skip-cache", action="store_true", help="skip (b)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    workers = args.workers or pc._usable_cores()
    try:
        if args.images < 1 or args.repeats < 1 or args.n < 1 or workers < 1:
            raise GalaxyError("--images, --repeats, --n and --workers must be >= 1")
        print(machine_info())
        if not args.skip_throughput:
            rows = bench_throughput(args.images, workers, args.repeats)
            print(f"\n(a) CLAHE (2.0, 8x8) + 3x3 ellipse opening, {SIZE}x{SIZE} RGB, {args.images} images "
                  f"per process per pass, best of {args.repeats}")
            print("  wall: measured images/s; CPU ms: CPU time per image (less sensitive to other load);\n"
                  f"  est. {workers} idle cores = {workers} * 1000 / CPU ms (an estimate, not a measurement)")
            print(f"{'method':<14}{'processes':>10}{'images/s':>10}{'CPU ms/img':>12}"
                  f"{f'est. {workers} idle cores':>22}")
            for method, procs, rate, cpu_ms in rows:
                print(f"{method:<14}{procs:>10}{rate:>10.0f}{cpu_ms:>12.2f}{workers * 1000 / cpu_ms:>22.0f}")
        if not args.skip_cache:
            dataset = args.dataset
            if dataset is None:
                suffix = "" if args.compression == "none" else f"_{args.compression}"
                dataset = Path(tempfile.gettempdir()) / f"galaxy10_bench_synthetic_{args.n}{suffix}.h5"
                if not dataset.exists():
                    write_blob_dataset(dataset, args.n,
                                       compression=None if args.compression == "none" else args.compression)
                label = f"{dataset} (SYNTHETIC random blobs, {args.compression})"
            else:
                label = str(dataset)
            result = bench_cache(dataset, workers, args.keep_cache)
            print(f"\n(b) build_cache, project defaults (luminance CLAHE), {workers} workers, {label}")
            print(f"{'images':>8}{'build s':>10}{'images/s':>10}{'CPU ms/img':>12}{'reuse s':>10}")
            print(f"{result['n']:>8}{result['build_s']:>10.1f}{result['images_per_s']:>10.0f}"
                  f"{result['cpu_ms']:>12.2f}{result['reuse_s']:>10.3f}")
        print("\n" + machine_info().splitlines()[0].split("; ", 2)[2] + " (at the end)")
    except GalaxyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
