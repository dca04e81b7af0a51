"""Queue policy for both backends: who goes next (fair order), how long it will take (ETA)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

DEFAULT_RUN_S = 60.0  # estimate before any job has been timed on this queue
RECENT_RUNS = 20


def fair_order(queued: Iterable[tuple[str, int]]) -> list[str]:
    """Job ids in run order, given (job_id, user_id) pairs in submit order.

    Round-robin by user: order by (the job's rank among its user's waiting jobs, submit order), so
    every user's first waiting job comes before anybody's second one and a user with many jobs
    cannot starve the others.
    """
    seen: dict[int, int] = {}
    ranked: list[tuple[int, int, str]] = []
    for index, (job_id, user_id) in enumerate(queued):
        seen[user_id] = seen.get(user_id, 0) + 1
        ranked.append((seen[user_id], index, job_id))
    ranked.sort()
    return [job_id for _, _, job_id in ranked]


class RunTimes:
    """Moving average of the last few run times: the ETA follows the hardware and image sizes
    actually in use instead of a constant."""

    def __init__(self, recent: Iterable[float] = (), default_s: float = DEFAULT_RUN_S) -> None:
        self._runs: deque[float] = deque(recent, maxlen=RECENT_RUNS)
        self.default_s = default_s

    def add(self, seconds: float) -> None:
        self._runs.append(max(0.0, seconds))

    def mean(self) -> float | None:
        return sum(self._runs) / len(self._runs) if self._runs else None

    def estimate(self) -> float:
        mean = self.mean()
        return self.default_s if mean is None else mean


def eta_s(position: int, run_s: float, workers: int = 1, busy: bool = True) -> float:
    """Seconds until the job at `position` (1-based) has its result: the rounds of work ahead of
    it plus its own run, plus half a run on average for the jobs being painted now."""
    workers = max(1, workers)
    rounds = math.ceil(position / workers)
    return round((rounds + (0.5 if busy else 0.0)) * run_s, 1)
