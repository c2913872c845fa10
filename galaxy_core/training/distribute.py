"""Where a run trains: the cluster, resolved once per process; the strategy; the chief; the dtype policy.

- `cluster_for(strategy)`: the run's cluster. Only `--strategy multiworker` has one: from `TF_CONFIG`
  when it is set (`tf.distribute.cluster_resolver.TFConfigClusterResolver`), else from Slurm's
  variables when the process runs in a Slurm step (`SlurmClusterResolver`, TensorFlow's own: no
  parsing of ours), else this process alone. Resolved once and cached: `TF_CONFIG` is parsed
  once, and Slurm's resolver sets `CUDA_VISIBLE_DEVICES` for its task before TensorFlow looks
  for GPUs.
- `make_strategy(name)`: the `tf.distribute` strategy named by `cfg.strategy`, multi-worker with
  the resolved cluster. Also created once per process: `MultiWorkerMirroredStrategy` configures
  the collective ops of the process and may be built only once.
- `is_chief(name)`: whether this process writes files (the lock, checkpoints, TensorBoard logs,
  the bundle): the `chief` task, else worker 0; always True for one machine.
- `dtype_policy(cfg)`: mixed float16 while inside, when asked and a GPU is there.

Slurm: `SLURM_PROCID`, `SLURM_STEP_NUM_TASKS`, `SLURM_STEP_NODELIST` and
`SLURM_STEP_TASKS_PER_NODE` (set by `srun`) name the tasks; task k on a node listens on
`SLURM_PORT_BASE + k` (`GALAXY_SLURM_PORT_BASE`, default 8888, TensorFlow's default). The GPUs of a
node are `SLURM_GPUS_ON_NODE` (else `CUDA_VISIBLE_DEVICES`), shared evenly between the node's tasks by
the resolver; a node without GPUs gives each task its CPU (the resolver then sets no
`CUDA_VISIBLE_DEVICES`). docs/slurm.sbatch launches one task per node with all its GPUs.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import keras
import tensorflow as tf

from galaxy_core.config import Config
from galaxy_core.errors import TrainingError

__all__ = ["Cluster", "cluster_for", "resolve_cluster", "make_strategy", "is_chief", "dtype_policy",
           "SLURM_PORT_BASE_ENV"]

SLURM_PORT_BASE_ENV = "GALAXY_SLURM_PORT_BASE"
SLURM_PORT_BASE = 8888  # SlurmClusterResolver's default
# What `srun` sets in every task of a step; all four are needed to know the step's tasks.
SLURM_STEP_VARIABLES = ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST",
                        "SLURM_STEP_TASKS_PER_NODE")


@dataclass(frozen=True)
class Cluster:
    """The processes of a run and this one's place among them.

    `source` is "local" (this process alone), "TF_CONFIG" or "slurm"; `workers` counts the
    tasks that train (a `chief` task included); `resolver` is the
    `tf.distribute.cluster_resolver.ClusterResolver` to build the strategy with (None: local).
    """

    source: str
    task_type: str | None
    task_id: int
    workers: int
    chief: bool
    resolver: Any = None

    def describe(self) -> str:
        """`2 worker(s) from TF_CONFIG, this is worker 1` (for the run log)."""
        if self.source == "local":
            return "1 worker (this process)"
        role = f"{self.task_type} {self.task_id}" + (" (chief)" if self.chief else "")
        return f"{self.workers} worker(s) from {self.source}, this is {role}"


LOCAL = Cluster("local", None, 0, 1, True)


def _chief_of(cluster_spec: Mapping[str, Any], task_type: str | None, task_id: int) -> bool:
    """The `chief` task, else worker 0 when the cluster has no chief (TensorFlow's own rule)."""
    if task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster_spec


def _from_tf_config(text: str) -> Cluster:
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as err:
        raise TrainingError(f"TF_CONFIG is not valid JSON ({err}); it should look like "
                            '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
                            '"task": {"type": "worker", "index": 0}}.') from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("cluster", {}), dict):
        raise TrainingError("TF_CONFIG must be a JSON object with a 'cluster' object and a 'task'.")
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    spec = resolver.cluster_spec().as_dict()
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    workers = len(spec.get("chief", [])) + len(spec.get("worker", []))
    return Cluster("TF_CONFIG", task_type, task_id, max(workers, 1), _chief_of(spec, task_type, task_id),
                   resolver)


def _from_slurm(environ: Mapping[str, str]) -> Cluster:
    from tensorflow.python.distribute.cluster_resolver.slurm_cluster_resolver import expand_tasks_per_node

    port_base = int(environ.get(SLURM_PORT_BASE_ENV, SLURM_PORT_BASE))
    per_node = max(expand_tasks_per_node(environ["SLURM_STEP_TASKS_PER_NODE"]))
    if environ.get("SLURM_GPUS_ON_NODE"):
        gpus = int(environ["SLURM_GPUS_ON_NODE"])
    else:
        gpus = len([d for d in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()])
    if gpus:
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(port_base=port_base,
                                                                      gpus_per_node=gpus)
    else:  # CPU nodes: one "slot" per task, and no CUDA_VISIBLE_DEVICES set (the resolver's GPU
        # arithmetic needs at least one slot per task: gpus_per_task 0 is a zero range step there)
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(
            port_base=port_base, gpus_per_node=per_node, gpus_per_task=1, auto_set_gpu=False)
    spec = resolver.cluster_spec().as_dict()  # also sets CUDA_VISIBLE_DEVICES (GPU nodes)
    task_type, task_id = resolver.task_type, int(resolver.task_id)
    return Cluster("slurm", task_type, task_id, len(spec.get("worker", [])),
                   _chief_of(spec, task_type, task_id), resolver)


def resolve_cluster(strategy: str, environ: Mapping[str, str] | None = None) -> Cluster:
    """The cluster of a run with `strategy` (uncached; `cluster_for` caches it).

    Raises:
        TrainingError: `TF_CONFIG` that is not a JSON object.
    """
    environ = os.environ if environ is None else environ
    if strategy != "multiworker":
        return LOCAL
    if environ.get("TF_CONFIG"):
        return _from_tf_config(environ["TF_CONFIG"])
    if all(environ.get(name) for name in SLURM_STEP_VARIABLES):
        return _from_slurm(environ)
    return LOCAL


_CLUSTERS: dict[str, Cluster] = {}
_STRATEGIES: dict[str, tf.distribute.Strategy] = {}


def cluster_for(strategy: str) -> Cluster:
    """The run's cluster, resolved on the first call of the process and reused after."""
    if strategy not in _CLUSTERS:
        _CLUSTERS[strategy] = resolve_cluster(strategy)
    return _CLUSTERS[strategy]


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The distribution strategy named by `cfg.strategy` (one per process and name).

    "default": one device (the first GPU if any, else CPU). "mirrored": all local GPUs (or the
    logical CPU devices). "multiworker": `MultiWorkerMirroredStrategy` over `cluster_for(name)`.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name not in ("mirrored", "multiworker"):
        raise TrainingError(f"Unknown strategy {name!r}; use default, mirrored or multiworker.")
    if name not in _STRATEGIES:
        if name == "mirrored":
            _STRATEGIES[name] = tf.distribute.MirroredStrategy()
        else:
            cluster = cluster_for(name)
            if cluster.source == "local":
                print("note: strategy 'multiworker' without TF_CONFIG or a Slurm step runs as a single "
                      "worker", file=sys.stderr)
            _STRATEGIES[name] = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=cluster.resolver)
    return _STRATEGIES[name]


def is_chief(strategy: str = "multiworker") -> bool:
    """True unless the run's cluster names this process a non-chief worker (only the chief writes)."""
    return cluster_for(strategy).chief


@contextlib.contextmanager
def dtype_policy(cfg: Config) -> Iterator[list]:
    """Mixed float16 while inside when `cfg.mixed_precision` and a GPU is there; yields the GPUs."""
    gpus = tf.config.list_physical_devices("GPU")
    old = keras.mixed_precision.global_policy()
    if cfg.mixed_precision and gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield gpus
    finally:
        keras.mixed_precision.set_global_policy(old)
