"""Every decode runs in a fresh child process with a CPU-time and address-space limit.

No header check can foresee every slow path of every decoder (a progressive JPEG replaying a
scan, a libtiff corner, the next libheif bug), so the limit is the kernel's: RLIMIT_CPU stops a
child that computes too long, RLIMIT_AS one that allocates too much, a wall-clock deadline one
that hangs, and a crash takes only the child. Children are forked from multiprocessing's fork
server, a small single-threaded process with Pillow already imported, so a decode starts in
about 10 ms (forking the bot or a torch worker, both multi-threaded, would not be safe) and
each child starts with a CPU clock of zero.

multiprocessing has no public way to start such a child without it importing the parent's
__main__ again (the CLI entry point, pytest, a bench script: tens of milliseconds, and code that
has no business in a decoder), so `_LeanPopen` copies CPython's private fork-server launch minus
that step. It is used only on the CPython versions whose launch it was checked against
(LEAN_LAUNCH_PYTHONS); on any other the public `ForkServerProcess` starts the children, slower
per decode but the same decode (tests/engine/imaging/test_sandbox_launch.py runs both). With the
`orsay` entry point as __main__, a 40×30 PNG took 45–49 ms a decode (median of 20) the lean way
and 369–441 ms the public way, runs interleaved on 2 shared cores.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing import context, forkserver, popen_forkserver, reduction, spawn, util

from PIL import Image

from engine import errors
from engine.errors import ImageError, ImageTooCostly
from engine.imaging.budget import Budget, Stats

MAX_PARALLEL = 2  # decodes at once per process: bounds memory at 2 × Budget.memory_bytes
_GATE = threading.BoundedSemaphore(MAX_PARALLEL)
_CONTEXT = multiprocessing.get_context("forkserver")
# The fork server imports the child module once (Pillow, its plugins, pillow-heif and the
# process-wide decoder settings), so each decode only forks.
_CONTEXT.set_forkserver_preload(["engine.imaging.child"])


# The CPython versions (first, last) whose popen_forkserver.Popen._launch `_LeanPopen` repeats:
# its text is the same in 3.11.7's standard library and on CPython's main branch (3.15 in the
# making, when this was written), and the private names it calls are in both.
LEAN_LAUNCH_PYTHONS = ((3, 11), (3, 14))
_LEAN_LAUNCH_NEEDS = (
    (spawn, "get_preparation_data"),
    (context, "set_spawning_popen"),
    (reduction, "dump"),
    (forkserver, "connect_to_new_process"),
    (forkserver, "read_signed"),
    (util, "Finalize"),
    (util, "close_fds"),
    (popen_forkserver.Popen, "_launch"),
)


def lean_launch_supported(version: tuple[int, ...] = tuple(sys.version_info[:2])) -> bool:
    """Whether `_LeanPopen` may start the children on this Python (`version`: major, minor)."""
    first, last = LEAN_LAUNCH_PYTHONS
    known = first <= tuple(version[:2]) <= last
    return known and all(hasattr(owner, name) for owner, name in _LEAN_LAUNCH_NEEDS)


class _LeanPopen(popen_forkserver.Popen):
    """The fork server's Popen, minus one step: spawn's preparation makes every child import
    the parent's __main__ again. The rest is CPython's `popen_forkserver.Popen._launch` as it
    is, for the versions in LEAN_LAUNCH_PYTHONS."""

    def _launch(self, process_obj: multiprocessing.process.BaseProcess) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)  # type: ignore[attr-defined]
        prep_data.pop("init_main_from_path", None)
        prep_data.pop("init_main_from_name", None)
        buf = io.BytesIO()
        context.set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            context.set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)  # type: ignore[attr-defined]
        _parent_w = os.dup(w)
        self.finalizer = util.Finalize(
            self,
            util.close_fds,  # type: ignore[attr-defined]
            (_parent_w, self.sentinel),
        )
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _LeanProcess(context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: multiprocessing.process.BaseProcess) -> _LeanPopen:
        return _LeanPopen(process_obj)


# What starts each decoding child: the lean launch where it was checked, the public one elsewhere
_process_class: type[context.ForkServerProcess] = (
    _LeanProcess if lean_launch_supported() else context.ForkServerProcess
)


@dataclass(frozen=True)
class Decoded:
    """What a decoding child sent back: the picture (or its normalized encoding) and its cost."""

    image: Image.Image | None  # output="pixels"
    encoded: bytes | None  # output="normalized"
    stats: Stats


def run(data: bytes, budget: Budget, output: str = "pixels") -> Decoded:
    """Decode `data` in a child; the picture, or an ImageError (the child's, or
    ImageTooCostly when it ran out of time or memory). Nothing else escapes."""
    with _GATE:
        start = time.perf_counter()
        try:
            reply, stats = _run_child(data, budget, output)
        except ImageError:
            raise
        except (OSError, EOFError, ValueError) as error:
            raise ImageError("The picture decoder could not be started.") from error
        wall = time.perf_counter() - start
    stats = Stats(stats.cpu_s, wall, stats.peak_bytes)
    kind = reply[0]
    if kind == "error":
        _, name, message, params = reply
        cls = getattr(errors, name, ImageError)
        if not (isinstance(cls, type) and issubclass(cls, ImageError)):
            cls = ImageError
        raise cls(message, **params)
    if kind == "pixels":
        _, size, pixels = reply
        return Decoded(Image.frombytes("RGB", size, pixels), None, stats)
    return Decoded(None, reply[1], stats)


def _run_child(data: bytes, budget: Budget, output: str) -> tuple[tuple, Stats]:
    receive, send = _CONTEXT.Pipe(duplex=False)
    from_parent, to_child = _CONTEXT.Pipe(duplex=False)
    # The child module (also the fork server's preload) is imported here, not at the top:
    # importing it applies the decoder settings and freezes the collector in this process.
    from engine.imaging.child import serve

    process = _process_class(target=serve, args=(from_parent, send, budget, output))
    process.daemon = True
    process.start()
    send.close()
    from_parent.close()
    deadline = time.monotonic() + budget.wall_seconds
    try:
        with contextlib.suppress(BrokenPipeError):
            to_child.send_bytes(data)
        to_child.close()
        if not receive.poll(max(0.0, deadline - time.monotonic())):
            raise ImageTooCostly("decoding took too long")
        try:
            reply, stats = receive.recv()
        except EOFError:
            process.join(max(0.0, deadline - time.monotonic()))
            raise _death(process.exitcode) from None
        return reply, stats
    finally:
        if process.is_alive():
            process.kill()
        process.join()
        receive.close()
        process.close()


def _death(exitcode: int | None) -> ImageError:
    """A child that died without answering: out of CPU time or memory, or a decoder crash."""
    if exitcode in (-signal.SIGXCPU, -signal.SIGKILL, None):
        return ImageTooCostly("decoding took too long or too much memory")
    return ImageError("The picture decoder failed on that file.")
