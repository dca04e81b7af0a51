"""Placeholder so the CLI imports while this subcommand is being written."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser("gallery", help="(in progress)")
    parser.set_defaults(run=lambda args: print("not ready yet") or 1)
