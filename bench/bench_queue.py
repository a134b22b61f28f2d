"""Benchmark: 10,000 jobs queued. Does submitting and picking stay flat as the queue grows?

A first job that would generate for hours keeps the worker busy, so every job submitted
after it through `POST /jobs` stays queued. Measured in one run:

- submit latency (p50, p99) over the first and the last `--window` submissions of the burst;
- the cost of picking the next job (the worker's two queries, run on the database file) with an
  empty queue and with the whole burst queued;
- foreman's peak RSS, then the time to drain the queue once the first job is cancelled.

Usage: python bench/bench_queue.py [--jobs 10000] [--window 500] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import time

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pair import ROOT, percentile, proc_memory_mib, running_pair

sys.path.insert(0, ROOT)
from foreman.store.jobs import _NEXT_ANY, _NEXT_FOR_MODEL  # the worker's own queries

MODELS = ("llama3.2", "qwen3")


def pick_cost_us(db_path: str, rounds: int = 2000) -> float:
    """Median µs of the worker's next-job lookups, read on the database file."""
    conn = sqlite3.connect(db_path)
    samples = []
    for i in range(rounds):
        start = time.perf_counter()
        conn.execute(_NEXT_FOR_MODEL, {"model": f"{MODELS[i % 2]}:latest", "at": time.time()}).fetchall()
        conn.execute(_NEXT_ANY, {"at": time.time()}).fetchall()
        samples.append(time.perf_counter() - start)
    conn.close()
    return percentile(samples, 0.5) * 1e6


async def burst(url: str, jobs: int, concurrency: int) -> list[float]:
    latencies = [0.0] * jobs
    counter = iter(range(jobs))

    async def submitter(session: aiohttp.ClientSession) -> None:
        for i in counter:
            body = json.dumps({"model": MODELS[i % 2], "messages": [{"role": "user", "content": f"job {i}"}]})
            start = time.perf_counter()
            async with session.post(url + "/jobs", data=body) as resp:
                assert resp.status == 202, await resp.text()
                await resp.read()
            latencies[i] = time.perf_counter() - start

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        await asyncio.gather(*(submitter(session) for _ in range(concurrency)))
    return latencies


async def block(url: str, sim: str) -> str:
    """Start a job that keeps the worker busy until it is cancelled."""
    async with aiohttp.ClientSession() as session:
        await session.post(sim + "/_sim/config", json={"token_delay": 0.01})
        body = {
            "model": MODELS[0],
            "messages": [{"role": "user", "content": "forever"}],
            "options": {"num_predict": 10**7},
        }
        async with session.post(url + "/jobs", json=body) as resp:
            job_id = str((await resp.json())["job_id"])
        for _ in range(100):
            async with session.get(f"{url}/jobs/{job_id}") as resp:
                if (await resp.json())["state"] == "working":
                    return job_id
            await asyncio.sleep(0.1)
    raise RuntimeError("the blocking job never started")


async def drain(url: str, sim: str, blocker: str, timeout: float) -> float:
    async with aiohttp.ClientSession() as session:
        await session.post(sim + "/_sim/config", json={"token_delay": 0.0})
        await session.delete(f"{url}/jobs/{blocker}")
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            async with session.get(url + "/healthz") as resp:
                queue = (await resp.json())["queue"]
            if not any(queue.values()):
                return time.perf_counter() - start
            await asyncio.sleep(0.5)
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with running_pair() as pair:
        time.sleep(1.0)  # the first poll has the inventory
        empty_pick = pick_cost_us(pair.db_path)
        idle_rss = proc_memory_mib(pair.foreman_pid)["VmRSS"]
        blocker = asyncio.run(block(pair.foreman_url, pair.sim_url))
        latencies = asyncio.run(burst(pair.foreman_url, args.jobs, args.concurrency))
        full_pick = pick_cost_us(pair.db_path)
        peak = proc_memory_mib(pair.foreman_pid)["VmHWM"]
        first, last = latencies[: args.window], latencies[-args.window :]
        print(f"{args.jobs} jobs submitted with {args.concurrency} clients behind a busy worker (all stay queued)")
        print(
            f"submit latency, first {args.window}: p50 {percentile(first, 0.5) * 1e3:.2f} ms, "
            f"p99 {percentile(first, 0.99) * 1e3:.2f} ms"
        )
        print(
            f"submit latency, last {args.window}:  p50 {percentile(last, 0.5) * 1e3:.2f} ms, "
            f"p99 {percentile(last, 0.99) * 1e3:.2f} ms"
        )
        print(f"next-job pick: {empty_pick:.1f} µs with an empty queue, {full_pick:.1f} µs with {args.jobs} queued")
        print(f"foreman RSS: idle {idle_rss:.1f} MiB, peak {peak:.1f} MiB")
        drained = asyncio.run(drain(pair.foreman_url, pair.sim_url, blocker, timeout=600))
        rate = args.jobs / drained
        print(f"drained {args.jobs} jobs in {drained:.1f} s once the blocker was cancelled ({rate:.0f} jobs/s)")


if __name__ == "__main__":
    main()
