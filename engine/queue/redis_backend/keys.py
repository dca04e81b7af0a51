"""Every Redis key the Redis backend uses, and the numbers that shape them. Nothing else in Redis
is ours, and nothing of ours is anybody else's: the waiting line has one source of truth.

    orsay:job:<id>        hash    the job record: state, times, attempts, request, result,
                                  the painter's latest note (an event), cancel_requested
    orsay:events:<id>     stream  the job's events, so a restarted bot resumes where it was
    orsay:queued          zset    the waiting line; score = fair rank + submit time (see below)
    orsay:line            stream  "the line moved": followers of waiting jobs re-read their place
    orsay:running         set     jobs being painted
    orsay:lease:<id>      string  the painting worker's lease; it renews it, a dead one's expires
    orsay:active:<user>   set     the user's queued + running jobs (the per-user limit)
    orsay:user:<user>     set     every job of the user still on record (/forget); an
                                  acknowledge drops the ids whose record has expired
    orsay:undelivered     set     finished jobs the bot has not acknowledged yet
    orsay:runs            list    recent run seconds, newest first (ETA, stats)
    orsay:waits           list    recent wait seconds, newest first (stats)
    orsay:workers         zset    worker name -> last heartbeat (unix s)
    orsay:day:<YYYYMMDD>  hash    jobs finished that day, by state
    orsay:submitted:<key> string  the job a keyed submit made (a replayed submit finds it)
    orsay:blob:<sha256>   string  a gallery painting's bytes, stored once (engine.queue.blobs)
    orsay:blobrefs:<sha>  zset    the jobs that need that blob -> until when (unix s; +inf
                                  while the job keeps its pictures). Blob and refs expire with
                                  the last deadline and are deleted with the last reference.

Fair order is engine.queue.policy.fair_order's rule, kept by the scores of orsay:queued: a job's
score is `submit_ms - (MAX_RANK - rank) * RANK_SPAN_MS`, rank being its place among its user's
waiting jobs in submit order, so every user's first waiting job sorts before anybody's second one.
When a job leaves the line its user's later jobs move up one rank; when one comes back (handed
back by a worker) it takes its place in submit order again (lua/line.lua).
"""

from __future__ import annotations

from datetime import datetime

PREFIX = "orsay:"
QUEUED = PREFIX + "queued"
LINE = PREFIX + "line"
RUNNING = PREFIX + "running"
UNDELIVERED = PREFIX + "undelivered"
RUNS = PREFIX + "runs"
WAITS = PREFIX + "waits"
WORKERS = PREFIX + "workers"
JOB_PREFIX = PREFIX + "job:"
EVENTS_PREFIX = PREFIX + "events:"
LEASE_PREFIX = PREFIX + "lease:"
ACTIVE_PREFIX = PREFIX + "active:"
USER_PREFIX = PREFIX + "user:"
DAY_PREFIX = PREFIX + "day:"
BLOB_PREFIX = PREFIX + "blob:"
BLOB_REFS_PREFIX = PREFIX + "blobrefs:"
SUBMITTED_PREFIX = PREFIX + "submitted:"

RANK_SPAN_MS = 10_000_000_000  # ~115 days: ranks never mix for jobs submitted within that span
MAX_RANK = 100  # waiting jobs one user may have (ORSAY_JOBS_PER_USER is capped at it)
EVENTS_MAXLEN = 200  # per job stream, approximate
LINE_MAXLEN = 10
RECENT = 20  # run times kept
RECENT_WAITS = 50
KEEP_RECORDS_S = 2 * 86400  # a delivered job's record, without its pictures
DAY_KEY_TTL_S = 3 * 86400
FORGOTTEN_STREAM_TTL_S = 60  # followers of a forgotten job still hear `cancelled`
SUBMITTED_TTL_S = 2 * 86400  # a submit key answers for its job this long (replays take minutes)


def job_key(job_id: str) -> str:
    return JOB_PREFIX + job_id


def events_key(job_id: str) -> str:
    return EVENTS_PREFIX + job_id


def lease_key(job_id: str) -> str:
    return LEASE_PREFIX + job_id


def active_key(user_id: int | str) -> str:
    return f"{ACTIVE_PREFIX}{user_id}"


def user_key(user_id: int | str) -> str:
    return f"{USER_PREFIX}{user_id}"


def day_key(ts: float) -> str:
    return f"{DAY_PREFIX}{datetime.fromtimestamp(ts):%Y%m%d}"


def blob_key(sha256: str) -> str:
    return BLOB_PREFIX + sha256


def blob_refs_key(sha256: str) -> str:
    return BLOB_REFS_PREFIX + sha256


# KEYS that CLAIM and CLAIM_MORE begin with (lua/take.lua)
LINE_KEYS = (QUEUED, RUNNING, LINE, WAITS)


def job_keys(job_id: str, user_id: int | str) -> list[str]:
    """KEYS of one job for CLAIM and CLAIM_MORE: its record, its user's active jobs, its lease and
    its events."""
    return [job_key(job_id), active_key(user_id), lease_key(job_id), events_key(job_id)]


def submitted_key(key: str | None) -> str:
    """SUBMIT's last KEY: where a keyed submit records its job; '' for a submit without key."""
    return "" if key is None else SUBMITTED_PREFIX + key


def blob_keys(shas: list[str]) -> list[str]:
    """KEYS for SUBMIT's and RELEASE's blob part: blob, refs, blob, refs, ..."""
    return [key for sha in shas for key in (blob_key(sha), blob_refs_key(sha))]
