"""The seam between the bot and the painter: jobs go in, events come out.

The bot never paints; it submits a `JobRequest` and follows the job's `JobEvent`s. Workers own the
GPU and run a `Painter`. Two backends implement `JobQueue` with the same behaviour: embedded
(SQLite + a worker thread, the default) and Redis (`orsay worker` processes). The contract
tests in tests/engine/queue run against both.

`JobEvent` is the one event type from the painter to the chat: a painter reports `progress`
JobEvents (engine/queue/engine_painter.py converts the engine's ProgressEvent, once), the worker
stamps them with the job id, the queue stores or forwards them, and the bot reads them.

Delivery is the bot's half of durability: a job stays in `undelivered()` until the bot calls
`acknowledge(job_id)` after it has sent the result (or told the user it failed). After a restart
the bot resumes every undelivered job by following its events again; `events()` always starts by
replaying the job's current state, so a job that finished while the bot was down yields `done` at
once.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

from engine.presets import DEFAULT_QUALITY, DEFAULT_STRENGTH


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})


@dataclass
class StyleChoice:
    """A gallery painting (`slug`, with its file's bytes in `image` so any worker can paint it)
    or an uploaded picture (`image` only). `sha256` names a gallery painting's bytes while the
    queue stores them apart from the job (engine.queue.blobs). A bare `slug` (jobs queued before
    paintings travelled with them) is looked up in the worker's own gallery."""

    slug: str | None = None
    image: bytes | None = None
    weight: float = 1.0
    sha256: str | None = None


@dataclass
class JobOptions:
    size: int = 384  # long side in px, already capped by the operator's ORSAY_MAX_SIZE
    strength: str = DEFAULT_STRENGTH  # one of engine.presets.STRENGTH_LEVELS
    preserve_colors: bool = False
    quality: str = DEFAULT_QUALITY  # one of engine.presets.QUALITIES


@dataclass
class JobRequest:
    user_id: int
    chat_id: int
    content: bytes  # the photo, encoded (JPEG/PNG/...)
    styles: list[StyleChoice]
    options: JobOptions = field(default_factory=JobOptions)
    meta: dict[str, Any] = field(default_factory=dict)  # opaque to the queue (language, msg ids)


@dataclass
class JobRecord:
    """What the queue keeps about one job, as `get()` and friends return it (not the engine's
    engine.job.Job, which is a request made ready to paint)."""

    id: str
    request: JobRequest
    state: JobState
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    error: str | None = None
    result: bytes | None = None  # encoded image, kept until acknowledged


EventKind = Literal["queued", "position", "started", "progress", "done", "failed", "cancelled"]


@dataclass(frozen=True)
class JobEvent:
    """What happened to a job. A painter leaves `job_id` empty; its worker fills it in."""

    job_id: str
    kind: EventKind
    position: int | None = None  # 1-based place in line (queued/position)
    eta_s: float | None = None
    scale: int | None = None  # progress: 1-based scale index
    scales: int | None = None
    step: int | None = None
    total: int | None = None
    fraction: float | None = None  # overall progress in [0, 1]
    preview: bytes | None = None  # JPEG at the end of a scale
    result: bytes | None = None  # done: the image (encoded), in both backends
    reason: str | None = None  # failed: a stable reason code (engine.errors codes, timeout, ...)
    elapsed_s: float | None = None
    size: int | None = None  # progress: long side in px at this scale
    message: str | None = None  # progress: the painter's own words, e.g. an OOM fallback
    notice: str | None = None  # progress: a stable code for `message` the bot can translate

    @property
    def terminal(self) -> bool:
        return self.kind in ("done", "failed", "cancelled")


@dataclass(frozen=True)
class QueueStats:
    queued: int
    running: int
    done_today: int
    failed_today: int
    mean_wait_s: float | None
    mean_run_s: float | None
    workers_alive: int


ProgressCallback = Callable[[JobEvent], None]
# A painter turns a request into an encoded image, reporting `progress` JobEvents as it goes; it
# must check `cancel` between steps and raise engine.errors.Cancelled when it is set. It runs in a
# worker thread or process, never on the bot's event loop.
Painter = Callable[[JobRequest, ProgressCallback, threading.Event], bytes]


@dataclass(frozen=True)
class BatchItem:
    """One job of a batch as a `BatchPainter` gets it: its own listener and its own cancel flag,
    so cancelling one job of a batch stops only that job."""

    request: JobRequest
    progress: ProgressCallback
    cancel: threading.Event


@runtime_checkable
class BatchPainter(Protocol):
    """A `Painter` that can also paint up to `batch` compatible jobs in one call (one
    forward/backward for all of them). Workers take `batch` jobs of one `bucket` at once
    (engine.queue.batches); a plain `Painter` is a batch-of-1 painter and is called as before.

    `bucket(request)` is equal for jobs `paint_batch` may take together, None for a job to paint
    alone; it sees the request as stored (content and options; gallery paintings' bytes may be
    absent) and must be cheap (a header read, no decoding). `paint_batch(items)` returns one
    result per item, in order: the encoded picture, or the exception that ended that job
    (engine.errors.Cancelled when its cancel flag stopped it)."""

    batch: int

    def __call__(
        self, request: JobRequest, progress: ProgressCallback, cancel: threading.Event
    ) -> bytes: ...

    def bucket(self, request: JobRequest) -> Hashable | None: ...

    def paint_batch(self, items: Sequence[BatchItem]) -> list[bytes | BaseException]: ...


class QueueError(Exception):
    """Base of refusals the bot phrases for users."""


class TooManyActiveJobs(QueueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} active jobs per user")
        self.limit = limit


class QueueFull(QueueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the queue is full ({limit} jobs)")
        self.limit = limit


class QueueUnavailable(QueueError):
    """The backend (Redis) cannot be reached right now; nothing accepted before is lost."""


class JobQueue(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    # (job id, 1-based place in line). With a `key` (the bot's: the update that asked for the
    # job), a second submit with the same key creates nothing and returns the first job's id
    # and its place in line, 0 once it no longer waits; before the limits, so never refused.
    async def submit(self, request: JobRequest, *, key: str | None = None) -> tuple[str, int]: ...
    async def position(self, job_id: str) -> int | None: ...
    async def cancel(self, job_id: str) -> bool: ...
    def events(self, job_id: str) -> AsyncIterator[JobEvent]: ...
    async def get(self, job_id: str) -> JobRecord | None: ...
    async def active_jobs(self, user_id: int) -> list[JobRecord]: ...
    async def undelivered(self) -> list[JobRecord]: ...
    async def acknowledge(self, job_id: str) -> None: ...
    async def forget(self, user_id: int) -> None: ...
    async def stats(self) -> QueueStats: ...
    async def healthy(self) -> bool: ...
