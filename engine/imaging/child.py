"""The decoding child's side of the sandbox. The fork server imports this module once, which
also applies the process-wide decoder settings once; `serve` runs once per decode, in a child
forked from it, under its own limits."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import resource
import time
from multiprocessing.connection import Connection

from engine.errors import ImageError
from engine.imaging import decode, encode
from engine.imaging.budget import Budget, Stats

_M_ARENA_MAX = -8

decode.prepare_process()
gc.freeze()  # the fork server's objects stay out of the children's collections (no copy-on-write)


def serve(incoming: Connection, outgoing: Connection, budget: Budget, output: str) -> None:
    """Runs in the child: limits first, then the decode, then one reply."""
    rss_start = _rss()
    _limit(budget)
    _quiet()
    started = time.perf_counter()
    reply: tuple
    try:
        data = incoming.recv_bytes()
        image, as_sent = decode.decode(data, budget)
        if output == "pixels":
            reply = ("pixels", image.size, image.tobytes())
        else:
            reply = ("encoded", data if as_sent else encode.encode_jpeg(image, quality=95))
    except ImageError as error:
        reply = ("error", type(error).__name__, str(error), error.params)
    except MemoryError:
        reply = ("error", "ImageTooCostly", "decoding needs more memory than allowed", {})
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats = Stats(
        usage.ru_utime + usage.ru_stime,
        time.perf_counter() - started,
        max(0, usage.ru_maxrss * 1024 - rss_start),
    )
    outgoing.send((reply, stats))
    outgoing.close()


def _quiet() -> None:
    """libtiff and libjpeg print warnings about hostile files on stderr; nobody reads a
    decoding child's stderr, and the parent's log should not carry an attacker's noise."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)


def _limit(budget: Budget) -> None:
    """CPU seconds and address space for this process; few malloc arenas, so decoder threads
    do not reserve 64 MiB of address space each."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 2)
    resource.setrlimit(resource.RLIMIT_CPU, (budget.cpu_seconds, budget.cpu_seconds + 1))
    space = _address_space() + budget.memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (space, space))


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()
