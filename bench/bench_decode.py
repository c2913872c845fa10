"""Benchmark decoding large images: peak memory of full-size decoding vs reduced-size decoding (issue 25).

Two SYNTHETIC images just under the 40 Mpx cap (smooth gradients, so the files are small; the pixels
are not galaxies): a 6,300 x 6,300 RGB JPEG and a 6,300 x 6,300 16-bit RGBA PNG. Each is decoded in
a fresh child process, once as before (`read_image(path)`: the file's own size) and once as
predict and the app now do (`prepare_item`: `read_image(path, min_side=decode_side(cfg))`, the
JPEG at 1/8 size by libjpeg, the PNG shrunk before its conversions), then preprocessed to the
model's 256 px. Reported: the child's peak RSS growth over its RSS just before decoding (VmHWM,
reset through /proc/self/clear_refs; Linux), and the time, side by side.

Usage:
    python bench/bench_decode.py [--side 6300] [--image-size 256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from galaxy_core.config import Config
from galaxy_core.inference.classify import decode_side
from galaxy_core.preprocessing.decode import read_image
from galaxy_core.preprocessing.preprocess import preprocess_image
path, mode, size = sys.argv[2], sys.argv[3], int(sys.argv[4])
cfg = Config(image_size=size, weights="none")
preprocess_image(read_image(sys.argv[5]), cfg)  # warm: libraries loaded, a small image decoded

def hwm_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

with open("/proc/self/clear_refs", "w") as f:  # the peak RSS restarts from the current RSS
    f.write("5")
before = hwm_kb()
start = time.perf_counter()
image = read_image(path, min_side=decode_side(cfg) if mode == "reduced" else None)
x = preprocess_image(image, cfg)
elapsed = time.perf_counter() - start
peak = hwm_kb()
print(json.dumps({"peak_mb": (peak - before) / 1024, "seconds": elapsed, "decoded": list(image.shape)}))
"""


def make_images(folder: Path, side: int) -> dict[str, Path]:
    """A bright disc with a soft edge on a dark sky, so both files stay small (as in issue 25)."""
    yy, xx = np.ogrid[:side, :side]
    disc = ((xx - side / 2) ** 2 + (yy - side / 3) ** 2 < (side / 5) ** 2).astype(np.float32)
    rgb = np.stack([disc * 0.9, disc * 0.7, disc * 0.5], axis=-1) + 0.05
    paths = {"JPEG RGB 8-bit": folder / "big.jpg", "PNG RGBA 16-bit": folder / "big.png"}
    cv2.imwrite(str(paths["JPEG RGB 8-bit"]), (rgb * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    rgba = np.concatenate([rgb, np.ones((side, side, 1), np.float32)], axis=-1)
    cv2.imwrite(str(paths["PNG RGBA 16-bit"]), (rgba * 65535).astype(np.uint16), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    del rgb, rgba
    cv2.imwrite(str(folder / "small.png"), np.zeros((300, 300, 3), np.uint8))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=6300, help="image side in px (default 6300: 39.7 Mpx)")
    parser.add_argument("--image-size", type=int, default=256, help="the model's input size (default 256)")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; SYNTHETIC images")
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), args.side)
        print(f"{'image':<18} {'file':>8} {'full: peak MB':>14} {'s':>6} {'reduced: peak MB':>17} {'s':>6} "
              f"{'decoded at':>12} {'memory ratio':>13}")
        for name, path in paths.items():
            got = {}
            for mode in ("full", "reduced"):
                out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(path), mode, str(args.image_size),
                                      str(Path(tmp) / "small.png")], capture_output=True, text=True, check=True)
                got[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            f, r = got["full"], got["reduced"]
            print(f"{name:<18} {path.stat().st_size / 1e3:>6.0f}kB {f['peak_mb']:>14.0f} {f['seconds']:>6.2f} "
                  f"{r['peak_mb']:>17.0f} {r['seconds']:>6.2f} {'x'.join(map(str, r['decoded'][:2])):>12} "
                  f"{f['peak_mb'] / max(r['peak_mb'], 1):>12.1f}x")


if __name__ == "__main__":
    main()
