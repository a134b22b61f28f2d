"""The command line: `foreman serve` runs the daemon, `foreman simulate` a simulated Ollama."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from foreman import __version__
from foreman.config import add_flags, load_settings, unknown_variables
from foreman.errors import ConfigError
from foreman.operator_commands import add_commands, run

log = logging.getLogger("foreman")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="foreman", description="A queued, observable Ollama front.")
    parser.add_argument("--version", action="version", version=f"foreman {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the daemon")
    serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    add_flags(serve)
    commands.add_parser("simulate", help="run a simulated Ollama (try-outs, tests, benchmarks)", add_help=False)
    add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:
        from foreman.simulator.cli import main as simulate

        return int(simulate(argv[1:]))
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return run(args)


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("transitions").setLevel(logging.WARNING)  # it narrates every callback at INFO
    try:
        settings = load_settings(vars(args), config_path=args.config)
    except ConfigError as exc:
        print(f"foreman: configuration error: {exc}", file=sys.stderr)
        return 2
    for name in unknown_variables():
        log.warning("%s is not a foreman setting and is ignored (a typo?)", name)
    from foreman.lock import DatabaseBusy
    from foreman.server import run_until_signalled

    try:
        asyncio.run(run_until_signalled(settings))
    except (OSError, DatabaseBusy) as exc:
        print(f"foreman: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0
