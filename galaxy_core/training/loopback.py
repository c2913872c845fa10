"""Multi-worker runs on one host: free loopback ports and a loopback-only network namespace.

TensorFlow's gRPC server listens on 0.0.0.0 whatever TF_CONFIG names, so a run of several workers on
one machine (tests, `bench/bench_distributed.py`, a laptop trying `--strategy multiworker`) is put in
a network namespace that holds only loopback when the host allows it (`unshare -n`, root), so no
port is opened beyond 127.0.0.1.
"""

from __future__ import annotations

import socket
import subprocess
import time
from contextlib import contextmanager
from typing import Iterator


def free_ports(n: int, consecutive: bool = False) -> list[int]:
    """Ports free on 127.0.0.1 now (`consecutive`: p, p+1, ... as SlurmClusterResolver assigns)."""
    for _ in range(200):
        socks = [socket.socket() for _ in range(n)]
        try:
            socks[0].bind(("127.0.0.1", 0))
            base = socks[0].getsockname()[1]
            for k, s in enumerate(socks[1:], 1):
                s.bind(("127.0.0.1", base + k if consecutive else 0))
            return [s.getsockname()[1] for s in socks]
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


@contextmanager
def loopback_only() -> Iterator[list[str]]:
    """A command prefix that runs a process in a network namespace with only loopback, or []."""
    holder = None
    try:
        holder = subprocess.Popen(["unshare", "-n", "sh", "-c", "ip link set lo up && exec sleep 600"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        probe = subprocess.run(["nsenter", "-t", str(holder.pid), "-n", "--", "true"], capture_output=True)
        ok = holder.poll() is None and probe.returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    try:
        yield ["nsenter", "-t", str(holder.pid), "-n", "--"] if ok else []
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
            holder.wait()
