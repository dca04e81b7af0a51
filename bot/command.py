"""`orsay bot`: run the Telegram bot. Imports no Telegram code until the command runs, so the
`orsay` command line (orsay.cli) stays light."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engine.settings import Settings


def register(subparsers: Any, settings: Settings) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bot",
        help="run the Telegram bot",
        description="Run the Telegram bot (long polling by default). Settings come from the "
        "environment and a .env file: TELEGRAM_BOT_TOKEN, ORSAY_BOT_API_URL, ORSAY_DATA_DIR, "
        "ORSAY_QUEUE, ORSAY_MAX_SIZE, ORSAY_ADMINS, … (see README).",
    )
    parser.add_argument(
        "--webhook-url",
        metavar="URL",
        help="serve a webhook at this public https URL instead of polling",
    )
    parser.add_argument("--port", type=int, default=8443, help="webhook listen port (8443)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.config import ConfigError, require_token

    try:
        require_token(settings)
    except ConfigError as exc:
        print(f"orsay bot: {exc}", file=sys.stderr)
        return 2
    from engine.observability.logs import configure_logging

    configure_logging(settings.log_level, settings.secrets)
    from bot.app import run as run_bot

    return run_bot(settings, webhook_url=args.webhook_url, port=args.port)
