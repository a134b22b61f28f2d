"""Benchmark: model swaps through foreman (drain-by-model) vs the same arrival order sent straight.

A mixed workload of `--jobs` small chats over three models, in a random (seeded) order, arrives
while the worker is busy with a long job. The simulated target holds one model at a time
(`--max-loaded 1`) and pays `--load-delay` seconds per load, like a laptop swapping 10-20 GB of
weights. Measured in one run:

- through foreman: all jobs submitted at once behind the long job; swaps and total time;
- direct, FIFO: the same order sent to the target one at a time; swaps and total time.

Usage: python bench/bench_swaps.py [--jobs 200] [--load-delay 2] [--seed 7] [--workload runners|models]
`runners` (the default) mixes one model under two `num_ctx` values with two other models:
four runners, since Ollama reloads a model asked for with another `num_ctx`.
The direct FIFO half pays a load for most jobs: at the defaults it takes several minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import sys
import time

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pair import running_pair

MODELS = ("llama3.2", "qwen3", "mistral")
# `--workload runners` (issue 11): one model under two num_ctx values, mixed with two other
# models. Ollama reloads a model asked for with another num_ctx, so these are four runners.
RUNNERS = ("llama3.2", "llama3.2@8192", "qwen3", "mistral")


def chat(runner: str, prompt: str, tokens: int = 4) -> str:
    model, _, ctx = runner.partition("@")
    options: dict[str, int] = {"num_predict": tokens}
    if ctx:
        options["num_ctx"] = int(ctx)
    return json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "stream": False,
            "think": False,
            "options": options,
        }
    )


async def loads(session: aiohttp.ClientSession, sim: str) -> int:
    async with session.get(sim + "/_sim/requests") as resp:
        return sum(1 for r in (await resp.json())["requests"] if r.get("loaded_model"))


async def through_foreman(session: aiohttp.ClientSession, sim: str, foreman: str, order: list[str]) -> dict[str, float]:
    async with session.post(foreman + "/api/chat", data=chat("llama3.2", "warm up")) as resp:
        await resp.read()
    before = await loads(session, sim)
    await session.post(sim + "/_sim/config", json={"token_delay": 0.01})
    start = time.perf_counter()
    blocker = asyncio.ensure_future(session.post(foreman + "/api/chat", data=chat("llama3.2", "long", 300)))
    await asyncio.sleep(0.3)  # the long job is running; everything below queues behind it
    await session.post(sim + "/_sim/config", json={"token_delay": 0.0})
    replies = []
    for i, model in enumerate(order):
        replies.append(asyncio.ensure_future(session.post(foreman + "/api/chat", data=chat(model, f"job {i}"))))
        await asyncio.sleep(0)  # hand each request to the loop in arrival order
    for reply in [blocker, *replies]:
        resp = await reply
        assert resp.status == 200, resp.status
        await resp.read()
    elapsed = time.perf_counter() - start
    return {"swaps": await loads(session, sim) - before, "seconds": elapsed}


async def direct_fifo(session: aiohttp.ClientSession, sim: str, order: list[str]) -> dict[str, float]:
    async with session.post(sim + "/api/chat", data=chat("llama3.2", "warm up")) as resp:
        await resp.read()
    before = await loads(session, sim)
    start = time.perf_counter()
    for i, model in enumerate(order):
        async with session.post(sim + "/api/chat", data=chat(model, f"job {i}")) as resp:
            assert resp.status == 200, resp.status
            await resp.read()
    return {"swaps": await loads(session, sim) - before, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--load-delay", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workload", choices=("models", "runners"), default="runners")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    kinds = RUNNERS if args.workload == "runners" else MODELS
    order = [rng.choice(kinds) for _ in range(args.jobs)]

    sim_args = ("--load-delay", str(args.load_delay), "--max-loaded", "1", "--models", ",".join(MODELS))
    with running_pair(sim_args) as pair:

        async def run() -> tuple[dict[str, float], dict[str, float]]:
            timeout = aiohttp.ClientTimeout(total=None)
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
                ours = await through_foreman(session, pair.sim_url, pair.foreman_url, order)
                fifo = await direct_fifo(session, pair.sim_url, order)
                return ours, fifo

        ours, fifo = asyncio.run(run())
    changes = sum(1 for a, b in itertools.pairwise(order) if a != b)
    print(
        f"{args.jobs} jobs over {len(kinds)} {args.workload}, seed {args.seed}, load delay {args.load_delay:g}s, "
        f"{changes} changes in arrival order"
    )
    print(f"{'':18} {'swaps':>6} {'total s':>9}")
    print(f"{'foreman (drain)':18} {ours['swaps']:6.0f} {ours['seconds']:9.1f}")
    print(f"{'direct (FIFO)':18} {fifo['swaps']:6.0f} {fifo['seconds']:9.1f}")
    print(f"time ratio foreman/direct: {ours['seconds'] / fifo['seconds']:.3f}")


if __name__ == "__main__":
    main()
