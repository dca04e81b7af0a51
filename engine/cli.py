"""`orsay` command line: one subcommand per job, each defined in its own module.

Subcommand modules expose `register(subparsers)`, which adds a parser and sets `run=callable`
(taking the parsed args, returning an exit code). `orsay bot` lives in the bot package; its
registration module imports no Telegram code until the command runs, so the engine stays
Telegram-free.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

SUBCOMMAND_MODULES = (
    "engine.commands.stylize",
    "engine.commands.gallery",
    "engine.commands.worker",
    "engine.commands.demo",
    "bot.command",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orsay", description="Repaint photos in the style of great paintings."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
