"""Command line: run a simulated Ollama until SIGINT/SIGTERM.

Example: ``python -m foreman.simulator --listen 127.0.0.1:11434 --token-delay 0.02 --models llama3.2,qwen3``

``--fast`` runs the benchmarks' fast target instead (foreman/simulator/fast.py): no delays, no
faults, no Tornado imported.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Protocol

from .models import DEFAULT_MODELS


class _Server(Protocol):
    @property
    def url(self) -> str: ...

    async def start(self, host: str, port: int) -> object: ...

    async def stop(self) -> None: ...


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
    parser.add_argument(
        "--fast", action="store_true", help="the benchmarks' fast target: a raw asyncio server, no delays or faults"
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop (auto: uvloop when installed with --fast, else asyncio's)",
    )
    return parser


def _server(args: argparse.Namespace) -> _Server:
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    if args.fast:
        from .fast import FastTarget

        return FastTarget(models=models, default_tokens=args.tokens, max_loaded=args.max_loaded)
    from .server import Simulator

    return Simulator(
        models=models,
        load_delay=args.load_delay,
        token_delay=args.token_delay,
        default_tokens=args.tokens,
        max_loaded=args.max_loaded,
    )


async def _serve(args: argparse.Namespace) -> None:
    sim = _server(args)
    host, port = args.listen
    await sim.start(host, port)
    if args.fast:
        kind = type(asyncio.get_running_loop()).__module__.split(".")[0]
        print(f"fast simulated ollama listening on {sim.url} ({kind})", flush=True)
    else:
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


def _runner(args: argparse.Namespace) -> Callable[[Awaitable[None]], None]:
    """asyncio.run, or uvloop's (imported by name: it is only a test extra, never a dependency)."""
    if args.loop == "uvloop" or (args.loop == "auto" and args.fast):
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if args.loop == "uvloop":
                raise SystemExit("simulator: --loop uvloop needs uvloop installed (pip install uvloop)") from None
        else:
            return uvloop.run  # type: ignore[no-any-return]
    return asyncio.run  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, serve until interrupted, return the exit status."""
    args = _parser().parse_args(argv)
    if args.fast and (args.load_delay or args.token_delay):
        print("simulator: --fast takes no delays", file=sys.stderr)
        return 2
    try:
        _runner(args)(_serve(args))
    except OSError as err:
        print(f"simulator: cannot listen on {args.listen[0]}:{args.listen[1]}: {err}", file=sys.stderr)
        return 1
    return 0
