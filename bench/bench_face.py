"""Benchmark: foreman against the target reached directly, in one run, against two targets.

Starts two pairs of processes (bench/pair.py): the fast target (`foreman simulate --fast`, a
raw asyncio server, docs/adr/0028) with a foreman in front of it, and the Tornado simulator
(`foreman simulate`, no delays) with a foreman in front of it. Each round measures all four
sides in turn (fast, foreman on fast, Tornado, foreman on Tornado), so every side sees the same
machine noise, with an aiohttp load generator in this process:

- streamed /api/chat time to first byte (p50, p99);
- small stream:false chat latency (p50, p99);
- chunks per second of one long stream (20,000 chunks, no delay);
- /api/embed requests per second at concurrency 16;
- CPU time of the process answering (foreman's, or the target's when direct) per small
  request and per streamed request of 200 tokens;
- foreman's idle and peak RSS.

Each figure is the median over rounds; a foreman figure is given as a ratio to the target it
is in front of: the fast ratio is the honest one (the Tornado simulator, at about 0.5 ms to a
first byte, makes any front look cheap), the Tornado one is kept for comparison with earlier
runs. Every foreman request here is a persisted job (synchronous=FULL). Usage:

    python bench/bench_face.py [--rounds 5] [--requests 200] [--chunks 20000] [--json out.json]
                               [--fast-loop auto|asyncio|uvloop]

The fast target runs on uvloop when it is installed (the test extra installs it), else on
asyncio's loop; foreman always runs on asyncio's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from contextlib import ExitStack
from typing import Any

import aiohttp
from pair import Pair, percentile, proc_cpu_seconds, proc_memory_mib, running_pair

HELLO = [{"role": "user", "content": "hello there"}]
SIDES = ("fast", "foreman_fast", "tornado", "foreman_tornado")  # each foreman side follows its target
EMBED_CONCURRENCY = 16
STREAM_TOKENS = 200

# issue 13, against the fast target: (key, "ratio" or an absolute figure, bound)
TARGETS = {
    "ttfb_p50": ("<=", 4.0),
    "small_p50": ("<=", 6.0),
    "stream_chunks_per_s": (">=", 0.6),
    "embed_c16_per_s": (">=", 0.35),
}
CPU_200_TARGET_MS = 3.5
PEAK_RSS_TARGET_MIB = 50.0


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


async def streams(session: aiohttp.ClientSession, url: str, n: int, tokens: int) -> None:
    body = json.dumps({"model": "llama3.2", "messages": HELLO, "options": {"num_predict": tokens}})
    for _ in range(n):
        async with session.post(url + "/api/chat", data=body) as resp:
            await resp.read()


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


async def embed_rate(session: aiohttp.ClientSession, url: str, n: int) -> float:
    """Requests per second of `n` embeddings sent by EMBED_CONCURRENCY clients at once."""
    body = json.dumps({"model": "nomic-embed-text", "input": "hello there"})
    left = n

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with session.post(url + "/api/embed", data=body) as resp:
                await resp.read()
                assert resp.status == 200, resp.status

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(EMBED_CONCURRENCY)))
    return n / (time.perf_counter() - start)


def cpu_ms(pid: int, before: float, count: int) -> float:
    return (proc_cpu_seconds(pid) - before) / count * 1000


async def one_side(session: aiohttp.ClientSession, url: str, pid: int, args: argparse.Namespace) -> dict[str, float]:
    """Every measure once on one side; `pid` is the process answering (whose CPU is counted)."""
    before = proc_cpu_seconds(pid)
    t = await ttfb(session, url, args.requests)
    s = await small(session, url, args.requests)
    cpu_request = cpu_ms(pid, before, 2 * args.requests)
    n_streams = max(args.requests // 2, 1)
    before = proc_cpu_seconds(pid)
    await streams(session, url, n_streams, STREAM_TOKENS)
    cpu_stream = cpu_ms(pid, before, n_streams)
    embeds = await embed_rate(session, url, 4 * args.requests)
    c = await long_stream(session, url, args.chunks)
    return {
        "ttfb_p50": percentile(t, 0.5),
        "ttfb_p99": percentile(t, 0.99),
        "small_p50": percentile(s, 0.5),
        "small_p99": percentile(s, 0.99),
        "stream_chunks_per_s": c,
        "embed_c16_per_s": embeds,
        "cpu_ms_per_request": cpu_request,
        "cpu_ms_per_200_token_stream": cpu_stream,
    }


async def run_rounds(fast: Pair, tornado: Pair, args: argparse.Namespace) -> dict[str, Any]:
    sides = {
        "fast": (fast.sim_url, fast.sim_pid),
        "foreman_fast": (fast.foreman_url, fast.foreman_pid),
        "tornado": (tornado.sim_url, tornado.sim_pid),
        "foreman_tornado": (tornado.foreman_url, tornado.foreman_pid),
    }
    per_round: dict[str, dict[str, list[float]]] = {side: {} for side in SIDES}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None), connector=connector) as session:
        for url, _ in sides.values():  # warm up: models resident, pools filled
            await small(session, url, 20)
            await ttfb(session, url, 20)
            await embed_rate(session, url, 40)
        for _ in range(args.rounds):
            for side in SIDES:
                url, pid = sides[side]
                for key, value in (await one_side(session, url, pid, args)).items():
                    per_round[side].setdefault(key, []).append(value)
    medians = {side: {k: statistics.median(v) for k, v in figs.items()} for side, figs in per_round.items()}
    return {"medians": medians, "rounds": per_round}


ROWS = (  # key, label, scale, unit
    ("ttfb_p50", "streamed /api/chat time to first byte p50", 1000, "ms"),
    ("ttfb_p99", "streamed time to first byte p99", 1000, "ms"),
    ("small_p50", "small stream:false chat p50", 1000, "ms"),
    ("small_p99", "small stream:false chat p99", 1000, "ms"),
    ("stream_chunks_per_s", "one long stream, chunks per second", 1, "/s"),
    ("embed_c16_per_s", "/api/embed at concurrency 16, req/s", 1, "/s"),
    ("cpu_ms_per_request", "CPU of the answering process per small request", 1, "ms"),
    ("cpu_ms_per_200_token_stream", "CPU of the answering process per 200-token stream", 1, "ms"),
)


def _cell(value: float, scale: float, unit: str) -> str:
    v = value * scale
    return f"{v:,.0f}{unit}" if unit == "/s" else f"{v:.2f} {unit}"


def verdict(key: str, ratio: float, foreman_value: float) -> str:
    if key in TARGETS:
        op, bound = TARGETS[key]
        ok = ratio <= bound if op == "<=" else ratio >= bound
        return f"{op} {bound}x {'ok' if ok else 'MISSED'}"
    if key == "cpu_ms_per_200_token_stream":
        return f"<= {CPU_200_TARGET_MS} ms {'ok' if foreman_value <= CPU_200_TARGET_MS else 'MISSED'}"
    return ""


def report(result: dict[str, Any]) -> None:
    m = result["medians"]
    print(
        "| measure | fast target | foreman on fast | ratio | Tornado simulator | foreman on Tornado | ratio "
        "| issue 13 target (fast ratio) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for key, label, scale, unit in ROWS:
        fast, ff, tor, ft = (m[side][key] for side in SIDES)
        cells = [_cell(v, scale, unit) for v in (fast, ff, tor, ft)]
        if key.startswith("cpu_"):  # the CPU of whichever process answered: no ratio, it is not like for like
            print(f"| {label} | {cells[0]} | {cells[1]} | | {cells[2]} | {cells[3]} | | {verdict(key, 0, ff)} |")
            continue
        r_fast, r_tor = ff / fast, ft / tor
        print(
            f"| {label} | {cells[0]} | {cells[1]} | {r_fast:.2f}x | {cells[2]} | {cells[3]} | {r_tor:.2f}x "
            f"| {verdict(key, r_fast, ff)} |"
        )
    mem = result["foreman_memory_mib"]
    peak = mem["foreman_fast"]["peak_rss"]
    ok = "ok" if peak <= PEAK_RSS_TARGET_MIB else "MISSED"
    print(
        f"| foreman RSS idle / peak | | {mem['foreman_fast']['idle_rss']:.1f} / {peak:.1f} MiB | | "
        f"| {mem['foreman_tornado']['idle_rss']:.1f} / {mem['foreman_tornado']['peak_rss']:.1f} MiB | "
        f"| peak <= {PEAK_RSS_TARGET_MIB:.0f} MiB {ok} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=20000)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--fast-loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="the fast target's event loop"
    )
    args = parser.parse_args()

    with ExitStack() as stack:
        fast = stack.enter_context(running_pair(("--loop", args.fast_loop), fast=True))
        tornado = stack.enter_context(running_pair())
        time.sleep(1.0)
        idle = {name: proc_memory_mib(p.foreman_pid)["VmRSS"] for name, p in (("fast", fast), ("tornado", tornado))}
        result = asyncio.run(run_rounds(fast, tornado, args))
        result["foreman_memory_mib"] = {
            f"foreman_{name}": {"idle_rss": idle[name], "peak_rss": proc_memory_mib(p.foreman_pid)["VmHWM"]}
            for name, p in (("fast", fast), ("tornado", tornado))
        }
    result["settings"] = vars(args)
    report(result)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
