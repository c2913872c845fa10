"""`python -m galaxy_core.catalog`: classify a catalogue of cutouts into a Parquet catalogue, on Dask.

Usage:
    python -m galaxy_core.catalog --run runs/NAME --out catalogue/ cutouts/              # image folders/files
    python -m galaxy_core.catalog --run runs/NAME --out catalogue/ sample.csv            # table with a path column
    python -m galaxy_core.catalog --run runs/NAME --out catalogue/ Galaxy10_DECals.h5    # HDF5 `images`
    python -m galaxy_core.catalog ... --scheduler tcp://HOST:8786                         # an existing cluster

The steps (each in its own module): open the input (`inputs`), check or create the output folder
and its manifest (`manifest`), stage the rows (`partitions`), run the partitions not yet committed
on a Dask cluster (`engine`, `worker`), summarise. See docs/catalog.md.

Exit status: 0 every row classified, 1 some rows (or partitions) failed, 2 usage, input, output
folder or bundle error, 130 interrupted (rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from galaxy_core.catalog import engine, manifest
from galaxy_core.catalog.inputs import CatalogError, Source, open_input
from galaxy_core.catalog.partitions import STAGED_NAME, plan, stage_rows
from galaxy_core.catalog.worker import Job
from galaxy_core.catalog.writer import committed_parts, output_names, probability_column, read_summary
from galaxy_core.errors import GalaxyError
from galaxy_core.io import progress_bar

DEFAULT_PARTITION_SIZE = 1000
MANIFEST_EVERY_S = 5.0  # how often the manifest's partitions-done list is refreshed during a job


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m galaxy_core.catalog",
        description="Classify a catalogue of galaxy cutouts with a trained run, on a Dask cluster (a local "
                    "one by default), into a Parquet catalogue; resumable.",
        epilog="Exit status: 0 all rows classified, 1 some rows failed, 2 usage/input/bundle error, "
               "130 interrupted (rerun the same command to resume). See docs/catalog.md.")
    parser.add_argument("--run", required=True, help="run bundle folder, e.g. runs/NAME")
    parser.add_argument("--out", required=True, help="output folder (a Parquet dataset + _manifest.json)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files or folders; or ONE table (.csv, .parquet, .fits, .vot/.xml) with a "
                             "column of image paths; or ONE HDF5 file with an `images` dataset")
    parser.add_argument("--path-column", default=None,
                        help="the table's column of image paths (default: the first of path, file, filename)")
    parser.add_argument("--tta", action="store_true", help="average over the 8 rotations/flips (8x slower)")
    parser.add_argument("--cnn-only", action="store_true",
                        help="for a run that blends a morphology classifier, use the CNN alone")
    parser.add_argument("--backend", choices=("auto", "onnxruntime", "keras", "int8"), default="auto",
                        help="as in galaxy_core.predict (default auto: ONNX Runtime, else Keras)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per model call (default 64)")
    parser.add_argument("--partition-size", type=int, default=DEFAULT_PARTITION_SIZE,
                        help=f"rows per partition, the unit of work and of resuming (default "
                             f"{DEFAULT_PARTITION_SIZE}); fixed for an output folder")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes of the local cluster (default: one per core)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="run on an existing Dask cluster, e.g. tcp://10.0.0.5:8786 (default: Dask's "
                             "configured scheduler-address, else a local cluster)")
    parser.add_argument("--threads", type=int, default=None,
                        help="ONNX Runtime threads per task (default: local cluster: cores / workers; "
                             "other clusters: each worker's cores / its threads)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over: delete the catalogue already in --out (never a folder that is "
                             "not a catalogue output)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("batch_size", "partition_size", "workers", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.workers is not None and args.scheduler:
        parser.error("--workers sizes the local cluster; an existing cluster (--scheduler) has its own workers")
    try:
        return run(args)
    except KeyboardInterrupt:
        done = len(committed_parts(args.out))
        print(f"\ninterrupted: {done} partition(s) committed in {args.out}; rerun the same command to resume",
              file=sys.stderr)
        return 130
    except GalaxyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - never a traceback: say what failed
        print(f"error: the catalogue stopped: {type(err).__name__}: {' '.join(str(err).split())}",
              file=sys.stderr)
        return 1


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from galaxy_core.bundle.read import load_bundle

    bundle = load_bundle(args.run)
    if bundle.is_synthetic:
        from galaxy_core.predict import SYNTHETIC_WARNING

        say(SYNTHETIC_WARNING)
    source, batches = open_input(args.inputs, args.path_column)
    class_names = tuple(bundle.config.class_names)
    check_columns(source, class_names)
    options = {"tta": args.tta, "cnn_only": args.cnn_only, "backend": args.backend,
               "partition_size": args.partition_size}
    out = Path(args.out)
    if args.overwrite and manifest.clear_output(out):
        say(f"--overwrite: the catalogue in {out} was deleted")
    manifest.check_output(out)
    with manifest.output_lock(out):
        run_id = dict(manifest.run_identity(bundle.path), synthetic=bundle.is_synthetic)
        old = resumable_manifest(out, run_id, source, options)  # refused before any model is made
        check_predictor(bundle, args.backend)
        source, record = (source, old) if old is not None else \
            new_output(out, run_id, source, batches, options, class_names)
        batches = None  # the input's rows (a file list) are staged: the driver keeps none of them
        if old is not None:
            source = dataclasses.replace(source, n_rows=int(old["rows"]))
        return classify(args, out, source, record, class_names)


def check_predictor(bundle, backend: str) -> None:
    """Make the run's predictor once here: a backend error stops the command before any worker
    starts, and a first-use ONNX export happens once, not once per worker."""
    from galaxy_core.models.predictor import make_predictor

    note = make_predictor(bundle, backend=backend, threads=1, log=say).note
    if note:
        say(note)


def check_columns(source: Source, class_names: Sequence[str]) -> None:
    clash = sorted(set(source.carried) & set(output_names(class_names)))
    if clash:
        raise CatalogError(f"the input's column(s) {', '.join(clash)} would clash with the catalogue's own "
                           f"columns ({', '.join(output_names(class_names))}); rename them")


def resumable_manifest(out: Path, run_id: dict[str, str], source: Source,
                       options: dict[str, Any]) -> dict[str, Any] | None:
    """The folder's manifest when this command resumes it, None for a new folder; refuses a mismatch."""
    old = manifest.read_manifest(out)
    if old is None:
        return None
    reason = manifest.mismatch(old, run_id, source.identity, options)
    if reason:
        raise CatalogError(f"{out} already holds a catalogue, and this command cannot resume it: {reason}. "
                           f"Use another --out, or --overwrite to start over")
    if source.kind != "hdf5" and not (out / STAGED_NAME).is_file():
        raise CatalogError(f"{out / STAGED_NAME} is missing: rerun with --overwrite to start over")
    return old


def new_output(out: Path, run_id: dict[str, str], source: Source, batches, options: dict[str, Any],
               class_names: Sequence[str]) -> tuple[Source, dict[str, Any]]:
    """Stage the input (files/table) and write the new folder's manifest."""
    if batches is not None:
        started = time.monotonic()
        n_rows = stage_rows(batches(), out / STAGED_NAME, options["partition_size"])
        if n_rows == 0:
            raise CatalogError("the input has no rows")
        if source.kind == "table":
            say(f"staged {n_rows} rows of {source.path} in {time.monotonic() - started:.1f} s")
        source = dataclasses.replace(source, n_rows=n_rows)
    columns = {"carried": list(source.carried),
               "probabilities": {name: probability_column(name) for name in class_names}}
    access = {"kind": source.kind, "path": source.path, "path_column": source.path_column,
              "base_dir": source.base_dir}
    record = manifest.new_manifest(run_id, source.identity, options, source.n_rows,
                                   len(plan(source.n_rows, options["partition_size"])), class_names, columns,
                                   access)
    return source, manifest.record_progress(out, record)


def classify(args: argparse.Namespace, out: Path, source: Source, record: dict[str, Any],
             class_names: Sequence[str]) -> int:
    """Run the partitions not yet committed; print the summary; the exit status."""
    parts = plan(source.n_rows, args.partition_size)
    committed = set(committed_parts(out))
    todo = [p for p in parts if p.index not in committed]
    totals = Totals(len(class_names))
    for index in sorted(committed & {p.index for p in parts}):
        totals.add(read_summary(out, index), skipped=True)
    if committed:
        say(f"resuming: {totals.skipped} of {len(parts)} partition(s) already done, skipped "
            f"({totals.rows} rows); {len(todo)} to go")
    local_threads = args.threads
    if not (args.scheduler or engine.configured_scheduler()) and local_threads is None:
        from galaxy_core.models.predictor import default_threads

        local_threads = max(1, default_threads() // engine.local_workers(args.workers))
    job = Job(run_path=str(Path(args.run).resolve()), out=str(out.resolve()), source=source,
              class_names=tuple(class_names), backend=args.backend, tta=args.tta, cnn_only=args.cnn_only,
              batch_size=args.batch_size, threads=local_threads)
    started = time.monotonic()
    failures: list[tuple[int, str]] = []
    if todo:
        last_write = [time.monotonic()]
        with progress_bar(source.n_rows, desc="catalog", unit="img", initial=totals.rows) as bar, \
                engine.dask_client(args.scheduler, args.workers, log=bar.write) as client:
            def on_done(summary: dict[str, Any]) -> None:
                totals.add(summary)
                bar.update(summary["rows"])
                if time.monotonic() - last_write[0] > MANIFEST_EVERY_S:
                    manifest.record_progress(out, record)
                    last_write[0] = time.monotonic()

            failures = engine.run_partitions(client, job, todo, on_done)
    wall = time.monotonic() - started
    failed = {index for index, _ in failures}
    lost = sorted(set(p.index for p in parts) - set(committed_parts(out)) - failed)
    failures += [(index, "it was not committed (no part file); rerun to retry it") for index in lost]
    manifest.record_progress(out, record)
    return report(out, totals, failures, len(parts), wall)


class Totals:
    """The driver's running summary: rows, errors and class counts, summed over partitions."""

    def __init__(self, num_classes: int):
        self.rows = self.errors = self.new_rows = self.skipped = self.partitions = 0
        self.counts = np.zeros(num_classes, np.int64)

    def add(self, summary: dict[str, Any], skipped: bool = False) -> None:
        self.rows += summary["rows"]
        self.errors += summary["errors"]
        self.counts += np.asarray(summary["counts"], np.int64)
        self.partitions += 1
        if skipped:
            self.skipped += 1
        else:
            self.new_rows += summary["rows"]


def report(out: Path, totals: Totals, failures: list[tuple[int, str]], n_parts: int, wall: float) -> int:
    rate = totals.new_rows / wall if wall > 0 and totals.new_rows else 0.0
    say(f"catalogue {out}: {totals.rows} rows, {totals.rows - totals.errors} classified, {totals.errors} errors; "
        f"{totals.skipped} of {n_parts} partitions skipped (done before); {wall:.1f} s, {rate:.1f} images/s")
    for index, why in failures[:5]:
        say(f"error: partition {index} failed: {why}")
    if failures:
        say(f"{len(failures)} partition(s) failed and are not in the catalogue; rerun the same command to retry them")
        return 1
    if totals.errors:
        say(f"{totals.errors} row(s) could not be classified: their reason is in the `error` column")
        return 1
    return 0
