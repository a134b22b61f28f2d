"""The commits of one small `stream:false` chat: how many, which fsync, how long each.

    python bench/commits.py            # 500 small chats through a foreman in this process

foreman runs here (its store instrumented), the fast target in its own process. For each
transaction: whether it was durable (fsynced at COMMIT), where it ran (the event loop or the
writer thread), its statements, and how long it held the writer (BEGIN to COMMIT, fsync
included), as medians over the jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from typing import Any

import aiohttp
from pair import ROOT, free_port, wait_port

sys.path.insert(0, ROOT)

from foreman.config import load_settings
from foreman.server import Daemon
from foreman.store import database

HELLO = [{"role": "user", "content": "hello"}]


def _shape(statement: str) -> str:
    """A statement without its values: `UPDATE jobs`, `INSERT INTO events`."""
    words = statement.replace("(", " ").split()
    if "INTO" in words:  # INSERT [OR REPLACE] INTO table
        return " ".join(words[: words.index("INTO") + 2])
    return " ".join(words[:2])  # UPDATE table, DELETE FROM


def instrument() -> list[dict[str, Any]]:
    """Record every write transaction of the store (wraps `Database._transaction`)."""
    seen: list[dict[str, Any]] = []
    original = database.Database._transaction

    def timed(self: database.Database, fn: Any, durable: bool, patient: bool) -> Any:
        statements: list[str] = []
        db = self._writer
        assert db is not None
        db.set_trace_callback(statements.append)
        started = time.perf_counter()
        try:
            return original(self, fn, durable, patient)
        finally:
            elapsed = time.perf_counter() - started
            db.set_trace_callback(None)
            where = "loop" if threading.current_thread() is threading.main_thread() else "writer thread"
            body = [_shape(s) for s in statements if not s.startswith(("PRAGMA", "BEGIN", "COMMIT"))]
            seen.append({"durable": durable, "where": where, "statements": body, "seconds": elapsed})

    database.Database._transaction = timed  # type: ignore[method-assign]
    return seen


def start_target(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "foreman", "simulate", "--fast", "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
        stdout=subprocess.DEVNULL,
    )


async def main(n: int) -> None:
    seen = instrument()
    port = free_port()
    sim = start_target(port)
    try:
        wait_port(port)
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(
                environ={
                    "FOREMAN_OLLAMA_URL": f"http://127.0.0.1:{port}",
                    "FOREMAN_LISTEN": "127.0.0.1:0",
                    "FOREMAN_DB_PATH": os.path.join(tmp, "commits.db"),
                }
            )
            daemon = await Daemon.start(settings)
            body = json.dumps({"model": "llama3.2", "messages": HELLO, "stream": False})
            try:
                async with aiohttp.ClientSession() as session:
                    for _ in range(20):  # warm: the first load, imports
                        async with session.post(daemon.url + "/api/chat", data=body) as resp:
                            await resp.read()
                    await asyncio.sleep(0.5)
                    del seen[:]
                    latencies = []
                    for _ in range(n):
                        started = time.perf_counter()
                        async with session.post(daemon.url + "/api/chat", data=body) as resp:
                            await resp.read()
                        latencies.append(time.perf_counter() - started)
            finally:
                await daemon.stop()
    finally:
        sim.terminate()
        sim.wait()
    report(seen, n, latencies)


def report(seen: list[dict[str, Any]], n: int, latencies: list[float]) -> None:
    kinds: dict[tuple[bool, str, tuple[str, ...]], list[float]] = defaultdict(list)
    for t in seen:
        kinds[(t["durable"], t["where"], tuple(t["statements"]))].append(t["seconds"])
    print(f"{n} small stream:false chats, {len(seen)} write transactions ({len(seen) / n:.2f} a job);")
    print(f"client latency p50 {statistics.median(latencies) * 1e3:.2f} ms\n")
    print("| per job | durable (fsync) | runs on | median | statements |")
    print("|---|---|---|---|---|")
    for (durable, where, statements), times in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
        shown = ", ".join(statements) or "(none)"
        median = statistics.median(times) * 1e3
        print(f"| {len(times) / n:.2f} | {'yes' if durable else 'no'} | {where} | {median:.3f} ms | {shown} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    asyncio.run(main(parser.parse_args().jobs))
