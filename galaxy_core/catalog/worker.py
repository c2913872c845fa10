"""The task a Dask worker runs: classify one partition and commit its part file.

A worker process loads the run once (`loaded_run`: a per-process cache keyed by the run and the
options that change the predictor, guarded by a lock for workers with several threads), through
`galaxy_core.models.predictor.make_predictor` with an explicit ONNX Runtime thread count
(`Job.threads`, else the process's cores divided by the worker's threads), so N workers on one
machine do not each start a pool the size of the machine.

`classify_partition(job, part)` reads the partition's rows itself (`galaxy_core.catalog.rows`),
classifies them `batch_size` at a time with the predict CLI's own `classify_each`, and writes the
part file atomically (`galaxy_core.catalog.writer.commit_part`). A partition already committed
(by an earlier attempt whose worker died after the rename) is not done twice. It returns only the
partition's summary, so the driver never receives rows.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from galaxy_core.catalog.inputs import Source
from galaxy_core.catalog.partitions import STAGED_NAME, Partition
from galaxy_core.catalog.rows import image_batches, partition_columns
from galaxy_core.catalog.writer import commit_part, part_name, read_summary, result_table, summarise


@dataclass(frozen=True)
class Job:
    """Everything a task needs besides its partition (small: pickled into every task)."""

    run_path: str
    out: str
    source: Source
    class_names: tuple[str, ...]
    backend: str = "auto"
    tta: bool = False
    cnn_only: bool = False
    batch_size: int = 64
    threads: int | None = None

    @property
    def staged(self) -> str | None:
        return None if self.source.kind == "hdf5" else str(Path(self.out) / STAGED_NAME)


_LOADED: dict[tuple, tuple[Any, Any, Any]] = {}
_LOCK = threading.Lock()
_LOADS = {"count": 0}


def load_count() -> int:
    """How many times this process has loaded a run (1 per run and options, however many tasks)."""
    return _LOADS["count"]


def loaded_threads() -> list[int | None]:
    """ONNX Runtime intra-op threads of each run this process has loaded (None: not ONNX Runtime)."""
    threads = []
    for _, model, _ in _LOADED.values():
        session = getattr(model, "session", None)
        threads.append(None if session is None else int(session.get_session_options().intra_op_num_threads))
    return threads


def worker_threads() -> int:
    """ONNX Runtime threads for a task on this worker: its cores over the worker's task threads."""
    from galaxy_core.models.predictor import default_threads

    try:
        from distributed import get_worker

        tasks = max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        tasks = 1
    return max(1, default_threads() // tasks)


def loaded_run(job: Job) -> tuple[Any, Any, Any]:
    """`(config, predictor, morphology classifier or None)` of the job's run, loaded once per process."""
    key = (job.run_path, job.backend, job.cnn_only, job.threads)
    with _LOCK:
        if key not in _LOADED:
            from galaxy_core.bundle.read import load_bundle
            from galaxy_core.models.predictor import make_predictor

            bundle = load_bundle(job.run_path)
            model = make_predictor(bundle, backend=job.backend, threads=job.threads or worker_threads())
            morphology = None if job.cnn_only else bundle.load_morphology()
            _LOADED[key] = (bundle.config, model, morphology)
            _LOADS["count"] += 1
        return _LOADED[key]


def classify_partition(job: Job, part: Partition) -> dict[str, Any]:
    """Classify partition `part` and commit `OUT/part-NNNNNN.parquet`; returns its summary.

    Returns:
        `{"partition", "rows", "errors", "counts" (per class), "reused"}`; `reused` is True when
        the part was already committed.
    """
    from galaxy_core.inference.classify import classify_each

    if os.path.exists(Path(job.out) / part_name(part.index)):
        return {**read_summary(job.out, part.index), "partition": part.index, "reused": True}
    cfg, model, morphology = loaded_run(job)
    columns = partition_columns(job.source, job.staged, part)
    results: list[tuple[Any, Any]] = []
    for batch in image_batches(job.source, columns, part, job.batch_size):
        images = [image for image, error in batch if error is None]
        classified = iter(classify_each(model, cfg, images, job.batch_size, job.tta, morphology) if images else [])
        results += [next(classified) if error is None else (None, error) for _, error in batch]
    table = result_table(columns, part.start, results, job.class_names)
    summary = summarise(table, job.class_names)
    commit_part(job.out, part.index, table, summary)
    return {**summary, "partition": part.index, "reused": False}
