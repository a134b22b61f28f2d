"""Command line: run a simulated Ollama until SIGINT/SIGTERM.

Example: ``python -m foreman.simulator --listen 127.0.0.1:11434 --token-delay 0.02 --models llama3.2,qwen3``
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from .models import DEFAULT_MODELS
from .server import Simulator


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="foreman simulate", description="Run a simulated Ollama server.")
    parser.add_argument(
        "--listen",
        type=_listen,
        default=("127.0.0.1", 11434),
        metavar="HOST:PORT",
        help="address to serve on (default 127.0.0.1:11434; port 0 picks a free one)",
    )
    parser.add_argument("--load-delay", type=float, default=0.0, metavar="SECONDS", help="cold model load time")
    parser.add_argument("--token-delay", type=float, default=0.0, metavar="SECONDS", help="time between tokens")
    parser.add_argument("--tokens", type=int, default=8, help="tokens per response unless num_predict says otherwise")
    parser.add_argument("--max-loaded", type=int, default=3, help="resident model limit")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated installed models")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    sim = Simulator(
        models=models,
        load_delay=args.load_delay,
        token_delay=args.token_delay,
        default_tokens=args.tokens,
        max_loaded=args.max_loaded,
    )
    host, port = args.listen
    await sim.start(host, port)
    print(f"simulated ollama listening on {sim.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, serve until interrupted, return the exit status."""
    args = _parser().parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except OSError as err:
        print(f"simulator: cannot listen on {args.listen[0]}:{args.listen[1]}: {err}", file=sys.stderr)
        return 1
    return 0
