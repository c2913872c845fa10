"""The Dask side: a cluster to run on, and the partitions submitted to it.

`dask_client(scheduler, workers)` yields a `distributed.Client`: on an existing scheduler when an
address is given (or set in Dask's configuration, `scheduler-address` / `DASK_SCHEDULER_ADDRESS`),
else on a `LocalCluster` of worker processes started here (one task thread each, bound to
127.0.0.1, its dashboard on 127.0.0.1 at a free port: `dashboard_address=None` would still listen
on 8787; without Dask's MALLOC_TRIM_THRESHOLD_ for its workers) and stopped at the end.

`run_partitions(client, job, parts, on_done)` keeps a window of tasks in flight (a few per worker
thread), hands each finished partition's summary to `on_done` and returns the failures; the
driver holds futures and summaries only, never rows. On an exception (Ctrl-C included) the tasks
still queued are cancelled.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import secrets
import signal
import threading
from typing import Any, Callable, Iterator, Sequence

from distributed.diagnostics.plugin import WorkerPlugin

from galaxy_core.catalog.inputs import CatalogError
from galaxy_core.catalog.partitions import Partition
from galaxy_core.catalog.worker import Job, classify_partition

TASKS_PER_THREAD = 3  # tasks in flight per worker thread: enough to keep workers busy, few futures
QUIET_LOGGERS = ("distributed", "bokeh", "tornado")


def configured_scheduler() -> str | None:
    """The scheduler address of Dask's configuration (`DASK_SCHEDULER_ADDRESS` included), or None."""
    import dask

    return dask.config.get("scheduler-address", None) or None


def local_workers(requested: int | None) -> int:
    """Workers of a local cluster: as asked, else one per core of this process."""
    from galaxy_core.models.predictor import default_threads

    return max(1, requested or default_threads())


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None,
                log: Callable[[str], None] | None = None) -> Iterator[Any]:
    """A Client on `scheduler` (an address), else on a local cluster of `workers` processes."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")  # inherited by local worker processes
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    from distributed import Client, LocalCluster

    address = scheduler or configured_scheduler()
    if address:
        try:
            client = Client(address, timeout="30s")
        except (OSError, TimeoutError) as err:
            raise CatalogError(f"cannot reach the Dask scheduler at {address}: {err}") from err
        with contextlib.closing(client):
            if log is not None:
                log(f"dask: scheduler {address}, {len(client.nthreads())} worker(s)")
            yield client
        return
    n = local_workers(workers)
    import dask

    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers; that turns off glibc's dynamic
    # mmap threshold, so every decoded cutout and batch (> 128 KiB) is mmap'ed and unmapped again:
    # decoding + classifying measured ~1.5x slower with it (bench notes in BENCHMARKS.md). Unset here.
    unset_trim = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    with _workers_ignore_ctrl_c(), dask.config.set(unset_trim):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
    with cluster, Client(cluster) as client:
        client.register_plugin(IgnoreCtrlC())  # and a worker its nanny restarts
        if log is not None:
            log(f"dask: local cluster of {n} worker process(es), dashboard {cluster.dashboard_link}")
        yield client


class IgnoreCtrlC(WorkerPlugin):
    """Worker plugin: the local cluster's workers ignore SIGINT (Ctrl-C reaches the whole process
    group; the command handles it and stops its cluster, so the workers print no traceback)."""

    name = "galaxy-catalog-ignore-ctrl-c"

    def setup(self, worker) -> None:
        with contextlib.suppress(ValueError):  # not the worker process's main thread
            signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """SIGINT ignored while the local workers are spawned: they inherit it from their first instant."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_partitions(client, job: Job, parts: Sequence[Partition],
                   on_done: Callable[[dict[str, Any]], None]) -> list[tuple[int, str]]:
    """Run `classify_partition` over `parts` on the cluster; returns `[(partition, why it failed)]`.

    `on_done(summary)` is called on the driver for each partition committed, in completion order.
    """
    from distributed import as_completed

    if not parts:
        return []
    token = secrets.token_hex(4)
    todo = iter(parts)
    window = max(4, TASKS_PER_THREAD * max(1, sum(client.nthreads().values())))
    pending: dict[Any, int] = {}

    def submit(part: Partition):
        future = client.submit(classify_partition, job, part, key=f"catalog-{token}-{part.index}", pure=False)
        pending[future] = part.index
        return future

    queue = as_completed([submit(p) for p in itertools.islice(todo, window)])
    failures: list[tuple[int, str]] = []
    try:
        for future in queue:
            index = pending.pop(future)
            try:
                summary = future.result()
            except Exception as err:  # noqa: BLE001 - a task's failure is reported, the others go on
                failures.append((index, _describe(err)))
            else:
                on_done(summary)
            future.release()
            nxt = next(todo, None)
            if nxt is not None:
                queue.add(submit(nxt))
    except BaseException:
        client.cancel(list(pending))
        raise
    return failures


def _describe(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if type(err).__name__ == "KilledWorker":
        return f"its workers died while running it ({text}); rerun to retry it"
    return f"{type(err).__name__}: {text}"
