"""Benchmark: foreman against the simulated Ollama reached directly, in one run.

Starts the simulated target (no delays) and a foreman in front of it, each in its own process,
then measures with an aiohttp load generator (cheap enough not to be the bottleneck), in rounds
that alternate direct and foreman so both see the same machine noise:

- streamed /api/chat time to first byte (p50, p99);
- chunks per second of one long stream (20,000 chunks, no delay);
- small stream:false chat latency (p50, p99);
- foreman's CPU time per request, idle RSS and peak RSS.

Each figure is the median over rounds, and each foreman figure is also given as a ratio to
direct. Every foreman request here is a persisted job (synchronous=FULL). Usage:

    python bench/bench_face.py [--rounds 5] [--requests 200] [--chunks 20000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import aiohttp
from pair import percentile, proc_cpu_seconds, proc_memory_mib, running_pair

HELLO = [{"role": "user", "content": "hello there"}]

TARGETS = {  # issue #2: foreman / direct, same run
    "ttfb_p50": ("<=", 2.5),
    "stream_chunks_per_s": (">=", 0.5),
    "small_p50": ("<=", 6.0),
}


async def ttfb(session: aiohttp.ClientSession, url: str, n: int) -> list[float]:
    body = json.dumps({"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 8}})
    out = []
    for _ in range(n):
        start = time.perf_counter()
        async with session.post(url + "/api/chat", data=body) as resp:
            await resp.content.readline()
            out.append(time.perf_counter() - start)
            await resp.read()
    return out


async def long_stream(session: aiohttp.ClientSession, url: str, chunks: int) -> float:
    body = json.dumps({"model": "llama3.2", "messages": HELLO, "options": {"num_predict": chunks}})
    lines = 0
    async with session.post(url + "/api/chat", data=body) as resp:
        first = await resp.content.readline()
        start = time.perf_counter()
        lines = 1 if first else 0
        while data := await resp.content.readany():
            lines += data.count(b"\n")
        elapsed = time.perf_counter() - start
    return (lines - 1) / elapsed


async def small(session: aiohttp.ClientSession, url: str, n: int) -> list[float]:
    body = json.dumps({"model": "llama3.2", "messages": HELLO, "stream": False})
    out = []
    for _ in range(n):
        start = time.perf_counter()
        async with session.post(url + "/api/chat", data=body) as resp:
            await resp.read()
        out.append(time.perf_counter() - start)
    return out


async def run_rounds(direct: str, foreman: str, foreman_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    per_round: dict[str, dict[str, list[float]]] = {"direct": {}, "foreman": {}}
    cpu_per_request: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        for url in (direct, foreman):  # warm up: model resident, pools filled
            await small(session, url, 20)
            await ttfb(session, url, 20)
        for _ in range(args.rounds):
            for name, url in (("direct", direct), ("foreman", foreman)):
                cpu_before = proc_cpu_seconds(foreman_pid)
                t = await ttfb(session, url, args.requests)
                s = await small(session, url, args.requests)
                if name == "foreman":
                    cpu_per_request.append((proc_cpu_seconds(foreman_pid) - cpu_before) / (2 * args.requests))
                c = await long_stream(session, url, args.chunks)
                figures = per_round[name]
                figures.setdefault("ttfb_p50", []).append(percentile(t, 0.5))
                figures.setdefault("ttfb_p99", []).append(percentile(t, 0.99))
                figures.setdefault("small_p50", []).append(percentile(s, 0.5))
                figures.setdefault("small_p99", []).append(percentile(s, 0.99))
                figures.setdefault("stream_chunks_per_s", []).append(c)
    medians = {side: {k: statistics.median(v) for k, v in figs.items()} for side, figs in per_round.items()}
    return {"medians": medians, "foreman_cpu_ms_per_request": statistics.median(cpu_per_request) * 1000}


def report(result: dict[str, Any]) -> None:
    direct, foreman = result["medians"]["direct"], result["medians"]["foreman"]
    print(f"{'measure':24} {'direct':>12} {'foreman':>12} {'ratio':>7}  target")
    for key in ("ttfb_p50", "ttfb_p99", "small_p50", "small_p99", "stream_chunks_per_s"):
        scale, unit = (1, "/s") if key.endswith("per_s") else (1000, "ms")
        ratio = foreman[key] / direct[key]
        target = ""
        if key in TARGETS:
            op, bound = TARGETS[key]
            ok = ratio <= bound if op == "<=" else ratio >= bound
            target = f"{op} {bound}x {'ok' if ok else 'MISSED'}"
        print(
            f"{key:24} {direct[key] * scale:10.2f}{unit:>2} {foreman[key] * scale:10.2f}{unit:>2} "
            f"{ratio:6.2f}x  {target}"
        )
    print(f"foreman CPU per request: {result['foreman_cpu_ms_per_request']:.2f} ms")
    mem = result["foreman_memory_mib"]
    print(f"foreman RSS: idle {mem['idle_rss']:.1f} MiB (target < 50), peak {mem['peak_rss']:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=20000)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    with running_pair() as pair:
        time.sleep(1.0)
        idle = proc_memory_mib(pair.foreman_pid)["VmRSS"]
        result = asyncio.run(run_rounds(pair.sim_url, pair.foreman_url, pair.foreman_pid, args))
        result["foreman_memory_mib"] = {"idle_rss": idle, "peak_rss": proc_memory_mib(pair.foreman_pid)["VmHWM"]}
    result["settings"] = vars(args)
    report(result)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
