"""`python -m galaxy_core.synthetic OUT.h5 --n N --size S --seed K [--balance uniform]`."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from galaxy_core.errors import GalaxyError
from galaxy_core.synthetic.dataset import save_montage, write_synthetic_dataset
from galaxy_core.synthetic.settings import BALANCES


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m galaxy_core.synthetic",
        description="Write a SYNTHETIC Galaxy10-format HDF5 file of mock galaxy images.")
    parser.add_argument("out", help="output .h5 path")
    parser.add_argument("--n", type=int, default=1000, help="number of images (default 1000)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--balance", choices=BALANCES, default="real",
                        help="class proportions: real Galaxy10 DECaLS (default) or uniform")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    parser.add_argument("--montage", metavar="PNG", default=None,
                        help="also write a PNG montage (10 classes x 6 images) for inspection")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        out = write_synthetic_dataset(args.out, args.n, args.size, args.seed, args.balance,
                                      workers=args.workers, progress=not args.quiet)
        if args.montage:
            save_montage(args.montage, size=args.size, seed=args.seed, per_class=6)
    except (GalaxyError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({args.n} synthetic images, {args.size}x{args.size}, seed {args.seed}, "
          f"balance {args.balance})")
    return 0
