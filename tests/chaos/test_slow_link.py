"""The bot's promises on the slow link (issue 30): the deployment of test_chaos (a real
`orsay bot`, `orsay worker`s, redis-server with an append-only file) against the fake Bot API
at the slow-link profile of tests/doubles/link.py (50 ms a call, getFile 300 ms, 1 MB/s down,
256 KB/s up), with the faults that profile brings on top:

- albums whose parts take 2 s each to download: every album stays one album (no style menu in
  reply to a part, one job per album) and its painting arrives once;
- uploads that Telegram keeps at once but answers 15 s later (past PTB's default 5 s read
  timeout) for WINDOW_S: every job is delivered, exactly once. The bot's policy for an answer in
  doubt (bot.delivery) sends a result at most once, so a late answer costs no copy; a preview's
  failure must cost nothing (issue 30, finding 10);
- SIGTERM while results upload at 256 KB/s, Telegram answers them 502 (so each is tried again)
  and users keep pressing: the process exits within ORSAY_STOP_S, and after a restart every
  press is delivered exactly once;
- the bot's store locked by another process for OUTAGE_S under traffic (a real SQLite fault:
  a second connection holds `BEGIN IMMEDIATE`, so the bot's writes fail with 'database is
  locked'): the bot answers again by itself within BACK_S of the lock's release, nothing is
  lost, nothing is sent twice.

Each scenario counts from the chats' side and records an `Outcome` row (with its link profile)
in the table printed at the end of the run (tests/chaos/conftest.py), also when it fails, so a
failure's figures can be quoted. Waits are bounded and return whether they were met; the
assertions come after the row is recorded.

Store sizes after many updates (issue 30's 10,000 updates) are measured by bench/store_sizes.py,
not here: rows are kept for days (bot.store.KEEP_HANDLED_S), a bound that only an in-process
run can scale down to fit a test, so a bot process here could not tell retention from a leak.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.texts import t
from tests.doubles.bot_helpers import jpeg
from tests.doubles.cluster import OUTCOMES, Cluster, Outcome, Press
from tests.doubles.fake_telegram import FakeUser, Sent
from tests.doubles.link import SLOW_LINK

pytestmark = [
    pytest.mark.slow,
    pytest.mark.redis,
    pytest.mark.timeout(240),
    pytest.mark.parametrize("link", [SLOW_LINK], indirect=True, ids=["slow-link"]),
]

SLUGS = (
    "klimt-the-kiss",
    "hokusai-great-wave-off-kanagawa",
    "monet-impression-sunrise",
    "van-gogh-starry-night",
)
UNAVAILABLE = t("en", "queue_unavailable")
FAST = ("--stub-painter", "--stub-steps", "1", "--stub-step-s", "0.05")  # 2 scales: 0.1 s a job
SECOND = ("--stub-painter", "--stub-steps", "5", "--stub-step-s", "0.1")  # 1 s: has a preview
ALBUMS = 50
PART_S = 2.0  # each album part: getFile, then the file, together this long
LATE_S = 15.0  # how late Telegram answers a kept upload (PTB's default read timeout: 5 s)
# Issue 30 asks for a minute; 40 s keeps the scenario short and still outlasts what the bot
# retries a call for (5 tries: 5 x 5 s read timeouts + 0.5+1+2+4 s back-off = 32.5 s), so a
# call that gives up inside the window shows.
WINDOW_S = 40.0
STOP_S = 8  # ORSAY_STOP_S for the SIGTERM scenario (the default is 60)
OUTAGE_S = 30.0  # how long the store stays locked
BACK_S = 15.0  # the bot answers again this soon after the lock is released


async def deployed(cluster: Cluster, *worker_args: str, workers: int = 2, **env: str) -> None:
    """Redis, `workers` workers and the bot, up and polling."""
    for _ in range(workers):
        cluster.add_worker(*worker_args, **env)
    cluster.start()
    await cluster.bot_ready()


async def met(cluster: Cluster, expect: Callable[[], object], timeout: float) -> bool:
    """Wait until `expect()` holds (True) or `timeout` passes (False)."""
    try:
        await cluster.telegram.wait_for(expect, timeout)
    except AssertionError:
        return False
    return True


async def menus(cluster: Cluster, first_user: int, count: int) -> list[tuple[FakeUser, Sent]]:
    """`count` new users each send a photo and get the style menu, concurrently."""
    users = [cluster.telegram.user(first_user + i) for i in range(count)]
    got = await asyncio.gather(*(cluster.menu_for(u, seed=u.id) for u in users))
    return list(zip(users, got, strict=True))


def press_all(cluster: Cluster, ready: list[tuple[FakeUser, Sent]], shift: int = 0) -> list[Press]:
    """Every user presses a painting on their menu, with no await in between."""
    return [
        cluster.press(user, menu, SLUGS[(i + shift) % len(SLUGS)])
        for i, (user, menu) in enumerate(ready)
    ]


def all_delivered(cluster: Cluster, presses: list[Press]) -> Callable[[], bool]:
    """Every user of `presses` has as many results as presses."""
    wanted: dict[int, int] = {}
    for press in presses:
        wanted[press.user.id] = wanted.get(press.user.id, 0) + 1
    users = {p.user.id: p.user for p in presses}
    return lambda: all(len(cluster.results(users[u])) >= n for u, n in wanted.items())


def record(cluster: Cluster, scenario: str, presses: list[Press] | None = None) -> Outcome:
    outcome = cluster.outcome(scenario, unavailable_text=UNAVAILABLE, presses=presses)
    OUTCOMES.append(outcome)
    return outcome


def exactly_once(outcome: Outcome, accepted: int) -> bool:
    o = outcome
    return (o.accepted, o.delivered_once, o.duplicates, o.lost, o.unanswered) == (
        accepted, accepted, 0, 0, 0
    )  # fmt: skip


# -- albums ----------------------------------------------------------------------------------


def album_outcome(cluster: Cluster, scenario: str, users: list[FakeUser]) -> Outcome:
    """Per album (one order): answered at all, and its painting delivered once, twice, never."""
    out = Outcome(scenario, link=cluster.telegram.link.name)
    for user in users:
        if not user.messages():
            out.unanswered += 1
            continue
        out.accepted += 1
        got = len(cluster.results(user))
        out.delivered_once += min(got, 1)
        out.duplicates += max(0, got - 1)
        out.lost += got == 0
    OUTCOMES.append(out)
    return out


async def test_albums_stay_whole_when_each_part_takes_2_s(cluster: Cluster) -> None:
    link = cluster.telegram.link
    cluster.telegram.download_delay_s = PART_S - link.get_file_s - 2 * link.call_s
    await deployed(cluster, *FAST)
    users = [cluster.telegram.user(5000 + i) for i in range(ALBUMS)]
    for i, user in enumerate(users):  # 50 users at once, as 50 phones would
        user.album(jpeg(seed=2 * i), jpeg(64, 64, seed=2 * i + 1))
    # a painting, or a style menu: the bot took a part for a lone photo and the album is split
    settled = await met(cluster, lambda: all(cluster.results(u) or u.menus() for u in users), 60)
    await asyncio.sleep(PART_S + 1.0)  # a split album's second part comes one part later
    outcome = album_outcome(cluster, f"{ALBUMS} albums, {PART_S:g} s a part", users)
    split = [u.id for u in users if u.menus()]  # a style menu: a part taken for a lone photo
    jobs = cluster.jobs_of([u.id for u in users])
    assert settled, f"{outcome}\n{cluster.diagnose()}"
    assert not split, f"{len(split)} of {ALBUMS} albums split (style menus sent): {outcome}"
    assert set(jobs.values()) == {1}, f"jobs per album: {jobs}"
    assert (outcome.delivered_once, outcome.duplicates, outcome.lost) == (ALBUMS, 0, 0), outcome


# -- late answers ----------------------------------------------------------------------------


async def test_uploads_answered_15_s_late_still_deliver_every_job(cluster: Cluster) -> None:
    await deployed(cluster, *SECOND)
    ready = await menus(cluster, 6000, 16)
    cluster.telegram.answer_late(("sendPhoto", "sendDocument"), LATE_S, WINDOW_S)
    opened = time.monotonic()
    presses = press_all(cluster, ready[:10])
    await asyncio.sleep(WINDOW_S / 2)  # more jobs start, preview and finish inside the window
    presses += press_all(cluster, ready[10:])
    left = WINDOW_S - (time.monotonic() - opened)
    delivered = await met(cluster, all_delivered(cluster, presses), left + LATE_S + 30)
    await asyncio.sleep(1.5)  # a duplicate would show by now
    outcome = record(cluster, f"uploads answered {LATE_S:g} s late for {WINDOW_S:g} s", presses)
    late = cluster.telegram.late_answers
    results_late = sum(result for _, _, result in late)
    assert results_late, f"no result upload was answered late ({len(late)} late answers)"
    assert delivered, f"{outcome}\n{cluster.diagnose()}"
    # The policy (bot.delivery): a result whose answer is in doubt is sent at most once, so a
    # late answer costs no copy; the fake keeps every upload that reached it whole, so none is
    # lost either. Exactly once, then, however late Telegram answers.
    assert exactly_once(outcome, len(presses)), (outcome, f"{results_late} results answered late")


# -- SIGTERM ---------------------------------------------------------------------------------


async def test_sigterm_with_uploads_in_flight_exits_within_stop_s(cluster: Cluster) -> None:
    cluster.bot.env["ORSAY_STOP_S"] = str(STOP_S)
    await deployed(cluster, painter="tests.chaos.painters:big")
    ready = await menus(cluster, 7000, 12)
    menu_of = {user.id: menu for user, menu in ready}
    presses = press_all(cluster, ready)
    # results of ~770 KB take 3 s each at 256 KB/s: stop while three of them are on the way,
    # and answer them 502, so each is tried again (0.5, 1, 2 s apart), 3 s a try: a stop that
    # waits for them takes 15 s, one that shares its deadline among them ends within STOP_S
    in_flight = await met(cluster, lambda: cluster.telegram.uploads_in_flight >= 3, 60)
    assert in_flight, cluster.diagnose()
    cluster.telegram.fault("sendPhoto", 502, times=3 * cluster.telegram.uploads_in_flight)
    began = time.monotonic()
    stopping = asyncio.create_task(cluster.bot.terminate(timeout=STOP_S + 30))
    answered = [p for p in presses if cluster.replies(p)][:4]
    late = [  # users the bot had answered press another painting while it stops
        cluster.press(p.user, menu_of[p.user.id], SLUGS[(i + 1) % len(SLUGS)])
        for i, p in enumerate(answered)
    ]
    code = await stopping
    stopped_s = time.monotonic() - began
    cluster.telegram.faults.clear()
    cluster.bot.start()
    await cluster.bot_ready()
    everyone = presses + late
    delivered = await met(cluster, all_delivered(cluster, everyone), 60)
    await asyncio.sleep(1.5)
    outcome = record(cluster, f"SIGTERM, uploads in flight + 5xx, stop {STOP_S} s", everyone)
    assert late, "nobody pressed while the bot stopped"
    assert code == 0, (code, cluster.log("bot")[-3000:])
    assert stopped_s <= STOP_S, f"the bot took {stopped_s:.1f} s to stop (ORSAY_STOP_S={STOP_S})"
    assert delivered, f"{outcome}\n{cluster.diagnose()}"
    assert exactly_once(outcome, len(everyone)), outcome


# -- the store locked ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def store_locked(path: Path) -> AsyncIterator[None]:
    """Another connection holds the write lock of the SQLite file at `path` (a real fault: the
    bot's writes wait out their busy timeout and fail with 'database is locked')."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        await asyncio.to_thread(db.execute, "BEGIN IMMEDIATE")  # after a write in progress
        try:
            yield
        finally:
            db.execute("ROLLBACK")
    finally:
        db.close()


async def test_the_store_locked_for_30_s_under_traffic(cluster: Cluster) -> None:
    cluster.bot.env["ORSAY_STORE_OUTAGE_S"] = str(int(OUTAGE_S * 4))  # retried, never exits
    await deployed(cluster, *SECOND)
    ready = await menus(cluster, 8000, 10)
    presses = press_all(cluster, ready[:3])  # jobs painted and delivered during the outage
    assert await met(cluster, lambda: all(cluster.replies(p) for p in presses), 10)
    newcomers = [cluster.telegram.user(8100 + i) for i in range(4)]
    async with store_locked(cluster.bot_store):
        await asyncio.sleep(1.0)
        presses += press_all(cluster, ready[3:7], shift=1)
        for user in newcomers:
            user.photo(jpeg(seed=user.id))
        await asyncio.sleep(OUTAGE_S / 2)
        presses += press_all(cluster, ready[7:], shift=2)
        await asyncio.sleep(OUTAGE_S / 2 - 1.0)

    def caught_up() -> bool:
        return all(cluster.replies(p) for p in presses) and all(u.menus() for u in newcomers)

    back = await met(cluster, caught_up, BACK_S)
    fresh = [(u, u.menus()[0]) for u in newcomers if u.menus()]
    presses += press_all(cluster, fresh)
    delivered = await met(cluster, all_delivered(cluster, presses), 30)
    await asyncio.sleep(1.5)
    outcome = record(cluster, f"bot store locked {OUTAGE_S:g} s under traffic", presses)
    assert cluster.bot.alive, cluster.log("bot")[-3000:]
    assert back, f"not answering {BACK_S:g} s after the store came back: {outcome}\n" + (
        cluster.diagnose()
    )
    assert len(fresh) == len(newcomers), "a photo sent during the outage was never answered"
    assert delivered, f"{outcome}\n{cluster.diagnose()}"
    assert exactly_once(outcome, len(presses)), outcome
