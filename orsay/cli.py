"""`orsay` command line: one subcommand per job, each defined in its own module.

The settings are read once here (environment, then `./.env`; see engine.settings) and passed
down: subcommand modules expose `register(subparsers, settings)`, which adds a parser whose
defaults come from the settings and sets `run=callable`, called as `run(args, settings)` and
returning an exit code. A setting that does not parse stops every command with one line naming
the variable. `orsay bot` is registered by bot.command, which imports no Telegram code until the
command runs, so `orsay --help` and the engine's commands stay Telegram-free.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from engine.settings import ConfigError, Settings, load_settings

SUBCOMMAND_MODULES = (
    "engine.commands.stylize",
    "engine.commands.gallery",
    "engine.commands.worker",
    "engine.commands.demo",
    "bot.command",
)


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orsay", description="Repaint photos in the style of great paintings."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers, settings)
    return parser


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    """Run one command; `settings` defaults to this process's (environment and ./.env)."""
    if settings is None:
        try:
            settings = load_settings()
        except ConfigError as exc:
            print(f"orsay: {exc}", file=sys.stderr)
            return 2
    args = build_parser(settings).parse_args(argv)
    try:
        return int(args.run(args, settings) or 0)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
