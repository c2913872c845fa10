"""Where a run trains (galaxy_core.training.distribute): the cluster from TF_CONFIG or from Slurm's
variables, the chief, and real two-process runs of `train.py --strategy multiworker` on loopback:
one from TF_CONFIG that writes one bundle, and one started from Slurm's variables whose second
worker is SIGKILLed after epoch 1 and that the same commands then finish.

The worker processes run in a private network namespace holding only a loopback device when the
machine allows one (`unshare -n`): TensorFlow's gRPC server listens on every interface (it binds
0.0.0.0:<port>, not the host named in the cluster), so there nothing outside can reach them. Each
test stops what it started by its own handles (try/finally).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_galaxy10_like

from galaxy_core.config import Config
from galaxy_core.errors import TrainingError
from galaxy_core.training.distribute import SLURM_PORT_BASE_ENV, resolve_cluster
from galaxy_core.training.loopback import free_ports, loopback_only

ROOT = Path(__file__).resolve().parents[1]
CLASSES = Config().class_names  # the 10 Galaxy10 classes; the images show label % 4 (a quadrant)
SLURM_VARS = ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST", "SLURM_STEP_TASKS_PER_NODE",
              "SLURM_GPUS_ON_NODE")


# --------------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------------
@pytest.fixture
def clean_env(monkeypatch):
    for name in ("TF_CONFIG", *SLURM_VARS):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def tf_config(workers, index, kind="worker", chief=None):
    cluster = {"worker": workers, **({"chief": [chief]} if chief else {})}
    return json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})


def test_tf_config_worker_zero_is_chief_without_a_chief_task(clean_env):
    workers = ["127.0.0.1:1111", "127.0.0.1:2222"]
    clean_env.setenv("TF_CONFIG", tf_config(workers, 0))
    first = resolve_cluster("multiworker")
    clean_env.setenv("TF_CONFIG", tf_config(workers, 1))
    second = resolve_cluster("multiworker")
    assert (first.source, first.workers, first.chief, first.task_id) == ("TF_CONFIG", 2, True, 0)
    assert (second.workers, second.chief, second.task_id) == (2, False, 1)
    assert "2 worker(s) from TF_CONFIG, this is worker 1" == second.describe()


def test_tf_config_chief_task_is_the_chief(clean_env):
    clean_env.setenv("TF_CONFIG", tf_config(["127.0.0.1:2222"], 0, chief="127.0.0.1:1111"))
    assert not resolve_cluster("multiworker").chief  # worker 0 is not the chief when a chief exists
    clean_env.setenv("TF_CONFIG", tf_config(["127.0.0.1:2222"], 0, kind="chief", chief="127.0.0.1:1111"))
    cluster = resolve_cluster("multiworker")
    assert cluster.chief and cluster.workers == 2


def test_bad_tf_config_says_what_it_should_look_like(clean_env):
    clean_env.setenv("TF_CONFIG", "{cluster: worker}")
    with pytest.raises(TrainingError, match="TF_CONFIG is not valid JSON.*should look like"):
        resolve_cluster("multiworker")


def test_one_machine_strategies_ignore_the_cluster(clean_env):
    clean_env.setenv("TF_CONFIG", tf_config(["127.0.0.1:1", "127.0.0.1:2"], 1))
    assert resolve_cluster("mirrored").chief and resolve_cluster("default").source == "local"
    clean_env.delenv("TF_CONFIG")
    assert resolve_cluster("multiworker").source == "local"  # nothing set: one worker


def slurm_env(procid, ntasks=2, port_base=8888, nodes="127.0.0.1"):
    return {"SLURM_PROCID": str(procid), "SLURM_STEP_NUM_TASKS": str(ntasks),
            "SLURM_STEP_NODELIST": nodes, "SLURM_STEP_TASKS_PER_NODE": str(ntasks),
            SLURM_PORT_BASE_ENV: str(port_base)}


def test_slurm_variables_give_the_cluster_through_slurm_cluster_resolver(clean_env):
    for name, value in slurm_env(1, port_base=23456).items():
        clean_env.setenv(name, value)
    cluster = resolve_cluster("multiworker")
    assert type(cluster.resolver).__name__ == "SlurmClusterResolver"
    assert cluster.resolver.cluster_spec().as_dict() == {"worker": ["127.0.0.1:23456", "127.0.0.1:23457"]}
    assert (cluster.source, cluster.workers, cluster.task_id, cluster.chief) == ("slurm", 2, 1, False)
    assert "CUDA_VISIBLE_DEVICES" not in os.environ or os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_slurm_gpu_nodes_share_their_gpus_between_tasks(clean_env):
    # 2 nodes x 1 task, 4 GPUs each: every task gets all 4 (SlurmClusterResolver's allocation).
    for name, value in {**slurm_env(1, nodes="gpu[01-02]"), "SLURM_STEP_TASKS_PER_NODE": "1(x2)",
                        "SLURM_GPUS_ON_NODE": "4"}.items():
        clean_env.setenv(name, value)
    clean_env.setenv("CUDA_VISIBLE_DEVICES", "")
    cluster = resolve_cluster("multiworker")
    assert cluster.resolver.cluster_spec().as_dict() == {"worker": ["gpu01:8888", "gpu02:8888"]}
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2,3" and cluster.resolver.num_accelerators() == {"GPU": 4}


# --------------------------------------------------------------------------------------------
# Real two-process runs on loopback
# --------------------------------------------------------------------------------------------


def write_data(path, n=200):
    """32 px images of the 10 classes (20 each), a bright square in quadrant label % 4."""
    from test_train import quadrant_images

    labels = np.arange(n) % 10
    return write_galaxy10_like(path, n=n, size=32, labels=labels, images=quadrant_images(labels % 4))


def train_command(data, out, tmp, epochs=2):
    return [sys.executable, str(ROOT / "train.py"), "--data", str(data), "--out", str(out), "--cache-dir",
            str(tmp / "cache"), "--strategy", "multiworker", "--backbone", "SmallCNN", "--weights", "none",
            "--image-size", "32", "--epochs", str(epochs), "--head", "gap",
            "--dense-units", "32", "--batch-size", "32", "--learning-rate", "3e-3", "--rotation-factor", "0",
            "--zoom-factor", "0", "--contrast-factor", "0", "--explain-errors", "2", "--explain-correct", "1",
            "--smooth-samples", "2", "--faithfulness-steps", "0", "--no-progress"]


def start_workers(prefix, command, envs, tmp, tag):
    """One process per env in `envs`, stdout+stderr to tmp/<tag>-<k>.log; their private TMPDIR."""
    procs = []
    for k, extra in enumerate(envs):
        scratch = tmp / f"tmp-{tag}-{k}"
        scratch.mkdir(exist_ok=True)
        env = {**{n: v for n, v in os.environ.items() if n not in ("TF_CONFIG", *SLURM_VARS)},
               "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2", "TMPDIR": str(scratch), **extra}
        log = open(tmp / f"{tag}-{k}.log", "w")
        procs.append(subprocess.Popen([*prefix, *command], env=env, stdout=log, stderr=subprocess.STDOUT,
                                      cwd=tmp))
        log.close()
    return procs


def stop(procs):
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def wait_all(procs, timeout=240):
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.wait(timeout=max(1, deadline - time.monotonic()))
    return [proc.returncode for proc in procs]


def read(tmp, tag, k):
    return (tmp / f"{tag}-{k}.log").read_text()


def tensorboard_scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    return {tag: [e.step for e in acc.Tensors(tag)] for tag in acc.Tags()["tensors"]}


@pytest.mark.slow
def test_two_workers_from_tf_config_write_one_bundle(tmp_path):
    from galaxy_core.bundle.read import load_bundle
    from galaxy_core.models.network import load_model

    data, out = write_data(tmp_path / "quadrants.h5"), tmp_path / "runs" / "mw"
    ports = free_ports(2)
    workers = [f"127.0.0.1:{p}" for p in ports]
    with loopback_only() as prefix:
        procs = start_workers(prefix, train_command(data, out, tmp_path),
                              [{"TF_CONFIG": tf_config(workers, k)} for k in range(2)], tmp_path, "tf")
        try:
            codes = wait_all(procs)
        finally:
            stop(procs)
    chief, worker = read(tmp_path, "tf", 0), read(tmp_path, "tf", 1)
    assert codes == [0, 0], chief[-3000:] + worker[-3000:]
    assert "multi-worker training: 2 worker(s), 2 replica(s) in sync, epochs 1-2" in chief
    assert "this is worker 0 (chief)" in chief and "this is worker 1" in worker
    assert "bundle written" in chief and "bundle written" not in worker
    # one bundle, nothing else next to it (no lock, work or partial folder); the worker's scratch is gone
    assert sorted(p.name for p in out.parent.iterdir()) == ["mw"]
    assert list((tmp_path / "tmp-tf-1").iterdir()) == []
    bundle = load_bundle(out)
    assert bundle.run_info["workers"] == 2 and bundle.run_info["replicas"] == 2 and bundle.run_info["strategy"] == "multiworker"
    assert list(bundle.history["epoch"]) == [1, 2]
    model = load_model(out / "model.keras")
    probs = model.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0)
    assert probs.shape == (2, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    # TensorBoard logs inside the bundle: loss/accuracy of both, learning rate, per-class val recall
    train = tensorboard_scalars(out / "tensorboard" / "train")
    val = tensorboard_scalars(out / "tensorboard" / "validation")
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= set(train)
    recalls = {f"recall/{k}_{c.replace(' ', '_')}" for k, c in enumerate(CLASSES)}
    assert {"epoch_loss", "epoch_accuracy", *recalls} <= set(val)
    assert train["epoch_loss"] == [0, 1] and val["recall/9_Edge-on_with_Bulge"] == [0, 1]


@pytest.mark.slow
def test_slurm_run_continues_after_a_worker_is_killed(tmp_path):
    """Slurm's variables for 2 tasks on this host start a real 2-process run (SlurmClusterResolver;
    TensorFlow 2.21 expands the node list itself, so no `scontrol` is needed). Worker 1 is SIGKILLed
    after epoch 1; the chief's collective ops are aborted and it exits with an error; the same
    commands then continue from the last checkpointed epoch and finish."""
    data, out = write_data(tmp_path / "quadrants.h5"), tmp_path / "runs" / "slurm"
    command = train_command(data, out, tmp_path, epochs=3)
    with loopback_only() as prefix:
        port = free_ports(2, consecutive=True)[0]
        envs = [slurm_env(k, port_base=port) for k in range(2)]
        procs = start_workers(prefix, command, envs, tmp_path, "first")
        try:
            deadline = time.monotonic() + 180
            while "Epoch 1/3" not in read(tmp_path, "first", 0):
                assert time.monotonic() < deadline and procs[0].poll() is None, read(tmp_path, "first", 0)[-3000:]
                time.sleep(0.2)
            procs[1].send_signal(signal.SIGKILL)
            chief_code = procs[0].wait(timeout=120)  # its heartbeats to worker 1 fail: aborted
        finally:
            stop(procs)
        first = read(tmp_path, "first", 0)
        assert chief_code == 2 and "error: a worker of the multi-worker run stopped" in first, first[-3000:]
        assert "Traceback" not in first
        state = json.loads((out.parent / ".slurm.work" / "state.json").read_text())
        assert 1 <= state["epochs_done"] < 3 and not out.exists()

        port = free_ports(2, consecutive=True)[0]
        procs = start_workers(prefix, command, [slurm_env(k, port_base=port) for k in range(2)], tmp_path, "again")
        try:
            codes = wait_all(procs)
        finally:
            stop(procs)
    chief = read(tmp_path, "again", 0)
    assert codes == [0, 0], chief[-3000:] + read(tmp_path, "again", 1)[-3000:]
    assert "2 worker(s) from slurm, this is worker 0 (chief)" in chief
    assert f"resuming after epoch {state['epochs_done']}" in chief
    assert f"epochs {state['epochs_done'] + 1}-3" in chief
    lines = (out / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3"]  # each epoch once
    assert json.loads((out / "run.json").read_text())["resumed"] is True
    assert sorted(p.name for p in out.parent.iterdir()) == ["slurm"]
