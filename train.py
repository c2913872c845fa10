"""Train a Galaxy10 DECaLS classifier and write its run bundle (thin CLI over galaxy_core.train).

Examples:
    python train.py --data data/Galaxy10_DECals.h5                       # DenseNet201 fine-tune
    python train.py --preset vgg19-frozen --out runs/vgg19
    python train.py --out runs/vgg19 --resume                            # continue after a stop
    python train.py --evaluate runs/vgg19                                # recompute test metrics
    python train.py --demo                                               # offline synthetic demo

Every model/preprocessing/training flag comes from galaxy_core.config.Config; a flag given on the
command line overrides the preset's value.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path

# Hide TensorFlow's info/warning start-up lines (CPU features etc.) so the run's own messages stand
# out; a few absl lines printed before TF's logging starts remain. TF_CPP_MIN_LOG_LEVEL=0 shows all.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from galaxy_core.config import DEFAULT_PRESET, PRESETS, ConfigError, add_config_arguments, config_from_args
from galaxy_core.errors import GalaxyError

EXIT_ERROR = 2
# The offline demo: synthetic images, a small CNN, a few epochs (3 min 01 s measured end to end on 2
# CPU cores, explanations included; see BENCHMARKS.md).
DEMO_IMAGES = 2500
DEMO_OVERRIDES = dict(backbone="SmallCNN", weights="none", image_size=64, head="gap", dense_units=128,
                      epochs=8, batch_size=64, patience=8, learning_rate=1e-3)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py", description=__doc__.split("\n\n")[0],
        epilog="Presets: " + "; ".join(f"{name}: {values}" for name, values in PRESETS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None,
                        help="Galaxy10-format .h5 file (default: galaxy_core.data.default_dataset_path())")
    parser.add_argument("--out", type=Path, default=None,
                        help="bundle folder to write (default: runs/<preset>-<timestamp>)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET,
                        help=f"experiment preset (default: {DEFAULT_PRESET})")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run of --out from its last epoch checkpoint")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="parent folder of preprocessed caches (default $GALAXY10_CACHE_DIR or ./cache)")
    parser.add_argument("--evaluate", type=Path, default=None, metavar="RUN_DIR",
                        help="re-evaluate an existing run bundle (test metrics, TTA) and exit")
    parser.add_argument("--demo", action="store_true",
                        help=f"offline demo: generate {DEMO_IMAGES} SYNTHETIC images, train a small CNN "
                             "on CPU and write runs/demo (a few minutes)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the bundle at --out if one is there (default: refuse)")
    parser.add_argument("--demo-images", type=int, default=DEMO_IMAGES, metavar="N",
                        help=f"number of SYNTHETIC images the demo generates (default {DEMO_IMAGES})")
    add_config_arguments(parser)
    return parser


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


def run_evaluate(run_dir: Path) -> int:
    from galaxy_core import evaluate
    from galaxy_core.bundle import load_bundle

    metrics = evaluate.reevaluate_bundle(run_dir)
    bundle = load_bundle(run_dir)
    print(evaluate.format_report(metrics, bundle.config.class_names, bundle.is_synthetic))
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from galaxy_core.synthetic import GENERATOR_VERSION, write_synthetic_dataset
    from galaxy_core.train import train_run

    # The demo's settings replace the preset's; flags given on the command line still win.
    cfg = config_from_args(args, args.preset).replace(**{
        name: value for name, value in DEMO_OVERRIDES.items() if getattr(args, name, None) is None})
    data_dir = Path(os.environ.get("GALAXY10_DATA_DIR") or "data")
    n_images = args.demo_images
    data_path = args.data or data_dir / (f"synthetic-demo-{n_images}-{cfg.image_size}-seed{cfg.seed}"
                                         f"-v{GENERATOR_VERSION}.h5")
    if not data_path.exists():
        data_path.parent.mkdir(parents=True, exist_ok=True)
        print(f"generating {n_images} SYNTHETIC Galaxy10-format images into {data_path}")
        write_synthetic_dataset(data_path, n_images, size=cfg.image_size, seed=cfg.seed)
    out = args.out = args.out or Path("runs") / "demo"
    if (problem := out_in_the_way(args)) is not None:
        return fail(problem)
    train_run(cfg, data_path, out, resume=args.resume, cache_dir=args.cache_dir,
              run_info_extra={"command": sys.argv, "demo": True})
    print("note: the demo model is trained on SYNTHETIC images; its metrics say nothing about real galaxies")
    return 0


def stop_gracefully_on_signals() -> None:
    """Ctrl-C semantics for SIGINT and SIGTERM, also when started in the background.

    A shell starts `python train.py &` (nohup, scripts) with SIGINT ignored, so `kill -INT` did
    nothing there (found by the full-size rehearsal); SIGTERM (`kill`, a cloud machine being
    stopped) killed the run without the resume message. Both now raise KeyboardInterrupt.
    """
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None) -> int:
    stop_gracefully_on_signals()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.demo_images < 10:
        parser.error(f"--demo-images must be at least 10 (one image per class); got {args.demo_images}")
    try:
        if args.evaluate is not None:
            return run_evaluate(args.evaluate)
        if args.demo:
            return run_demo(args)
        cfg = config_from_args(args, args.preset)
        if args.out is None:
            if args.resume:
                return fail("--resume needs --out runs/NAME (the run to continue)")
            args.out = Path("runs") / f"{args.preset}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        data_path = args.data
        if data_path is None:
            from galaxy_core.data import default_dataset_path

            data_path = default_dataset_path()
            if not data_path.exists():
                return fail(f"no dataset given and {data_path} does not exist. Download Galaxy10 "
                            f"DECaLS with `python -m galaxy_core.data download` (2.5 GB), or pass "
                            f"--data PATH.h5, or try `python train.py --demo` (offline, synthetic).")
        elif not data_path.exists():
            return fail(f"dataset file {data_path} not found (get it with `python -m galaxy_core.data "
                        f"download`)")

        if (problem := out_in_the_way(args)) is not None:
            return fail(problem)
        from galaxy_core.train import train_run

        train_run(cfg, data_path, args.out, resume=args.resume, cache_dir=args.cache_dir,
                  run_info_extra={"command": sys.argv, "preset": args.preset})
        return 0
    except (GalaxyError, ConfigError) as err:
        return fail(str(err))
    except KeyboardInterrupt:
        print(f"\ninterrupted: {resume_hint(args)}", file=sys.stderr)
        return 130


def out_in_the_way(args: argparse.Namespace) -> str | None:
    """Why `--out` cannot be written (a finished bundle is there), or None."""
    out = Path(args.out)
    if args.resume or args.overwrite or not out.exists():
        return None
    return (f"{out} already exists (a finished run?). Choose another --out, add --overwrite to "
            f"replace it when the new run finishes, or delete it.")


def resume_hint(args: argparse.Namespace) -> str:
    """What to type to continue an interrupted run (or that nothing was checkpointed yet)."""
    from galaxy_core.train import STATE, work_dir_for

    if args.out is None or not (work_dir_for(Path(args.out)) / STATE).exists():
        return "no epoch had finished, so there is nothing to resume; start the run again."
    words = ["python", "train.py"] + (["--demo"] if args.demo else [])
    for flag, value in (("--data", args.data), ("--out", args.out), ("--cache-dir", args.cache_dir)):
        if value is not None:
            words += [flag, str(value)]
    return f"the last finished epoch is checkpointed; continue with `{' '.join(words)} --resume`"


if __name__ == "__main__":
    sys.exit(main())
