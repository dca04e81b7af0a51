"""Prometheus metrics. Defined once here; the queue, worker, engine and bot update them, and the
health server exposes them at /metrics when ORSAY_METRICS_PORT is set."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS = Counter("orsay_jobs_total", "Jobs that reached a state", ["state"])
QUEUE_LENGTH = Gauge("orsay_queue_length", "Jobs waiting to be painted")
RUNNING_JOBS = Gauge("orsay_running_jobs", "Jobs being painted now")
WAIT_SECONDS = Histogram(
    "orsay_job_wait_seconds",
    "Time from submit to start",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600),
)
RUN_SECONDS = Histogram(
    "orsay_job_run_seconds",
    "Time from start to result",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600),
)
STEP_SECONDS = Histogram(
    "orsay_engine_step_seconds",
    "Engine seconds per optimizer step, by long side in px",
    ["size"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TELEGRAM_ERRORS = Counter("orsay_telegram_errors_total", "Telegram API errors", ["kind"])
