"""Style targets of gallery paintings, cached in memory (LRU) and on disk.

A painting's Gram matrices depend only on (painting, network, weights, size, style scale, loss
kind, layers), so repeated requests for the same gallery painting skip the style forward pass.
Only `StyleInput`s with a `cache_key` are cached; uploads are not. Files live under
the directory the caller names (`Settings.style_cache_dir`, `<data dir>/style-cache/`) and
are plain `torch.save` dicts of CPU tensors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import torch

from engine.losses import Targets

log = logging.getLogger(__name__)


def make_key(**parts: object) -> str:
    """A stable file-name-safe digest of the parts that determine the targets."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:40]


class StyleCache:
    def __init__(self, directory: Path | None, capacity: int = 32) -> None:
        self.directory = directory
        self.capacity = capacity
        self._memory: OrderedDict[str, Targets] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def _path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{key}.pt"

    def get(self, key: str) -> Targets | None:
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                self.hits += 1
                return self._memory[key]
        path = self._path(key)
        if path is not None and path.is_file():
            try:
                targets = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # a torn or foreign file is just a miss; it gets rewritten
                log.warning("ignoring unreadable style cache entry %s", path.name)
            else:
                self._remember(key, targets)
                with self._lock:
                    self.hits += 1
                return targets
        with self._lock:
            self.misses += 1
        return None

    def put(self, key: str, targets: Targets) -> None:
        cpu = {layer: {k: v.detach().cpu() for k, v in t.items()} for layer, t in targets.items()}
        self._remember(key, cpu)
        path = self._path(key)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                torch.save(cpu, handle)
            os.replace(tmp, path)  # atomic: concurrent workers never read half a file
        except OSError as error:
            log.warning("could not write style cache entry: %s", error)

    def _remember(self, key: str, targets: Targets) -> None:
        with self._lock:
            self._memory[key] = targets
            self._memory.move_to_end(key)
            while len(self._memory) > self.capacity:
                self._memory.popitem(last=False)


_caches: dict[Path | None, StyleCache] = {}
_caches_lock = threading.Lock()


def default_cache(directory: Path | None) -> StyleCache:
    """The process-wide cache for `directory` (None: in memory only), made on first use and kept
    per directory, so two data dirs in one process (tests) never share files."""
    with _caches_lock:
        if directory not in _caches:
            _caches[directory] = StyleCache(directory)
        return _caches[directory]
