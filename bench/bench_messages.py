"""Benchmark: a streamed Anthropic `/v1/messages` through foreman vs the target directly, one run.

The target is the simulated Ollama (the Tornado one: the fast benchmark target speaks only the
native API), started with `--tokens` as its default reply length, no delays. Rounds alternate
direct and foreman so both see the same noise:

- time to the first SSE event (`message_start`), p50 and p99 over `--requests` short streams;
- events per second of one long stream (`--tokens` content_block_delta events).

Every foreman request is a persisted job. Usage:

    python bench/bench_messages.py [--rounds 5] [--requests 100] [--tokens 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pair import percentile, running_pair


def body(tokens: int) -> str:
    return json.dumps(
        {
            "model": "llama3.2",
            "max_tokens": tokens,
            "stream": True,
            "messages": [{"role": "user", "content": "hello there"}],
        }
    )


async def first_event(session: aiohttp.ClientSession, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        async with session.post(url + "/v1/messages", data=body(8)) as resp:
            await resp.content.readline()
            out.append(time.perf_counter() - start)
            await resp.read()
    return out


async def events_per_s(session: aiohttp.ClientSession, url: str, tokens: int) -> float:
    async with session.post(url + "/v1/messages", data=body(tokens)) as resp:
        await resp.content.readline()
        start, events = time.perf_counter(), 0
        while data := await resp.content.readany():
            events += data.count(b"\n\n")
        return events / (time.perf_counter() - start)


async def run(direct: str, foreman: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, list[float]]] = {"direct": {}, "foreman": {}}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        for url in (direct, foreman):
            await first_event(session, url, 10)  # warm up: model resident, pools filled
        for _ in range(args.rounds):
            for side, url in (("direct", direct), ("foreman", foreman)):
                t = await first_event(session, url, args.requests)
                figures[side].setdefault("first_event_p50", []).append(percentile(t, 0.5))
                figures[side].setdefault("first_event_p99", []).append(percentile(t, 0.99))
                figures[side].setdefault("events_per_s", []).append(await events_per_s(session, url, args.tokens))
    return {side: {k: statistics.median(v) for k, v in f.items()} for side, f in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=5000)
    args = parser.parse_args()
    # The simulator's /v1/messages treats max_tokens as a cap on its default length: make the
    # default the long stream's, and cap the short ones at 8.
    with running_pair(sim_args=("--tokens", str(args.tokens))) as pair:
        time.sleep(1.0)
        medians = asyncio.run(run(pair.sim_url, pair.foreman_url, args))
    print(f"{'measure':18} {'direct':>12} {'foreman':>12} {'ratio':>7}")
    for key in ("first_event_p50", "first_event_p99", "events_per_s"):
        direct, through = medians["direct"][key], medians["foreman"][key]
        scale, unit = (1, "/s") if key.endswith("per_s") else (1000, "ms")
        print(f"{key:18} {direct * scale:10.2f}{unit:>2} {through * scale:10.2f}{unit:>2} {through / direct:6.2f}x")


if __name__ == "__main__":
    main()
