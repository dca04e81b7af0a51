"""The embedded queue's painter: one thread of the bot process, with its own SQLite connection.

It takes the head of the fair line, and for a BatchPainter up to its `batch` compatible jobs
behind it (engine.queue.batches), runs the painter once for them (engine.queue.lifecycle
.run_batch), and records each job's outcome; events reach followers through the `EventHub`. A
cancel flag per running job is how the user (cancel, /forget), a shutdown and the job timeout
stop that job, and only that job, between two steps; the reason it was set decides what the stop
means (lifecycle.settle). A shutdown interrupts every job of the batch, and each goes back in
line.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from engine.observability import metrics
from engine.queue.batches import Picker
from engine.queue.embedded.events import EventHub
from engine.queue.embedded.store import Claimed, SqliteJobStore
from engine.queue.lifecycle import (
    TIMEOUT,
    Interruption,
    JobOutcome,
    log_failure,
    run_batch,
    settle,
    stamp,
    terminal_event,
)
from engine.queue.policy import RunTimes
from engine.queue.seam import BatchItem, JobEvent, JobState, Painter, ProgressCallback
from engine.settings import QueueLimits

log = logging.getLogger(__name__)
IDLE_WAIT_S = 0.5


class PainterThread:
    def __init__(
        self,
        path: Path,
        painter: Painter,
        hub: EventHub,
        run_times: RunTimes,
        *,
        limits: QueueLimits,
        job_timeout_s: float | None = None,
    ) -> None:
        self.path, self.painter, self.hub, self.run_times = path, painter, hub, run_times
        self.limits = limits
        self.job_timeout_s = job_timeout_s
        self.picker = Picker(painter)  # how many jobs, and which, it paints at once
        self._lock = threading.Lock()
        self._cancels: dict[str, threading.Event] = {}  # running job -> its cancel flag
        self._why: dict[str, Interruption] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._work, name="orsay-painter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def wake(self) -> None:
        self._wake.set()

    def interrupt(self, job_id: str, why: Interruption) -> bool:
        """Set the running job's cancel flag; False if `job_id` is not being painted here."""
        with self._lock:
            event = self._cancels.get(job_id)
            if event is None:
                return False
            self._why.setdefault(job_id, why)
            event.set()  # the painter stops at its next step
        return True

    def stop(self, grace_s: float) -> None:
        """Stop taking jobs; give the running ones `grace_s` to finish, then interrupt them (they
        go back in line and run again on the next start, without costing an attempt)."""
        self._stopping.set()
        self._wake.set()
        if not self._thread.is_alive():
            return
        self._thread.join(grace_s)
        if self._thread.is_alive():
            with self._lock:
                running = list(self._cancels)
            for job_id in running:
                self.interrupt(job_id, "shutdown")
            self._thread.join(10.0)

    # -- the thread --------------------------------------------------------------------------

    def _work(self) -> None:
        store = SqliteJobStore(self.path, self.limits)
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                claimed = self._claim(store)
                if not claimed:
                    self._wake.wait(IDLE_WAIT_S)
                    continue
                self._paint(store, claimed)
        except Exception:
            log.exception("painter thread crashed")
        finally:
            store.close()

    def _claim(self, store: SqliteJobStore) -> list[Claimed]:
        with self._lock:  # registered before the claim commits: interrupt() always finds them
            claimed = store.claim(self.picker)
            for job_id, *_ in claimed:
                self._cancels[job_id] = threading.Event()
        for _, _, created, started in claimed:
            metrics.JOBS.labels(state="running").inc()
            metrics.WAIT_SECONDS.observe(started - created)
        if claimed:
            self.hub.line_moved()
        return claimed

    def _paint(self, store: SqliteJobStore, claimed: list[Claimed]) -> None:
        """Paint the claimed jobs in one painter call; each has its own cancel flag, timeout
        and outcome."""
        jobs: list[tuple[str, BatchItem]] = []
        timers: list[threading.Timer] = []
        for job_id, request, _, started in claimed:
            self.hub.publish_threadsafe(JobEvent(job_id, "started", elapsed_s=0.0))
            if self.job_timeout_s:
                timer = threading.Timer(self.job_timeout_s, self.interrupt, (job_id, "timeout"))
                timer.daemon = True
                timer.start()
                timers.append(timer)
            item = BatchItem(request, self._progress(job_id, started), self._cancels[job_id])
            jobs.append((job_id, item))
        try:
            outcomes = run_batch(self.painter, jobs)
        finally:
            for timer in timers:
                timer.cancel()
        for (job_id, _, _, started), ran in zip(claimed, outcomes, strict=True):
            self._record(store, job_id, started, ran)

    def _progress(self, job_id: str, started: float) -> ProgressCallback:
        def progress(event: JobEvent) -> None:
            self.hub.publish_threadsafe(stamp(event, job_id, started))

        return progress

    def _record(self, store: SqliteJobStore, job_id: str, started: float, ran: JobOutcome) -> None:
        with self._lock:
            self._cancels.pop(job_id, None)
            why = self._why.pop(job_id, None)
        outcome = settle(ran, why)
        if outcome is None:
            store.hand_back(job_id)
            log.info("job %s handed back to the queue on shutdown", job_id)
            return
        if why == "timeout":
            cause = f"ran past the job timeout ({self.job_timeout_s or 0:.0f} s)"
            log_failure(job_id, TIMEOUT, cause)
        finished = time.time()
        store.finish(job_id, outcome, finished)
        metrics.JOBS.labels(state=outcome.state.value).inc()
        if outcome.state == JobState.DONE:
            self.run_times.add(finished - started)
            metrics.RUN_SECONDS.observe(finished - started)
        self.hub.publish_threadsafe(
            terminal_event(
                job_id,
                outcome.state,
                result=outcome.result,
                reason=outcome.reason,
                started_at=started,
                finished_at=finished,
            )
        )
