"""Train a Galaxy10 DECaLS classifier and write its run bundle (thin CLI over galaxy_core.training.train).

Examples:
    python train.py --data data/Galaxy10_DECals.h5                       # DenseNet201 fine-tune
    python train.py --preset vgg19-frozen --out runs/vgg19
    python train.py --out runs/vgg19 --resume                            # continue after a stop
    python train.py --evaluate runs/vgg19                                # recompute test metrics
    python train.py --demo                                               # offline synthetic demo
    python train.py --data my_labels/ --init-from runs/demo --freeze-backbone   # your own classes

Every model/preprocessing/training flag comes from galaxy_core.config.Config; a flag given on the
command line overrides the preset's value.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from datetime import datetime
from pathlib import Path

# Hide TensorFlow's info/warning start-up lines (CPU features etc.) so the run's own messages stand
# out; the native lines printed before TF's logging starts (CUDA probing) are filtered by
# galaxy_core.tf_quiet when TensorFlow is first imported. TF_CPP_MIN_LOG_LEVEL=0 shows all.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from galaxy_core.config import (DEFAULT_PRESET, PRESETS, Config, ConfigError, add_config_arguments,
                                config_from_args)
from galaxy_core.errors import GalaxyError
from galaxy_core.io import default_data_dir, default_runs_dir

EXIT_ERROR = 2
# The offline demo: synthetic images (generator version 4, domain-randomised) rendered at 256 px like
# real cutouts, a galaxy-centred crop of 2 radii of the central object before the resize to 64 px,
# a small CNN, a few epochs, random flips on top of the recipe's rotation/zoom/contrast, and the
# mean of the weights of the last DEMO_AVERAGE_LAST epochs (stochastic weight averaging, epochs 4-8),
# and a gradient-boosting classifier on morphology statistics of the raw cutouts whose probabilities
# are averaged with the CNN's (morphology_weight 0.5: the largest measured gain on real galaxies,
# +16 points of balanced accuracy over the CNN alone). See BENCHMARKS.md, "Real images", for each
# setting's effect on real galaxies and the build time.
DEMO_IMAGES = 2500
# Side the demo's synthetic images are rendered at (0 = the model's image_size). The galaxy crop cuts
# a part of the frame, so the images are rendered at the real cutouts' 256 px and the crop is shrunk,
# never enlarged (crop_min_fraction 0.25 of 256 = 64 px); without the crop a 256 px render hurt.
DEMO_RENDER_SIZE = 256
DEMO_OVERRIDES = dict(backbone="SmallCNN", weights="none", image_size=64, head="gap", dense_units=128,
                      epochs=8, batch_size=64, patience=8, learning_rate=1e-3, flips=True,
                      crop_scale=2.0, morphology_weight=0.5)
DEMO_AVERAGE_LAST = 5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py", description=__doc__.split("\n\n")[0],
        epilog="Presets: " + "; ".join(f"{name}: {values}" for name, values in PRESETS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None,
                        help="Galaxy10-format .h5 file (default: $GALAXY10_DATA_DIR/Galaxy10_DECals.h5, "
                             "else data/Galaxy10_DECals.h5), or your own labelled images: a folder with "
                             "one subfolder per class, or a table of path,label (.csv, .parquet, .fits; "
                             "label = class name or index); imported once into the cache folder")
    parser.add_argument("--class-names", type=_names, default=None, metavar="A,B,...",
                        help="with a label table: the names of its class indices 0, 1, ... (or the "
                             "order of its class names), comma-separated")
    parser.add_argument("--out", type=Path, default=None,
                        help="bundle folder to write (default: $GALAXY_RUNS_DIR or ./runs, "
                             "/<preset>-<timestamp>; runs/demo for --demo)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET,
                        help=f"experiment preset (default: {DEFAULT_PRESET})")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run of --out from its last epoch checkpoint")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="parent folder of preprocessed caches (default $GALAXY10_CACHE_DIR or ./cache)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (the one-line epoch summaries remain)")
    parser.add_argument("--evaluate", type=Path, default=None, metavar="RUN_DIR",
                        help="re-evaluate an existing run bundle (test metrics, TTA) and exit")
    parser.add_argument("--demo", action="store_true",
                        help=f"offline demo: generate {DEMO_IMAGES} SYNTHETIC images, train a small CNN "
                             "and a morphology-statistics classifier on CPU and write runs/demo (a few minutes)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run bundle at --out if one is there (default: refuse; a "
                             "folder that is not a run bundle is never replaced)")
    parser.add_argument("--demo-images", type=int, default=DEMO_IMAGES, metavar="N",
                        help=f"number of SYNTHETIC images the demo generates (default {DEMO_IMAGES})")
    parser.add_argument("--demo-render-size", type=int, default=DEMO_RENDER_SIZE, metavar="PX",
                        help="side the demo's SYNTHETIC images are rendered at before preprocessing "
                             f"(default {DEMO_RENDER_SIZE}; 0 = the model's --image-size)")
    add_config_arguments(parser)
    return parser


def _names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if len(names) < 2:
        raise argparse.ArgumentTypeError(f"give at least 2 comma-separated class names, got {text!r}")
    return names


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


def start_tensorflow() -> None:
    """Import TensorFlow now, with its native start-up lines (CUDA probing) filtered out."""
    from galaxy_core.tf_quiet import import_tensorflow_quietly

    import_tensorflow_quietly()


def run_evaluate(run_dir: Path) -> int:
    start_tensorflow()
    from galaxy_core.bundle.read import load_bundle
    from galaxy_core.evaluation import metrics as metrics_mod
    from galaxy_core.runs import reevaluate
    from galaxy_core.training.phases import export_phase

    metrics = reevaluate.reevaluate_bundle(run_dir)
    bundle = load_bundle(run_dir)
    print(metrics_mod.format_report(metrics, bundle.config.class_names, bundle.is_synthetic, bundle.best_epoch))
    # model.onnx made from this model.keras (exported again when missing, stale or not fingerprinted).
    export_phase(bundle.path, bundle.config, lambda line: print(line, file=sys.stderr))
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from galaxy_core.synthetic import GENERATOR_VERSION, write_synthetic_dataset

    start_tensorflow()
    from galaxy_core.training.train import train_run

    # The demo's settings replace the preset's; flags given on the command line still win.
    cfg = config_from_args(args, args.preset).replace(**{
        name: value for name, value in DEMO_OVERRIDES.items() if getattr(args, name, None) is None})
    if getattr(args, "average_from_epoch", None) is None:  # the last epochs, however many there are
        cfg = cfg.replace(average_from_epoch=max(1, cfg.epochs - DEMO_AVERAGE_LAST + 1))
    out = args.out = args.out or default_runs_dir() / "demo"
    if (problem := out_in_the_way(args)) is not None:  # before minutes of generating images
        return fail(problem)
    data_dir = default_data_dir()
    n_images = args.demo_images
    render_size = args.demo_render_size or cfg.image_size
    data_path = args.data or data_dir / (f"synthetic-demo-{n_images}-{render_size}-seed{cfg.seed}"
                                         f"-v{GENERATOR_VERSION}.h5")
    if not data_path.exists():
        data_path.parent.mkdir(parents=True, exist_ok=True)
        print(f"generating {n_images} SYNTHETIC Galaxy10-format {render_size} px images into {data_path}")
        write_synthetic_dataset(data_path, n_images, size=render_size, seed=cfg.seed)
    if args.resume:
        cfg = resume_config(args, cfg)
    train_run(cfg, data_path, out, resume=args.resume, cache_dir=args.cache_dir,
              run_info_extra={"command": sys.argv, "demo": True}, progress=not args.no_progress)
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
    if args.demo_render_size != 0 and args.demo_render_size < 16:
        parser.error(f"--demo-render-size must be 0 (the image size) or at least 16 px; got "
                     f"{args.demo_render_size}")
    try:
        if args.evaluate is not None:
            return run_evaluate(args.evaluate)
        if args.demo:
            return run_demo(args)
        cfg = config_from_args(args, args.preset)
        if args.out is None:
            if args.resume:
                return fail("--resume needs --out runs/NAME (the run to continue)")
            args.out = default_runs_dir() / f"{args.preset}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        data_path = args.data
        if data_path is None:
            from galaxy_core.data.download import default_dataset_path

            data_path = default_dataset_path()
            if not data_path.exists():
                return fail(f"no dataset given and {data_path} does not exist. Download Galaxy10 "
                            f"DECaLS with `python -m galaxy_core.data download` (2.5 GB), or pass "
                            f"--data PATH.h5, or try `python train.py --demo` (offline, synthetic).")
        elif not data_path.exists():
            return fail(f"dataset {data_path} not found (get Galaxy10 DECaLS with `python -m "
                        f"galaxy_core.data download`, or give a folder of labelled images)")

        if (problem := out_in_the_way(args)) is not None:
            return fail(problem)
        start_tensorflow()
        from galaxy_core.training.train import train_run

        if args.resume:
            cfg = resume_config(args, cfg)
        train_run(cfg, data_path, args.out, resume=args.resume, cache_dir=args.cache_dir,
                  run_info_extra={"command": sys.argv, "preset": args.preset},
                  progress=not args.no_progress, class_names=args.class_names)
        return 0
    except (GalaxyError, ConfigError) as err:
        return fail(str(err))
    except KeyboardInterrupt:
        print(f"\ninterrupted: {resume_hint(args)}", file=sys.stderr)
        return 130


def out_in_the_way(args: argparse.Namespace) -> str | None:
    """Why `--out` cannot be written (a finished bundle without --overwrite, or not a bundle), or None."""
    from galaxy_core.training.checkpoint import not_a_bundle

    out = Path(args.out)
    if args.resume or not out.exists():
        return None
    if (problem := not_a_bundle(out)) is not None:
        return problem
    if args.overwrite:
        return None
    return (f"{out} already exists (a finished run?). Choose another --out, add --overwrite to "
            f"replace it when the new run finishes, or delete it.")


def given_config_flags(args: argparse.Namespace) -> dict:
    """The config fields given on the command line (flags left out are None)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
            if getattr(args, f.name, None) is not None}


def resume_config(args: argparse.Namespace, fallback: Config) -> Config:
    """The interrupted run's saved config with only the flags given now applied on top.

    So a resume with the printed command (or with the run's flags repeated) changes nothing, and a
    flag that does change something is named by `train_run` ("ignoring changes to [...]").
    """
    from galaxy_core.training.checkpoint import CONFIG, read_config, work_dir_for

    work = work_dir_for(Path(args.out))
    if not (work / CONFIG).exists():
        return fallback  # train_run says there is nothing to resume
    return read_config(work).replace(**given_config_flags(args))


def resume_hint(args: argparse.Namespace) -> str:
    """What to type to continue an interrupted run (or that nothing was checkpointed yet)."""
    from galaxy_core.training.checkpoint import STATE, work_dir_for

    if args.out is None or not (work_dir_for(Path(args.out)) / STATE).exists():
        return "no epoch had finished, so there is nothing to resume; start the run again."
    words = ["python", "train.py"] + (["--demo"] if args.demo else [])
    for flag, value in (("--data", args.data), ("--out", args.out), ("--cache-dir", args.cache_dir)):
        if value is not None:
            words += [flag, str(value)]
    return f"the last finished epoch is checkpointed; continue with `{shlex.join(words + ['--resume'])}`"


if __name__ == "__main__":
    sys.exit(main())
