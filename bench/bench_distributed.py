"""Multi-worker training on loopback: step time, images/s, bytes all-reduced, projected scaling.

Measured here (real processes, `--strategy multiworker`'s own step: `galaxy_core.training.multiworker`):
- one training step (global batch `B`, split between the workers: the recipe's batch is global)
  with 1 and with 2 worker processes on 127.0.0.1 (TF_CONFIG, free ports; in a network namespace
  holding only loopback when the machine allows one), for a small model (SmallCNN) and for the
  recipe's DenseNet201 with its Flatten head and with a global-average-pooling head
  (weights=None, small batch, few steps: bounded);
- the all-reduce alone: the gradients' shapes summed between the 2 workers, no model (loopback
  gRPC, TensorFlow's CPU ring all-reduce);
- bytes all-reduced per step: the model's trainable variables (float32 gradients), for the
  Flatten head and for a global-average-pooling head at the recipe's 256 px.

Projected (not measured: no GPU here; every figure it rests on is printed with the result):
scaling efficiency = compute / (compute + all-reduce) per step, with no overlap: Keras's optimizer
all-reduces every gradient in one batch after the backward pass, so communication does not hide
behind compute. Per-replica batch 32 (weak scaling), ring all-reduce time = bytes * 2(n-1)/n / bus
bandwidth (NCCL's bus-bandwidth convention).

Usage:
    nice -n 10 python bench/bench_distributed.py [--models small,densenet201,densenet201-gap] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from galaxy_core.training.loopback import free_ports, loopback_only  # noqa: E402
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Assumptions of the projection (not measured here), with where they come from.
ASSUMED = {
    "a100_step_s": (0.026, "one training step of DenseNet201, batch 32 at 256 px, on an NVIDIA A100: "
                           "Keras Applications table (keras.io/api/applications) 6.7 ms per inference step "
                           "of batch 32 at 224 px, x3 for forward + backward, x(256/224)^2 = 1.31 "
                           "(BENCHMARKS.md, 'Projection of the full recipe')"),
    "nvlink_busbw": (230e9, "NCCL all-reduce bus bandwidth on 8 A100s over NVLink/NVSwitch (DGX A100), "
                            "~230 GB/s (NVIDIA nccl-tests all_reduce_perf at large messages)"),
    "ib_busbw": (12.5e9 * 0.9, "100 Gb/s InfiniBand = 12.5 GB/s line rate, ~90% reached by NCCL at large "
                                "messages; between 2 nodes the inter-node link is the ring's slowest hop"),
}
MODELS = {
    "small": dict(backbone="SmallCNN", image_size=64, head="gap", dense_units=128, batch=32),
    "densenet201": dict(backbone="DenseNet201", image_size=256, head="flatten", dense_units=1024, batch=4),
    # the same with a global-average-pooling head: a measured option, not the recipe
    "densenet201-gap": dict(backbone="DenseNet201", image_size=256, head="gap", dense_units=1024, batch=4),
}


# --------------------------------------------------------------------------------------------
# One worker process
# --------------------------------------------------------------------------------------------
def worker(args: argparse.Namespace) -> None:
    import numpy as np
    import tensorflow as tf

    from galaxy_core.config import Config
    from galaxy_core.training import multiworker
    from galaxy_core.training.distribute import make_strategy

    spec = MODELS[args.model]
    cfg = Config(backbone=spec["backbone"], weights="none", image_size=spec["image_size"], head=spec["head"],
                 dense_units=spec["dense_units"], batch_size=args.batch)
    strategy = make_strategy("multiworker")
    started = time.perf_counter()
    model = multiworker.build_synced(cfg, strategy, None)
    build_s = time.perf_counter() - started
    train_step, _ = multiworker.make_steps(model, strategy, np.ones(cfg.num_classes, np.float32))
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.batch * 2, cfg.image_size, cfg.image_size, 3)).astype(np.float32)
    y = np.eye(cfg.num_classes, dtype=np.float32)[np.arange(args.batch * 2) % cfg.num_classes]
    data = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(args.batch)
    batches = iter(strategy.experimental_distribute_dataset(data))
    times = []
    for _ in range(args.warmup + args.steps):
        t = time.perf_counter()
        out = train_step(next(batches))
        float(out[0])  # wait for the step
        times.append(time.perf_counter() - t)
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    grads = [tf.ones(s, tf.float32) for s in shapes]

    @tf.function
    def all_reduce():
        return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce("sum", grads))

    reduce_times = []
    for _ in range(args.warmup + args.steps):
        t = time.perf_counter()
        result = all_reduce()
        float(strategy.experimental_local_results(result)[0][0][(0,) * len(shapes[0])])
        reduce_times.append(time.perf_counter() - t)
    print("RESULT " + json.dumps({
        "model": args.model,
        "replicas": strategy.num_replicas_in_sync, "batch": args.batch, "build_s": build_s,
        "first_step_s": times[0], "step_s": sorted(times[args.warmup:]),
        "all_reduce_s": sorted(reduce_times[args.warmup:]),
        "bytes": int(sum(np.prod(s) for s in shapes) * 4)}), flush=True)


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------
def run_workers(prefix: list[str], model: str, n: int, batch: int, steps: int, warmup: int,
                timeout: float) -> dict:
    ports = free_ports(n)
    workers = [f"127.0.0.1:{p}" for p in ports]
    procs = []
    try:
        for k in range(n):
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
                   "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": k}})}
            procs.append(subprocess.Popen(
                [*prefix, sys.executable, __file__, "--worker", "--model", model, "--batch", str(batch),
                 "--steps", str(steps), "--warmup", str(warmup)],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT))
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    for p, (out, err) in zip(procs, outs):
        if p.returncode != 0:
            raise RuntimeError(f"worker failed ({p.returncode}):\n{err[-3000:]}")
    result = json.loads(outs[0][0].split("RESULT ", 1)[1])
    result["workers"] = n
    return result


def head_bytes(image_size: int = 256) -> dict:
    """Trainable float32 bytes of DenseNet201 with the Flatten head and with a GAP head (built, not trained)."""
    import numpy as np

    from galaxy_core.config import Config
    from galaxy_core.models.network import build_model

    out = {}
    for head in ("flatten", "gap"):
        model = build_model(Config(backbone="DenseNet201", weights="none", image_size=image_size, head=head))
        sizes = {v.path: int(np.prod(v.shape)) for v in model.trainable_variables}
        kernel = max(sizes.values())
        out[head] = {"trainable_bytes": 4 * sum(sizes.values()), "largest_kernel_bytes": 4 * kernel,
                     "parameters": sum(sizes.values())}
        del model
    return out


def projection(bytes_per_step: float) -> dict:
    step = ASSUMED["a100_step_s"][0]
    rows = {}
    for name, n, bw in (("8 GPUs, NVLink", 8, ASSUMED["nvlink_busbw"][0]),
                        ("2 nodes, 100 Gb/s InfiniBand", 2, ASSUMED["ib_busbw"][0])):
        comm = bytes_per_step * 2 * (n - 1) / n / bw
        rows[name] = {"all_reduce_s": comm, "efficiency_no_overlap": step / (step + comm),
                      "efficiency_full_overlap": step / max(step, comm)}
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="small", choices=sorted(MODELS))
    parser.add_argument("--batch", type=int, default=0)
    parser.add_argument("--models", default="small,densenet201,densenet201-gap")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1500)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_distributed.json"))
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    results = {"assumed": {k: {"value": v, "source": s} for k, (v, s) in ASSUMED.items()}, "runs": []}
    results["heads_256px"] = head_bytes()
    print(json.dumps(results["heads_256px"], indent=1), flush=True)
    with loopback_only() as prefix:
        results["network_namespace"] = bool(prefix)
        for model in args.models.split(","):
            for n in (1, 2):
                started = time.perf_counter()
                run = run_workers(prefix, model, n, args.batch or MODELS[model]["batch"], args.steps,
                                  args.warmup, args.timeout)
                run["wall_s"] = time.perf_counter() - started
                results["runs"].append(run)
                print(json.dumps(run), flush=True)
    results["projection"] = {head: projection(v["trainable_bytes"]) for head, v in results["heads_256px"].items()}
    print(json.dumps(results["projection"], indent=1))
    args.out.write_text(json.dumps(results, indent=1))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
