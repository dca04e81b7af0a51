"""The bot stopped under load, again and again (issue 21): a kill -9 the moment Telegram has
confirmed a batch of presses, and a deploy's SIGTERM while results are uploading and presses keep
arriving. Same deployment as test_chaos (a real `orsay bot`, two `orsay worker`s, redis-server
with an append-only file, the fake Bot API); here each scenario runs ROUNDS times with USERS new
users per round, and every round must end with every press answered, accepted and delivered
exactly once. The table at the end of the run shows the sum over the rounds.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from bot.texts import t
from tests.doubles.cluster import OUTCOMES, Cluster, Outcome, Press, Proc, is_result_upload
from tests.doubles.fake_telegram import FakeUser, Sent

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(600)]

ROUNDS = 5
USERS = 20
SLUGS = (
    "klimt-the-kiss",
    "hokusai-great-wave-off-kanagawa",
    "monet-impression-sunrise",
    "van-gogh-starry-night",
)
STUB = ("--stub-painter", "--stub-steps", "3", "--stub-step-s", "0.1")  # 2 scales: 0.6 s a job
UNAVAILABLE = t("en", "queue_unavailable")


async def deployed(cluster: Cluster, workers: int = 2) -> list[Proc]:
    procs = [cluster.add_worker(*STUB) for _ in range(workers)]
    cluster.start()
    await cluster.bot_ready()
    return procs


async def menus(cluster: Cluster, round_: int, count: int) -> list[tuple[FakeUser, Sent]]:
    """`count` new users each send a photo and get the style menu, concurrently."""
    users = [cluster.telegram.user(1000 * (round_ + 1) + i) for i in range(count)]
    got = await asyncio.gather(
        *(cluster.menu_for(u, seed=1000 * round_ + i) for i, u in enumerate(users))
    )
    return list(zip(users, got, strict=True))


async def restarted(cluster: Cluster) -> None:
    """Start the bot again once the stopped process is gone, and wait until it polls."""
    if cluster.bot.popen is not None:
        await asyncio.to_thread(cluster.bot.popen.wait, 30)
    cluster.bot.start()
    await cluster.bot_ready()


async def delivered(cluster: Cluster, presses: list[Press], timeout: float = 90.0) -> None:
    """Every user of `presses` has as many results as presses (then a moment for duplicates)."""
    wanted: dict[int, int] = {}
    for press in presses:
        wanted[press.user.id] = wanted.get(press.user.id, 0) + 1
    users = {p.user.id: p.user for p in presses}
    await cluster.settle(
        lambda: all(len(cluster.results(users[u])) >= n for u, n in wanted.items()), timeout
    )


def counted(cluster: Cluster, presses: list[Press], total: Outcome) -> Outcome:
    """This round's count, added to `total`."""
    outcome = cluster.outcome(total.scenario, unavailable_text=UNAVAILABLE, presses=presses)
    total.add(outcome)
    return outcome


def assert_exactly_once(outcome: Outcome, accepted: int, round_: int) -> None:
    where = f"round {round_ + 1}: {outcome}"
    assert outcome.accepted == accepted, where
    assert outcome.delivered_once == accepted, where
    assert (outcome.duplicates, outcome.lost, outcome.unanswered) == (0, 0, 0), where


async def kill9_round(cluster: Cluster, round_: int) -> list[Press]:
    """All USERS press at once, so one getUpdates carries every press; the bot is killed the
    moment its next getUpdates confirms them to Telegram (which then never sends them again)."""
    ready = await menus(cluster, round_, USERS)
    queries: set[str] = set()
    killed: list[int] = []

    def kill_on_confirm(updates: list[dict[str, Any]]) -> None:
        presses = [u for u in updates if u.get("callback_query", {}).get("id") in queries]
        if len(presses) >= 5 and not killed and cluster.bot.popen is not None:
            killed.append(len(presses))
            os.kill(cluster.bot.popen.pid, signal.SIGKILL)

    cluster.telegram.on_confirm.append(kill_on_confirm)
    presses = [  # no await in between: one getUpdates batch carries them all
        cluster.press(user, menu, SLUGS[i % len(SLUGS)]) for i, (user, menu) in enumerate(ready)
    ]
    queries.update(p.query_id for p in presses)
    await cluster.telegram.wait_for(lambda: killed, 30)
    cluster.telegram.on_confirm.remove(kill_on_confirm)
    assert killed[0] >= 5, killed
    await restarted(cluster)
    await delivered(cluster, presses)
    return presses


async def sigterm_round(cluster: Cluster, round_: int) -> list[Press]:
    """Results upload slowly; when a result upload starts with two others in flight, the bot
    gets SIGTERM, and a quarter of the users press another painting while it stops (users the
    bot had answered already, so each press's replies are told apart)."""
    ready = await menus(cluster, round_, USERS)
    menu_of = {user.id: menu for user, menu in ready}
    presses = [
        cluster.press(user, menu, SLUGS[i % len(SLUGS)]) for i, (user, menu) in enumerate(ready)
    ]
    stopping: list[asyncio.Task[int | None]] = []
    late: list[Press] = []

    def sigterm_on_third_upload(method: str, params: dict[str, Any]) -> None:
        third = is_result_upload(method, params) and cluster.telegram.uploading >= 2
        if third and not stopping:
            stopping.append(asyncio.get_running_loop().create_task(cluster.bot.terminate()))
            answered = [p for p in presses if cluster.replies(p)][: USERS // 4]
            for i, press in enumerate(answered):
                slug = SLUGS[(i + 1) % len(SLUGS)]
                late.append(cluster.press(press.user, menu_of[press.user.id], slug))

    cluster.telegram.before.append(sigterm_on_third_upload)
    await cluster.telegram.wait_for(lambda: stopping, 60)
    assert await stopping[0] == 0, cluster.log("bot")[-3000:]
    cluster.telegram.before.remove(sigterm_on_third_upload)
    assert late, "nobody pressed while the bot stopped"
    await restarted(cluster)
    await delivered(cluster, presses + late)
    return presses + late


async def test_bot_kill9_right_after_a_batch_of_presses_is_confirmed(cluster: Cluster) -> None:
    await deployed(cluster)
    total = Outcome(f"bot kill -9, {USERS}-press batch x{ROUNDS}")
    for round_ in range(ROUNDS):
        presses = await kill9_round(cluster, round_)
        assert_exactly_once(counted(cluster, presses, total), USERS, round_)
    OUTCOMES.append(total)


async def test_bot_sigterm_with_uploads_in_flight_while_presses_arrive(cluster: Cluster) -> None:
    # a grace shorter than an upload: the stop must not cut an upload short all the same
    cluster.bot.env["ORSAY_SHUTDOWN_GRACE"] = "0.5"
    await deployed(cluster)
    cluster.telegram.upload_delay_s = 1.5
    total = Outcome(f"bot SIGTERM, 3+ uploads x{ROUNDS}")
    for round_ in range(ROUNDS):
        presses = await sigterm_round(cluster, round_)
        assert_exactly_once(counted(cluster, presses, total), len(presses), round_)
    OUTCOMES.append(total)
