"""Full-size rehearsal of the default recipe (`python train.py`) at Galaxy10's real shapes, bounded.

Data: a SYNTHETIC Galaxy10-format file of 17,736 images at 256x256 in the real class counts. To
make it in minutes on 2 cores, `--unique` galaxies per class are rendered with
`galaxy_core.synthetic.generate_images` and tiled with the 8 rotations/flips (the file says so in
its `note` attribute); the render rate is timed so the time of a full
`python -m galaxy_core.synthetic --n 17736` can be projected. Shapes, counts, file size and the
cache are those of the real dataset; the images' variety is not (no accuracy is measured here).

Run: `train.py` with the default preset (DenseNet201, 256 px, Flatten head, batch 32) and
`--weights none`, bounded by `--epochs`, `--steps-per-epoch`, `--max-eval-images` and small
explanation counts. After epoch `--interrupt-after` is checkpointed the process gets SIGINT (Ctrl-C);
then `--resume` finishes it: evaluation with TTA, explanations, bundle. Finally `model.onnx` is
exported into the bundle (`galaxy_core.models.onnx_export`).

Measured: peak RSS of each phase (the child's RSS sampled every 0.25 s, the phase read from its log
lines), disk used (cache, work folder at the interrupt, bundle members), epoch and step times from
`history.csv`. Everything lives under `--root` (default /tmp/rehearsal), never in the repository.

Usage:
    nice -n 10 python bench/bench_recipe.py [--root /tmp/rehearsal] [--epochs 3] [--steps-per-epoch 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

N_IMAGES = 17_736
# (marker at the start of a log line, phase that starts there), in the order train_run logs them.
PHASES = (("data:", "data: split, class weights, preprocessed cache"),
          ("devices:", "model build + compile (or checkpoint load)"),
          ("model:", "fit: graph build, steps, validation, checkpoints"),
          ("training done", "evaluation: test plain + TTA, validation"),
          ("explanations:", "explanations + bundle write"),
          ("bundle written", "done"))


def make_rehearsal_file(path: Path, unique: int, seed: int = 0, n: int = N_IMAGES) -> dict:
    """Write the n-image (17,736: real class counts) SYNTHETIC file by tiling rendered galaxies."""
    import h5py
    import numpy as np

    from galaxy_core.data.galaxy10 import CLASS_COUNTS
    from galaxy_core.synthetic import GENERATOR_NAME, make_labels, make_metadata, generate_images

    labels = make_labels(n, "real", seed)
    counts = np.bincount(labels, minlength=10)
    assert n != N_IMAGES or counts.tolist() == list(CLASS_COUNTS), counts
    start = time.perf_counter()
    base = generate_images(np.repeat(np.arange(10), unique), 256, seed)  # (10*unique, 256, 256, 3)
    render_s = time.perf_counter() - start
    start = time.perf_counter()
    seen = np.zeros(10, np.int64)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        images = f.create_dataset("images", shape=(n, 256, 256, 3), dtype=np.uint8,
                                  chunks=(1, 256, 256, 3))
        f.create_dataset("ans", data=labels)
        for key, value in make_metadata(n, seed).items():
            f.create_dataset(key, data=value)
        f.attrs.update(synthetic=True, generator=GENERATOR_NAME, seed=seed, balance="real",
                       note=f"SYNTHETIC rehearsal file: {unique} rendered galaxies per class tiled "
                            f"with the 8 rotations/flips (bench/bench_recipe.py)")
        for lo in range(0, n, 512):
            block = []
            for label in labels[lo:lo + 512]:
                label = int(label)  # uint8 labels: label * unique would wrap at 256
                j = seen[label]
                seen[label] += 1
                image = base[label * unique + j % unique]
                k = (j // unique) % 8
                image = np.rot90(image, k % 4)
                block.append(image[:, ::-1] if k >= 4 else image)
            images[lo:lo + len(block)] = np.stack(block)
    os.replace(tmp, path)
    return {"render_s": render_s, "rendered": 10 * unique, "write_s": time.perf_counter() - start,
            "render_img_per_s": 10 * unique / render_s,
            "projected_full_synthetic_min_1_core": N_IMAGES / (10 * unique / render_s) / 60, "n": n,
            "file_gb": path.stat().st_size / 1e9}


class Monitor:
    """Run a command, tee its output to a log, sample its RSS, track the phase from its log lines."""

    def __init__(self, command, log_path: Path, env: dict, on_line=None):
        self.log = open(log_path, "a", encoding="utf-8")
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env, cwd=ROOT, bufsize=1)
        self.phase, self.peaks, self.on_line = "start-up (imports)", {}, on_line
        self.phase_start = {self.phase: time.perf_counter()}
        self.lines: list[str] = []
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self):
        status = Path(f"/proc/{self.proc.pid}/status")
        while self.proc.poll() is None:
            try:
                rss = int(status.read_text().split("VmRSS:")[1].split()[0]) / 1024
            except (OSError, IndexError):
                break
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), rss)
            time.sleep(0.25)

    def wait(self) -> int:
        for line in self.proc.stdout:
            self.log.write(f"[{time.strftime('%H:%M:%S')}] {line}")
            self.log.flush()
            self.lines.append(line.rstrip())
            for marker, phase in PHASES:
                if line.startswith(marker):
                    self.phase = phase
                    self.phase_start.setdefault(phase, time.perf_counter())
            if self.on_line is not None:
                self.on_line(line, self)
        return self.proc.wait()


def du(path: Path) -> float:
    """Disk used under `path`, in MB."""
    if not path.exists():
        return 0.0
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/rehearsal")
    parser.add_argument("--name", default="densenet201-rehearsal", help="bundle name under ROOT/runs")
    parser.add_argument("--unique", type=int, default=40, help="rendered galaxies per class")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=2)
    parser.add_argument("--interrupt-after", type=int, default=2, help="SIGINT after this epoch")
    parser.add_argument("--max-eval-images", type=int, default=32)
    parser.add_argument("--explain-errors", type=int, default=3)
    parser.add_argument("--explain-correct", type=int, default=1)
    parser.add_argument("--n-images", type=int, default=N_IMAGES, help="(dry runs only: fewer images)")
    parser.add_argument("--train-args", default="", help="(dry runs only) extra train.py flags")
    args = parser.parse_args(argv)

    root = Path(args.root)
    (root / "runs").mkdir(parents=True, exist_ok=True)
    data_path, out = root / "Galaxy10_synthetic_full.h5", root / "runs" / args.name
    results: dict = {"args": vars(args)}
    if not data_path.exists():
        print(f"writing {data_path} ...", flush=True)
        results["data"] = make_rehearsal_file(data_path, args.unique, n=args.n_images)
        print(json.dumps(results["data"], indent=1), flush=True)
    env = {**os.environ, "GALAXY10_CACHE_DIR": str(root / "cache"), "GALAXY_RUNS_DIR": str(root / "runs"),
           "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "train.py", "--data", str(data_path), "--out", str(out), "--weights", "none",
               "--epochs", str(args.epochs), "--steps-per-epoch", str(args.steps_per_epoch),
               "--max-eval-images", str(args.max_eval_images), "--explain-errors", str(args.explain_errors),
               "--explain-correct", str(args.explain_correct), "--smooth-samples", "4",
               "--faithfulness-steps", "5", *args.train_args.split()]
    log_path = root / "rehearsal.log"
    work = out.parent / f".{out.name}.work"
    interrupted = {}

    def interrupt(line, monitor):
        if line.startswith(f"epoch {args.interrupt_after}/") and not interrupted:
            interrupted["work_mb"] = du(work)
            interrupted["work_files"] = sorted(p.name for p in work.iterdir())
            interrupted["at"] = time.perf_counter()
            monitor.proc.send_signal(signal.SIGINT)  # Ctrl-C

    t0 = time.perf_counter()
    first = Monitor(command, log_path, env, on_line=interrupt)
    rc1 = first.wait()
    results["run1"] = {"rc": rc1, "wall_s": time.perf_counter() - t0, "peak_rss_mb": first.peaks,
                       "interrupt": interrupted, "last_lines": first.lines[-3:],
                       "cache_mb": du(root / "cache")}
    print(json.dumps(results["run1"], indent=1), flush=True)
    t0 = time.perf_counter()
    second = Monitor(command + ["--resume"], log_path, env)
    rc2 = second.wait()
    results["run2"] = {"rc": rc2, "wall_s": time.perf_counter() - t0, "peak_rss_mb": second.peaks,
                       "last_lines": second.lines[-3:]}
    if rc2 == 0:
        results["bundle_mb"] = {p.name: du(p) for p in sorted(out.iterdir())}
        with open(out / "history.csv", encoding="utf-8") as f:
            results["history"] = list(csv.DictReader(f))
        t0 = time.perf_counter()  # what make_predictor does on first use, run here ahead of the app
        export = Monitor([sys.executable, "-m", "galaxy_core.models.onnx_export", str(out / "model.keras"),
                          str(out / "model.onnx")], log_path, env)
        results["onnx_export"] = {"rc": export.wait(), "s": time.perf_counter() - t0,
                                  "mb": du(out / "model.onnx"), "peak_rss_mb": export.peaks}
    print(json.dumps({k: v for k, v in results.items() if k != "run1"}, indent=1), flush=True)
    (root / f"results-{args.name}.json").write_text(json.dumps(results, indent=1))
    return 0 if rc2 == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
