"""A job's lifecycle, written once for both backends.

Three mappings that used to be spelled out per backend live here, so the embedded and the Redis
queue cannot drift apart:

- how a painter run ended -> `JobOutcome` (state, result, reason code), including why it was
  interrupted (the user, a shutdown, the job timeout): `run_painter`, `run_batch` (each job of a
  batch ends on its own) and `settle`;
- an outcome -> the terminal `JobEvent` followers hear (`done` always carries the result);
- a job's stored state -> the events `events()` replays to a new follower (`replay`).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from engine.errors import Cancelled, OrsayError
from engine.observability.logs import log_event
from engine.queue.seam import (
    BatchItem,
    BatchPainter,
    JobEvent,
    JobRecord,
    JobRequest,
    JobState,
    Painter,
    ProgressCallback,
)

log = logging.getLogger(__name__)

PAINTER_ERROR = "painter_error"  # a bug or an unexpected failure: nothing the user did
TIMEOUT = "timeout"  # the job ran past the operator's job timeout
WORKER_DIED = "worker_died"  # the job took its worker down max_attempts times

# Why a worker set a job's cancel flag; None: it did not (the painter stopped by itself).
Interruption = Literal["user", "shutdown", "timeout"] | None


@dataclass(frozen=True)
class JobOutcome:
    """How one painter run of a job ended, as the queue records it."""

    state: JobState
    result: bytes | None = None
    reason: str | None = None  # failed: the reason code the bot phrases


def run_painter(
    painter: Painter,
    request: JobRequest,
    progress: ProgressCallback,
    cancel: threading.Event,
    job_id: str,
) -> JobOutcome:
    """Run a painter and say how it ended. User errors carry their `code`; every failure is
    logged here, with the job id, the reason code and the cause, so a worker never fails quietly."""
    try:
        return JobOutcome(JobState.DONE, result=painter(request, progress, cancel))
    except Exception as exc:
        return outcome_of(job_id, exc)


def run_batch(painter: Painter, jobs: Sequence[tuple[str, BatchItem]]) -> list[JobOutcome]:
    """Run a batch of (job id, item) and say how each job ended, in order. One job is painted by
    a plain call, exactly as `run_painter`; several go to the BatchPainter's `paint_batch` in one
    call, and each job's own result or exception becomes its own outcome (a job that fails, fails
    alone). Should `paint_batch` itself raise, every job of the batch ends with that error."""
    if len(jobs) == 1:
        ((job_id, item),) = jobs
        return [run_painter(painter, item.request, item.progress, item.cancel, job_id)]
    assert isinstance(painter, BatchPainter), "only a BatchPainter is given several jobs"
    try:
        results = painter.paint_batch([item for _, item in jobs])
    except Exception as exc:
        return [outcome_of(job_id, exc) for job_id, _ in jobs]
    outcomes = []
    for (job_id, _), result in zip(jobs, results, strict=True):
        if isinstance(result, Exception):
            outcomes.append(outcome_of(job_id, result))
        elif isinstance(result, BaseException):  # KeyboardInterrupt and kin are not a job's
            raise result
        else:
            outcomes.append(JobOutcome(JobState.DONE, result=result))
    return outcomes


def outcome_of(job_id: str, exc: Exception) -> JobOutcome:
    """How a job that raised `exc` ended, logged unless the user cancelled it."""
    if isinstance(exc, Cancelled):
        return JobOutcome(JobState.CANCELLED)
    if isinstance(exc, OrsayError):
        reason = getattr(exc, "code", None) or PAINTER_ERROR
        log_failure(job_id, reason, f"{type(exc).__name__}: {exc}")
        return JobOutcome(JobState.FAILED, reason=reason)
    log_failure(job_id, PAINTER_ERROR, f"{type(exc).__name__}: {exc}", trace=exc)
    return JobOutcome(JobState.FAILED, reason=PAINTER_ERROR)


def log_failure(
    job_id: str, reason: str, cause: str, *, trace: BaseException | None = None
) -> None:
    """One logfmt line per failed job: `event=job.failed job=<id> reason=<code> cause=...`,
    the same from both backends, so an operator can grep a worker's log by job or by reason;
    `trace` adds that exception's traceback (a painter bug)."""
    fields = {"job": job_id, "reason": reason, "cause": cause}
    if trace is not None:
        fields["exc"] = "".join(traceback.format_exception(trace))
    level = logging.ERROR if trace is not None else logging.WARNING
    log_event(log, "job.failed", level=level, **fields)


def settle(outcome: JobOutcome, interrupted: Interruption) -> JobOutcome | None:
    """What a run that the worker may have interrupted amounts to; None: hand the job back to
    the line without counting the try (a shutdown stopped it, not the job's fault)."""
    if outcome.state != JobState.CANCELLED or interrupted in (None, "user"):
        return outcome
    if interrupted == "shutdown":
        return None
    return JobOutcome(JobState.FAILED, reason=TIMEOUT)


def stamp(event: JobEvent, job_id: str, started: float) -> JobEvent:
    """A painter's progress event as followers hear it: with its job id and time so far."""
    return replace(event, job_id=job_id, elapsed_s=round(time.time() - started, 3))


def terminal_event(
    job_id: str,
    state: JobState,
    *,
    result: bytes | None = None,
    reason: str | None = None,
    started_at: float | None = None,
    finished_at: float | None = None,
) -> JobEvent:
    """The last event of a job, the same live and in a replay."""
    if state == JobState.DONE:
        end = finished_at or 0.0
        elapsed = end - (started_at or end)
        return JobEvent(job_id, "done", result=result, elapsed_s=round(elapsed, 3))
    if state == JobState.FAILED:
        return JobEvent(job_id, "failed", reason=reason or PAINTER_ERROR)
    return JobEvent(job_id, "cancelled")


def replay(
    job: JobRecord,
    *,
    position: int | None,
    eta_s: float | None,
    last_progress: JobEvent | None,
    last_note: JobEvent | None = None,
) -> list[JobEvent]:
    """The events that bring a new follower up to date with `job` (never empty): for a running
    job, `started`, the painter's latest message (`last_note`, e.g. the OOM fallback, which a
    follower arriving later must still see), and the latest progress."""
    if job.state == JobState.QUEUED:
        return [JobEvent(job.id, "queued", position=position or 1, eta_s=eta_s)]
    if job.state == JobState.RUNNING:
        elapsed = time.time() - (job.started_at or time.time())
        events = [JobEvent(job.id, "started", elapsed_s=round(elapsed, 3))]
        for event in (last_note, last_progress):
            if event is not None and event.kind == "progress" and event not in events:
                events.append(event)
        return events
    return [
        terminal_event(
            job.id,
            job.state,
            result=job.result,
            reason=job.error,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )
    ]
