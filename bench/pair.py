"""What every benchmark needs: the simulated target and a foreman in front of it, as processes.

The target is the Tornado simulator (`python -m foreman simulate`), or with `fast=True` the
benchmarks' fast target (`--fast`, foreman/simulator/fast.py, docs/adr/0028)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_memory_mib(pid: int) -> dict[str, float]:
    values = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values


@dataclass(frozen=True)
class Pair:
    sim_url: str
    foreman_url: str
    foreman_pid: int
    db_path: str
    sim_pid: int


@contextmanager
def running_pair(sim_args: tuple[str, ...] = (), fast: bool = False) -> Iterator[Pair]:
    """The simulated target (no delays unless `sim_args` say so; the fast target if `fast`) and
    foreman at its defaults, logging to a file, each in its own process; both stopped on exit."""
    sim_port, foreman_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": ROOT}
        db_path = os.path.join(tmp, "bench.db")
        sim = subprocess.Popen(
            [
                sys.executable,
                *("-m", "foreman", "simulate", "--listen", f"127.0.0.1:{sim_port}"),
                *(("--fast",) if fast else ()),
                *sim_args,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        with open(os.path.join(tmp, "foreman.log"), "wb") as log:
            foreman = subprocess.Popen(
                [sys.executable, "-m", "foreman", "serve"],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env={
                    **env,
                    "FOREMAN_OLLAMA_URL": f"http://127.0.0.1:{sim_port}",
                    "FOREMAN_LISTEN": f"127.0.0.1:{foreman_port}",
                    "FOREMAN_DB_PATH": db_path,
                },
            )
            try:
                wait_port(sim_port)
                wait_port(foreman_port)
                yield Pair(
                    f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{foreman_port}", foreman.pid, db_path, sim.pid
                )
            finally:
                for proc in (foreman, sim):
                    proc.terminate()
                    proc.wait()
