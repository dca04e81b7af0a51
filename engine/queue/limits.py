"""The operator's knobs on the queue, shared by both backends."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueueLimits:
    per_user: int = 2  # queued + running jobs of one user
    max_queue: int = 100  # jobs waiting, all users together
    max_attempts: int = 3  # tries of a job whose worker died (= 2 retries after the first)
