"""Follower under faults, without processes: a queue double that goes away and a bot double that
records what the user would see. Covers a graceful stop during a result upload (it finishes
within the stop's deadline, the sent mark is saved, nothing is resent; nothing new starts
uploading) and the once-per-outage "delayed, not lost" notice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import bot.follow as follow
from bot.follow import Follower
from bot.pacing import StopDeadline
from bot.store import Store
from bot.texts import t
from engine.queue import JobEvent, JobRecord, JobRequest, JobState, QueueUnavailable


class SlowBot:
    """Answers like Bot API methods, each sendPhoto taking `upload_s`."""

    def __init__(self, upload_s: float = 0.0) -> None:
        self.upload_s = upload_s
        self.sent: list[tuple[str, Any]] = []

    async def send_photo(self, chat: int, image: bytes, **kw: Any) -> None:
        await asyncio.sleep(self.upload_s)
        self.sent.append(("photo", kw.get("caption")))

    async def send_message(self, chat: int, text: str, **kw: Any) -> None:
        self.sent.append(("text", text))

    async def delete_message(self, chat: int, msg_id: int, **kw: Any) -> None:
        pass

    def texts(self) -> list[str]:
        return [str(body) for kind, body in self.sent if kind == "text"]


class FlakyQueue:
    """One job; `events()` raises QueueUnavailable while `down`, then finishes the job."""

    def __init__(self, result_after_s: float = 0.0) -> None:
        self.job = JobRecord("j1", JobRequest(1, 1, b"", []), JobState.RUNNING, time.time())
        self.down = False
        self.result_after_s = result_after_s
        self.acknowledged: list[str] = []

    async def get(self, job_id: str) -> JobRecord | None:
        if self.down:
            raise QueueUnavailable("down")
        return self.job

    async def events(self, job_id: str) -> AsyncIterator[JobEvent]:
        if self.down:
            raise QueueUnavailable("down")
        yield JobEvent(job_id, "started")
        await asyncio.sleep(self.result_after_s)
        if self.down:
            raise QueueUnavailable("down")
        yield JobEvent(job_id, "done", result=b"jpeg", elapsed_s=1.0)

    async def acknowledge(self, job_id: str) -> None:
        self.acknowledged.append(job_id)

    async def healthy(self) -> bool:
        return not self.down


async def wait_until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_close_lets_an_upload_in_flight_finish_and_marks_it_sent(tmp_path: Path) -> None:
    bot, queue, store = SlowBot(upload_s=0.5), FlakyQueue(), Store(tmp_path)
    follower = Follower(bot, queue, store)  # type: ignore[arg-type]
    follower.follow("j1")
    await wait_until(lambda: follower.uploading)
    await follower.close()  # a deploy's SIGTERM, mid-upload
    assert [kind for kind, _ in bot.sent] == ["photo"]
    assert queue.acknowledged == ["j1"]
    store.close()


async def test_close_never_cuts_an_upload_short_within_the_deadline(tmp_path: Path) -> None:
    """An upload cut short by the stop could still reach the chat (Telegram keeps what it
    received) with no sent mark saved, and the next start would send it again: issue 21's
    duplicate. So the stop waits for it until the deadline's cut-off (here 3 s - 0.6 s)."""
    bot, queue, store = SlowBot(upload_s=1.0), FlakyQueue(), Store(tmp_path)
    follower = Follower(bot, queue, store, deadline=StopDeadline(3.0))  # type: ignore[arg-type]
    follower.follow("j1")
    await wait_until(lambda: follower.uploading)
    await follower.close()
    assert [kind for kind, _ in bot.sent] == ["photo"]
    assert (await store.job_messages("j1")).sent  # the next start only acknowledges it
    store.close()


async def test_a_result_that_arrives_during_the_stop_is_not_uploaded(tmp_path: Path) -> None:
    """Once the stop has begun no delivery starts an upload (it could not be waited for in
    time, and a cut one may be a duplicate); the job stays undelivered for the next start."""
    bot, queue, store = SlowBot(), FlakyQueue(result_after_s=0.3), Store(tmp_path)
    follower = Follower(bot, queue, store)  # type: ignore[arg-type]
    follower.follow("j1")
    await asyncio.sleep(0.1)
    follower.stopping = True  # what the stop does first; the task is not cancelled yet
    await asyncio.sleep(0.5)  # the result came: the delivery must not send it
    await follower.close()
    assert bot.sent == [] and queue.acknowledged == []
    assert not (await store.job_messages("j1")).sent
    follower.follow("j1")  # a stopped follower starts nothing
    assert not follower.tasks
    store.close()


async def test_an_outage_is_told_once_and_the_job_still_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follow, "HEALTH_EVERY_S", 0.05)
    monkeypatch.setattr(follow, "RETRY_S", (0.05, 0.1))
    bot, queue, store = SlowBot(), FlakyQueue(result_after_s=0.3), Store(tmp_path)
    follower = Follower(bot, queue, store)  # type: ignore[arg-type]
    follower.quiet_s = 0.0
    follower.follow("j1")
    await asyncio.sleep(0.1)
    queue.down = True  # the stream breaks; get() and events() fail while down
    await asyncio.sleep(0.6)  # many failed retries and health checks: one notice
    queue.down = False
    await wait_until(lambda: queue.acknowledged)
    delayed = t("en", "queue_delayed")
    assert bot.texts().count(delayed) == 1
    assert [kind for kind, _ in bot.sent].count("photo") == 1
    await follower.close()
    store.close()
