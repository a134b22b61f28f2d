"""Where foreman's CPU goes: one workload through foreman in front of the fast target, with foreman
run under cProfile (its event-loop thread), and the functions that took the time printed.

    python bench/profile_face.py long      # one 20,000-token stream
    python bench/profile_face.py small     # 2,000 small stream:false chats
    python bench/profile_face.py stream    # 200 streams of 200 tokens
    python bench/profile_face.py embed     # 4,000 embeddings at concurrency 16

cProfile slows what it measures (each call costs more), so read the shares, not the totals; the
benchmark (`bench_face.py`) gives the figures. `--save F` keeps the raw profile for pstats.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import pstats
import signal
import subprocess
import sys
import tempfile

import aiohttp
from bench_face import embed_rate, long_stream, small, streams
from pair import ROOT, free_port, wait_port

WORKLOADS = {
    "long": lambda s, url: long_stream(s, url, 20_000),
    "small": lambda s, url: small(s, url, 2_000),
    "stream": lambda s, url: streams(s, url, 200, 200),
    "embed": lambda s, url: embed_rate(s, url, 4_000),
    "warm": lambda s, url: small(s, url, 20),
}


async def drive(url: str, workload: str) -> None:
    async with aiohttp.ClientSession() as session:
        await WORKLOADS[workload](session, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=sorted(set(WORKLOADS) - {"warm"}))
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="tottime", choices=("tottime", "cumulative"))
    parser.add_argument("--save", help="also keep the raw profile in this file")
    args = parser.parse_args()
    sim_port, foreman_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.save or os.path.join(tmp, "foreman.prof")
        env = {**os.environ, "PYTHONPATH": ROOT}
        sim = subprocess.Popen(
            [sys.executable, "-m", "foreman", "simulate", "--fast", "--listen", f"127.0.0.1:{sim_port}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        foreman = subprocess.Popen(
            [sys.executable, "-m", "cProfile", "-o", out, "-m", "foreman", "serve"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={
                **env,
                "FOREMAN_OLLAMA_URL": f"http://127.0.0.1:{sim_port}",
                "FOREMAN_LISTEN": f"127.0.0.1:{foreman_port}",
                "FOREMAN_DB_PATH": os.path.join(tmp, "profile.db"),
            },
        )
        try:
            wait_port(sim_port)
            wait_port(foreman_port)
            asyncio.run(drive(f"http://127.0.0.1:{foreman_port}", "warm"))  # warm: imports, first load
            asyncio.run(drive(f"http://127.0.0.1:{foreman_port}", args.workload))
        finally:
            foreman.send_signal(signal.SIGINT)
            foreman.wait()
            sim.terminate()
            sim.wait()
        text = io.StringIO()
        pstats.Stats(out, stream=text).strip_dirs().sort_stats(args.sort).print_stats(args.top)
        print(text.getvalue())


if __name__ == "__main__":
    main()
