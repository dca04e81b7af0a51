"""A scale-out deployment on loopback, as an operator runs it: a real `orsay bot` process against
the fake Bot API (at a link profile's timing, tests/doubles/link.py), `orsay worker` processes,
and a redis-server with append-only persistence on disk. The chaos tests kill and restart its
parts and count what reached the chats.

Every process logs to a file under the cluster's folder; `log(name)` reads it back so tests can
check that failures were logged with their reasons.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.doubles.bot_api_wire import error
from tests.doubles.bot_helpers import jpeg
from tests.doubles.fake_telegram import TOKEN, Call, FakeTelegram, FakeUser, Sent
from tests.doubles.link import INSTANT, Link
from tests.doubles.queue_helpers import RedisServer

REPO = Path(__file__).resolve().parents[2]


UPLOAD_BYTES = 64 * 1024  # a request this big is an upload that takes time on a slow link
OUTCOMES: list[Outcome] = []  # every chaos scenario's count, printed at the end of the run


def orsay_command(*args: str) -> list[str]:
    """The `orsay` command line run from this checkout (not whatever is installed)."""
    return [sys.executable, "-m", "orsay", *args]


class ChaosTelegram(FakeTelegram):
    """The fake Bot API at a link profile's timing (tests/doubles/link.py), plus hooks that run
    *before* a call is answered, so a test can kill or signal the bot at an exact moment (e.g.
    while Telegram is receiving a result upload), and the slow link's faults over a stretch of
    time: a delay on every file download, and a window in which uploads are kept at once but
    answered late."""

    def __init__(self, link: Link = INSTANT) -> None:
        super().__init__(link=link)
        self.before: list[Callable[[str, dict[str, Any]], Any]] = []
        self.after: list[Callable[[str, dict[str, Any]], Any]] = []  # answered, not yet replied
        self.upload_delay_s = 0.0  # extra time a result upload takes (sendPhoto with a caption)
        self.uploading = 0  # result uploads received and not answered yet
        self.download_delay_s = 0.0  # extra time every file download takes (on top of the link)
        self.uploads_in_flight = 0  # requests of UPLOAD_BYTES or more arrived, not answered
        self.late_window: tuple[frozenset[str], float, float] | None = None  # see answer_late
        self.late_answers: list[tuple[str, int, bool]] = []  # (method, chat, result upload?)

    def answer_late(self, methods: tuple[str, ...], after_s: float, for_s: float) -> None:
        """For the next `for_s` seconds, every call of `methods` is carried out (the message
        kept) and answered `after_s` later: `late()` for a stretch of time rather than a count.
        Each such answer is recorded in `late_answers`."""
        self.late_window = (frozenset(methods), after_s, time.monotonic() + for_s)

    async def _api(self, request: web.Request) -> web.StreamResponse:
        """An upload is in flight from its first byte until its answer."""
        upload = (request.content_length or 0) >= UPLOAD_BYTES
        self.uploads_in_flight += upload
        _REQUEST.set(request)  # this request's own task: _answer reads it
        try:
            return await super()._api(request)
        finally:
            self.uploads_in_flight -= upload

    async def _download(self, request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(self.download_delay_s)
        return await super()._download(request)

    async def _answer(self, method: str, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        for hook in list(self.before):
            outcome = hook(method, params)
            if asyncio.iscoroutine(outcome):
                await outcome
        upload = is_result_upload(method, params)
        self.uploading += upload
        try:
            if self.upload_delay_s and upload:
                await asyncio.sleep(self.upload_delay_s)
            if _client_gone():  # cut before it had all arrived: Telegram never saw it
                return error(499, "Client Closed Request")
            response = await super()._answer(method, params, files)
        finally:
            self.uploading -= upload
        for hook in list(self.after):
            hook(method, params)
        await self._maybe_late(method, params, response)
        return response

    async def _maybe_late(self, method: str, params: dict[str, Any], response: Any) -> None:
        """Inside the late window a kept message's answer waits `after_s`."""
        window = self.late_window
        if window is None or response.status != 200:
            return
        methods, after_s, until = window
        if method in methods and time.monotonic() < until:
            result = is_result_upload(method, params)
            self.late_answers.append((method, int(params.get("chat_id") or 0), result))
            await asyncio.sleep(after_s)


_REQUEST: ContextVar[web.Request | None] = ContextVar("chaos_request", default=None)


def _client_gone() -> bool:
    """The bot closed the request being answered (a cut upload: it stopped, or its client
    timed out while the upload was still on its way, which the link's timing models)."""
    request = _REQUEST.get()
    return request is not None and (request.transport is None or request.transport.is_closing())


def is_result_upload(method: str, params: dict[str, Any]) -> bool:
    return method == "sendPhoto" and bool(params.get("caption"))


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.popen = subprocess.Popen(
            self.argv,
            cwd=REPO,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    async def terminate(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait (SIGKILL after `timeout`); the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.popen.wait, timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                await asyncio.to_thread(self.popen.wait, 10)
        return self.popen.returncode


@dataclass
class Outcome:
    """One scenario's count, from the chats' side."""

    scenario: str
    accepted: int = 0
    delivered_once: int = 0
    duplicates: int = 0
    lost: int = 0
    unanswered: int = 0
    link: str = INSTANT.name  # the fake Telegram's profile (tests/doubles/link.py)

    def add(self, other: Outcome) -> None:
        """Count `other` (a repetition of the same scenario) in this one too."""
        self.accepted += other.accepted
        self.delivered_once += other.delivered_once
        self.duplicates += other.duplicates
        self.lost += other.lost
        self.unanswered += other.unanswered

    @staticmethod
    def header() -> str:
        return (
            f"{'scenario':<44} {'link':<9} {'accepted':>8} {'delivered once':>14} "
            f"{'duplicates':>10} {'lost':>4} {'unanswered':>10}"
        )

    def row(self) -> str:
        return (
            f"{self.scenario:<44} {self.link:<9} {self.accepted:>8} {self.delivered_once:>14} "
            f"{self.duplicates:>10} {self.lost:>4} {self.unanswered:>10}"
        )


@dataclass
class Press:
    """A user's style press and what the bot made of it."""

    user: FakeUser
    at: float
    slug: str
    update_id: int = 0  # the callback query's update, to tell when polling confirmed it
    query_id: str = ""  # the callback query's id (answerCallbackQuery names it)


@dataclass
class Cluster:
    root: Path
    telegram: ChaosTelegram
    gallery: Path
    redis: RedisServer = field(init=False)
    bot: Proc = field(init=False)
    workers: list[Proc] = field(default_factory=list)
    presses: list[Press] = field(default_factory=list)
    shutdown_grace_s: float = 5.0

    def __post_init__(self) -> None:
        (self.root / "redis").mkdir(parents=True, exist_ok=True)
        # appendfsync always: with everysec a kill -9 may lose the last second of writes (the
        # scenario's one CI failure turned out to be the follower's cursor, not lost writes).
        self.redis = RedisServer(self.root / "redis", fsync="always")
        self.bot = Proc("bot", orsay_command("bot"), self._bot_env(), self.root / "bot.log")

    # -- processes ---------------------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORSAY_")}
        return {
            **env,
            "PYTHONPATH": str(REPO),
            "ORSAY_QUEUE": self.redis.url,
            "ORSAY_LOG_LEVEL": "INFO",
            "ORSAY_SHUTDOWN_GRACE": str(self.shutdown_grace_s),
        }

    def _bot_env(self) -> dict[str, str]:
        return {
            **self._base_env(),
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "ORSAY_BOT_API_URL": self.telegram.url,
            "ORSAY_DATA_DIR": str(self.root / "bot-data"),
            "ORSAY_GALLERY_DIR": str(self.gallery),
            "ORSAY_TELEGRAM_RATE": "0",
            "ORSAY_MAX_SIZE": "64",
        }

    def add_worker(self, *extra: str, painter: str = "stub", **env: str) -> Proc:
        """A worker with a data dir of its own (no gallery) and lease 2 s, so a dead worker's
        job comes back quickly."""
        index = len(self.workers) + 1
        argv = orsay_command("worker", "--lease", "2", "--poll", "0.05", *extra)
        worker_env = {
            **self._base_env(),
            "ORSAY_DATA_DIR": str(self.root / f"worker{index}-data"),
            "ORSAY_PAINTER": painter,
            **env,
        }
        proc = Proc(f"worker{index}", argv, worker_env, self.root / f"worker{index}.log")
        self.workers.append(proc)
        return proc

    def start(self, *, redis: bool = True, bot: bool = True, workers: bool = True) -> None:
        if redis:
            self.redis.start()
        if workers:
            for worker in self.workers:
                worker.start()
        if bot:
            self.bot.start()

    async def stop(self) -> None:
        for proc in [self.bot, *self.workers]:
            await proc.terminate(timeout=10)
        self.redis.stop()

    @property
    def bot_store(self) -> Path:
        """The bot's SQLite store (bot.store: `<data dir>/bot/bot.sqlite3`)."""
        return self.root / "bot-data" / "bot" / "bot.sqlite3"

    def jobs_of(self, user_ids: list[int]) -> dict[int, int]:
        """How many jobs each user has made (Redis's orsay:user:<id>, every job of the user)."""
        import redis

        client = redis.Redis.from_url(self.redis.url, socket_timeout=5)
        try:
            return {user: int(client.scard(f"orsay:user:{user}")) for user in user_ids}
        finally:
            client.close()

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def bot_ready(self, timeout: float = 40.0) -> None:
        """The bot is polling (it asked getUpdates since it was last started)."""
        since = time.monotonic()
        await self.telegram.wait_for(
            lambda: (
                any(c.method == "getUpdates" and c.at >= since for c in self.telegram.calls)
                or not self.bot.alive
            ),
            timeout,
        )
        assert self.bot.alive, f"the bot exited:\n{self.log('bot')[-3000:]}"

    # -- users -------------------------------------------------------------------------------

    async def order(self, user: FakeUser, slug: str, seed: int, extra: bytes = b"") -> Press:
        """The user sends a photo, waits for the style menu and presses `slug`."""
        return self.press(user, await self.menu_for(user, seed, extra), slug)

    async def menu_for(self, user: FakeUser, seed: int, extra: bytes = b"") -> Sent:
        """The user sends a photo; the style menu the bot answers with."""
        user.photo(jpeg(seed=seed, extra=extra))
        return await user.wait_menu(after=len(user.menus()), timeout=30)

    def press(self, user: FakeUser, menu: Sent, slug: str) -> Press:
        """The user presses `slug` on `menu` (the update is pushed before this returns)."""
        press = Press(user, time.monotonic(), slug)
        press.query_id = user.press(menu, f"st:{slug}")
        press.update_id = self.telegram.last_update_id
        self.presses.append(press)
        return press

    def confirmed(self, press: Press) -> bool:
        """The bot has asked getUpdates past this press: Telegram would not send it again."""
        return any(
            c.method == "getUpdates" and int(c.params.get("offset") or 0) > press.update_id
            for c in self.telegram.calls
        )

    def replies(self, press: Press) -> list[Call]:
        """The bot's successful sends and edits to this user from the press until the user's next
        press."""
        later = [p.at for p in self.presses if p.user.id == press.user.id and p.at > press.at]
        until = min(later, default=float("inf"))
        return [
            c
            for c in self.telegram.calls
            if press.at <= c.at < until
            and c.status == 200
            and c.params.get("chat_id") == press.user.id
            and c.method.startswith(("send", "edit"))
        ]

    def results(self, user: FakeUser) -> list[Sent]:
        return [m for m in user.messages("photo") if m.caption and m.reply_markup]

    async def settle(self, expect: Callable[[], bool], timeout: float) -> None:
        """Wait until `expect()` holds, then a little longer so a duplicate would show. On a
        timeout the failure says where each job stands (`diagnose`), not just that time ran out."""
        try:
            await self.telegram.wait_for(expect, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnose()}") from None
        await asyncio.sleep(1.5)

    def diagnose(self) -> str:
        """Every job record in Redis (state, tries, worker, error), which users have no result
        and what their chats say, and the log lines that name an undelivered job."""
        lines = []
        waiting = [p.user for p in self.presses if not self.results(p.user)]
        for user in waiting:
            texts = [m.text or m.caption or m.kind for m in user.messages()]
            lines.append(f"user {user.id} has no result; chat: {texts}")
        stuck: list[str] = []
        try:
            import redis

            client = redis.Redis.from_url(self.redis.url, socket_timeout=2)
            for key in sorted(client.scan_iter("orsay:job:*")):
                fields = client.hmget(
                    key, ["user_id", "state", "attempts", "worker", "error", "delivered"]
                )
                values = [v.decode() if v else None for v in fields]
                if values[-1] != "1":
                    stuck.append(key.decode().removeprefix("orsay:job:"))
                lines.append(f"{key.decode()}: user,state,attempts,worker,error,delivered={values}")
            for name in ("queued", "running", "undelivered"):
                kind = client.type(f"orsay:{name}").decode()
                members = (
                    client.zrange(f"orsay:{name}", 0, -1)
                    if kind == "zset"
                    else client.smembers(f"orsay:{name}")
                )
                lines.append(f"orsay:{name} = {sorted(m.decode() for m in members)}")
            client.close()
        except Exception as exc:  # a diagnosis must not hide the failure it explains
            lines.append(f"(Redis not readable: {exc!r})")
        for proc in [self.bot, *self.workers]:
            hits = [
                line
                for line in self.log(proc.name).splitlines()
                if any(job in line for job in stuck) or "Traceback" in line or "rror" in line
            ]
            lines.append(f"--- {proc.name} log, lines naming undelivered jobs or errors:")
            lines.extend(line[:400] for line in hits[-40:])  # a traceback is one long line
        return "\n".join(lines)

    def outcome(
        self, scenario: str, *, unavailable_text: str, presses: list[Press] | None = None
    ) -> Outcome:
        """Count, per press (of `presses`, default all): answered (the bot said anything after
        it), accepted (answered with more than 'temporarily unavailable'), and per user the
        result photos against the accepted presses: delivered once, duplicates (extra copies),
        lost (no result). The users of `presses` must have pressed nothing else."""
        out = Outcome(scenario, link=self.telegram.link.name)
        accepted_by_user: dict[int, int] = {}
        users: dict[int, FakeUser] = {}
        for press in self.presses if presses is None else presses:
            users[press.user.id] = press.user
            replies = self.replies(press)
            if not replies:
                out.unanswered += 1
                continue
            refused = all(unavailable_text in str(c.params.get("text", "")) for c in replies)
            if not refused:
                out.accepted += 1
                accepted_by_user[press.user.id] = accepted_by_user.get(press.user.id, 0) + 1
        for user_id, user in users.items():
            wanted = accepted_by_user.get(user_id, 0)
            got = len(self.results(user))
            out.delivered_once += min(got, wanted)
            out.duplicates += max(0, got - wanted)
            out.lost += max(0, wanted - got)
        return out
