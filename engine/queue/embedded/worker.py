"""The embedded queue's painter: one thread of the bot process, with its own SQLite connection.

It takes the head of the fair line, runs the painter (engine.queue.lifecycle.run_painter), and
records the outcome; its events reach followers through the `EventHub`. A cancel flag per running
job is how the user (cancel, /forget), a shutdown and the job timeout stop the painter between two
steps; the reason it was set decides what the stop means (lifecycle.settle).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from engine.observability import metrics
from engine.queue.embedded.events import EventHub
from engine.queue.embedded.store import Store
from engine.queue.lifecycle import (
    TIMEOUT,
    Interruption,
    log_failure,
    run_painter,
    settle,
    stamp,
    terminal_event,
)
from engine.queue.limits import QueueLimits
from engine.queue.policy import RunTimes
from engine.queue.seam import JobEvent, JobRequest, JobState, Painter

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
        """Stop taking jobs; give the running one `grace_s` to finish, then interrupt it (it goes
        back in line and runs again on the next start, without costing an attempt)."""
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
        store = Store(self.path, self.limits)
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                claimed = self._claim(store)
                if claimed is None:
                    self._wake.wait(IDLE_WAIT_S)
                    continue
                self._paint(store, *claimed)
        except Exception:
            log.exception("painter thread crashed")
        finally:
            store.close()

    def _claim(self, store: Store) -> tuple[str, JobRequest, float] | None:
        with self._lock:  # registered before the claim commits: interrupt() always finds it
            claimed = store.claim()
            if claimed is None:
                return None
            job_id, request, created, started = claimed
            self._cancels[job_id] = threading.Event()
        metrics.JOBS.labels(state="running").inc()
        metrics.WAIT_SECONDS.observe(started - created)
        self.hub.line_moved()
        return job_id, request, started

    def _paint(self, store: Store, job_id: str, request: JobRequest, started: float) -> None:
        cancel = self._cancels[job_id]
        self.hub.publish_threadsafe(JobEvent(job_id, "started", elapsed_s=0.0))
        timer = None
        if self.job_timeout_s:
            timer = threading.Timer(self.job_timeout_s, self.interrupt, (job_id, "timeout"))
            timer.daemon = True
            timer.start()

        def progress(event: JobEvent) -> None:
            self.hub.publish_threadsafe(stamp(event, job_id, started))

        try:
            ran = run_painter(self.painter, request, progress, cancel, job_id)
        finally:
            if timer is not None:
                timer.cancel()
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
