"""Where Orsay keeps its files. Everything the engine writes lives under the data dir."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_data_dir


def data_dir() -> Path:
    """`ORSAY_DATA_DIR`, else the per-user data dir; created on first use."""
    path = Path(os.environ.get("ORSAY_DATA_DIR") or user_data_dir("orsay", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path
