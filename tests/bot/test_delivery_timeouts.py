"""The timeout policy per call kind (bot.pacing, issue 30 finding 9), counted on the slow-link
double: for each kind of message, one call of it reaches Telegram whole and gets no answer within
its read timeout, in two ways:

- kept: Telegram carried it out and answers late (what `telegram.late` does);
- dropped: Telegram never carried it out and answers nothing in time (a lost request).

The bot cannot tell the two apart. At most once (a new message with a file: the result, a print,
the courtesy copy, a preview) costs a loss when it was dropped; at least once (texts, edits)
costs a duplicate when it was kept. `POLICY` holds what each kind gives, as counted here: the
copies in the chat, the ones lost, and the ones left over (shown, but with no id the bot knows,
so never edited or deleted). Read timeouts are shortened to 1 s so that an answer 1.5 s late is
past them; the real ones are READ_S and UPLOAD_READ_S."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp import web
from telegram.error import TimedOut

import bot.pacing as pacing
from tests.doubles.bot_api_wire import Sent, error
from tests.doubles.bot_helpers import BotFactory, jpeg
from tests.doubles.fake_telegram import FakeTelegram
from tests.doubles.link import SLOW_LINK
from tests.doubles.painters import SizedPainter

LATE_S = 1.5  # past the shortened read timeouts (1 s)
FAST = {"steps": 1, "scales": 1}  # done within the quiet period: no status, no preview
SLOW = {"steps": 6, "scales": 2, "step_s": 0.3}  # a status, edits and a preview per scale


@dataclass(frozen=True)
class Kind:
    method: str
    policy: str
    painter: dict[str, Any]
    count: Callable[[list[Sent]], list[Sent]]  # the messages of this kind in the chat
    env: dict[str, str]
    armed_before_photo: bool = False  # the call comes in reply to the photo, not the press


def _is_menu(m: Sent) -> bool:
    return any(data == "rnd" for _, data in m.buttons())


KINDS = {
    "result": Kind("sendPhoto", "at most once", FAST, lambda ms: [m for m in ms if m.caption], {}),
    "print": Kind(
        "sendDocument",
        "at most once",
        FAST,
        lambda ms: [m for m in ms if m.kind == "document" and m.caption],
        {"ORSAY_PRINT_SIZE": "400"},
    ),
    "courtesy copy": Kind(
        "sendDocument",
        "at most once",
        FAST,
        lambda ms: [m for m in ms if m.kind == "document" and not m.caption],
        {},
    ),
    "preview": Kind(
        "sendPhoto",
        "at most once",
        SLOW,
        lambda ms: [m for m in ms if m.kind == "photo" and not m.caption],
        {},
    ),
    "status message": Kind(
        "sendMessage",
        "at least once",
        SLOW,
        lambda ms: [m for m in ms if m.kind == "text" and not _is_menu(m)],
        {},
    ),
    "status edit": Kind(
        "editMessageText",
        "at least once",
        SLOW,
        lambda ms: [m for m in ms if m.kind == "text" and not _is_menu(m)],
        {},
    ),
    "text reply": Kind(
        "sendMessage",
        "at least once",
        FAST,
        lambda ms: [m for m in ms if _is_menu(m)],
        {},
        armed_before_photo=True,
    ),
}

# (kind, what Telegram did) -> (copies in the chat, lost, left over), as counted by this module
POLICY: dict[tuple[str, str], tuple[int, int, int]] = {
    ("result", "kept"): (1, 0, 0),
    ("result", "dropped"): (0, 1, 0),
    ("print", "kept"): (1, 0, 0),
    ("print", "dropped"): (0, 1, 0),
    ("courtesy copy", "kept"): (1, 0, 0),
    ("courtesy copy", "dropped"): (0, 1, 0),
    ("preview", "kept"): (1, 0, 1),  # then previews are off for the job
    ("preview", "dropped"): (0, 1, 0),
    ("status message", "kept"): (2, 0, 1),  # the first one stays, unedited
    ("status message", "dropped"): (1, 0, 0),
    ("status edit", "kept"): (1, 0, 0),  # the repeat is "not modified"
    ("status edit", "dropped"): (1, 0, 0),
    ("text reply", "kept"): (2, 0, 0),  # two menus, both work
    ("text reply", "dropped"): (1, 0, 0),
}


def drop(telegram: FakeTelegram, method: str, chat_id: int) -> list[bool]:
    """The next call of `method` to `chat_id` arrives whole and is never carried out; its
    answer, an error, comes after the client gave up. [False] once it has happened."""
    answer = telegram._answer
    armed = [True]

    async def dropping(m: str, params: dict[str, Any], files: dict[str, bytes]) -> web.Response:
        if armed[0] and m == method and params.get("chat_id") == chat_id:
            armed[0] = False
            await asyncio.sleep(LATE_S)
            return error(500, "Internal Server Error: lost")
        return await answer(m, params, files)

    telegram._answer = dropping  # type: ignore[method-assign, assignment]
    return armed


def arm(telegram: FakeTelegram, fault: str, method: str, chat_id: int) -> Callable[[], bool]:
    """Make the fault happen to the next such call; returns whether it has."""
    if fault == "dropped":
        armed = drop(telegram, method, chat_id)
        return lambda: not armed[0]
    telegram.late(method, LATE_S, times=1, chat_id=chat_id)
    late = telegram.lates[-1]
    return lambda: late.times == 0


async def test_an_unanswered_upload_is_tried_once_and_a_text_until_the_bound() -> None:
    """The limiter's half of the policy: a read timeout (the request was written whole) ends an
    upload's tries; a text is tried again; a timeout before anything was sent is tried again."""
    limiter = pacing.ForegroundFirstLimiter(rate=0, backoff_s=0.01)
    tries: list[str] = []

    async def unanswered(cause: Exception) -> bool:
        tries.append(type(cause).__name__)
        raise TimedOut() from cause

    read, pool = httpx.ReadTimeout("no answer"), httpx.PoolTimeout("no connection")
    for endpoint, cause, expected in (
        ("sendPhoto", read, 1),
        ("sendDocument", read, 1),
        ("sendMessage", read, pacing.ATTEMPTS),
        ("sendPhoto", pool, pacing.ATTEMPTS),
    ):
        tries.clear()
        with pytest.raises(TimedOut):
            await limiter.process_request(unanswered, (cause,), {}, endpoint, {"chat_id": 1}, True)
        assert len(tries) == expected, (endpoint, cause)
    await limiter.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("link", [SLOW_LINK], indirect=True, ids=["slow"])
@pytest.mark.parametrize("fault", ["kept", "dropped"])
@pytest.mark.parametrize("name", list(KINDS))
async def test_each_call_kind_gives_what_its_policy_says(
    telegram: FakeTelegram,
    start_bot: BotFactory,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    fault: str,
) -> None:
    kind, chat = KINDS[name], 90
    monkeypatch.setattr(pacing, "READ_S", 1.0)
    monkeypatch.setattr(pacing, "UPLOAD_READ_S", 1.0)
    assert (kind.method in pacing.ONCE) == (kind.policy == "at most once")
    async with start_bot(painter=SizedPainter(**kind.painter), **kind.env) as app:
        svc = app.bot_data["services"]
        svc.follower.pacer.interval_s = 0.5  # several status edits per job
        quality = "print" if "ORSAY_PRINT_SIZE" in kind.env else "balanced"
        await svc.store.update(chat, quality=quality, as_file=name == "courtesy copy")
        ann = telegram.user(chat)
        happened = arm(telegram, fault, kind.method, chat) if kind.armed_before_photo else None
        ann.photo(jpeg(seed=90))
        menu = await ann.wait_menu(timeout=15)
        happened = happened or arm(telegram, fault, kind.method, chat)
        ann.press(menu, "st:klimt-the-kiss")
        await telegram.wait_for(lambda: svc.follower.tasks, timeout=15)
        await telegram.wait_for(lambda: not svc.follower.tasks, timeout=30)  # delivered
        assert await svc.queue.undelivered() == []
        assert happened()
    shown = kind.count(ann.messages())
    lost = 0 if shown else 1
    left_over = sum(not m.deleted for m in shown) if kind.painter is SLOW else 0
    assert (len(shown), lost, left_over) == POLICY[name, fault]
