"""Nothing lost, nothing silent: faults injected into a running scale-out deployment.

Each scenario runs `orsay bot` (a real process, polling the fake Bot API), `orsay worker`
processes with a stub painter (~2 s a job) and redis-server with an append-only file, has users
order paintings, injects one fault, and then counts from the chats' side: every press answered,
every accepted job delivered exactly once (kill -9 during a result upload may deliver twice: that
is counted and reported, never more), none lost. The table of counts is printed at the end of the
run (tests/chaos/conftest.py).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from typing import Any

import pytest

from bot.texts import t
from tests.doubles.cluster import OUTCOMES, Cluster, Outcome, Press, Proc, is_result_upload

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(240)]

SLUGS = (
    "klimt-the-kiss",
    "hokusai-great-wave-off-kanagawa",
    "monet-impression-sunrise",
    "van-gogh-starry-night",
)
STUB = ("--stub-painter", "--stub-steps", "5", "--stub-step-s", "0.2")  # 2 scales: 2 s a job
UNAVAILABLE = t("en", "queue_unavailable")


async def order_many(cluster: Cluster, count: int, first_user: int = 100) -> list[Press]:
    """`count` users each order one painting, concurrently."""
    users = [cluster.telegram.user(first_user + i) for i in range(count)]
    return list(
        await asyncio.gather(
            *(cluster.order(u, SLUGS[i % len(SLUGS)], seed=i) for i, u in enumerate(users))
        )
    )


def painting_started(cluster: Cluster) -> bool:
    return any("🎨" in str(c.params.get("text", "")) for c in cluster.telegram.calls)


async def all_delivered(cluster: Cluster, presses: list[Press], timeout: float = 60.0) -> None:
    users = {p.user.id: p.user for p in presses}
    await cluster.settle(lambda: all(cluster.results(u) for u in users.values()), timeout)


def record(cluster: Cluster, scenario: str) -> Outcome:
    outcome = cluster.outcome(scenario, unavailable_text=UNAVAILABLE)
    OUTCOMES.append(outcome)
    return outcome


def assert_exactly_once(outcome: Outcome, accepted: int) -> None:
    assert outcome.accepted == accepted, outcome
    assert outcome.delivered_once == accepted, outcome
    assert (outcome.duplicates, outcome.lost, outcome.unanswered) == (0, 0, 0), outcome


async def deployed(cluster: Cluster, workers: int = 2) -> list[Proc]:
    """Redis, `workers` stub workers and the bot, up and polling; the workers."""
    procs = [cluster.add_worker(*STUB) for _ in range(workers)]
    cluster.start()
    await cluster.bot_ready()
    return procs


async def restart_bot(cluster: Cluster) -> None:
    """Start the bot again once its killed process is gone, and wait until it polls."""
    if cluster.bot.popen is not None:
        await asyncio.to_thread(cluster.bot.popen.wait, 10)
    cluster.bot.start()
    await cluster.bot_ready()


async def test_worker_kill9_mid_job(cluster: Cluster) -> None:
    first, _ = await deployed(cluster)
    presses = await order_many(cluster, 6)
    await cluster.telegram.wait_for(lambda: painting_started(cluster), 30)
    first.kill()
    await asyncio.sleep(1.0)
    first.start()  # a restarted worker takes jobs again; its dead job came back after the lease
    await all_delivered(cluster, presses)
    assert_exactly_once(record(cluster, "worker kill -9 mid-job"), 6)


async def test_worker_sigterm_hands_back(cluster: Cluster) -> None:
    cluster.shutdown_grace_s = 0.5  # shorter than a job: the running job goes back in line
    first, _ = await deployed(cluster)
    presses = await order_many(cluster, 6)
    await cluster.telegram.wait_for(lambda: painting_started(cluster), 30)
    assert await first.terminate() == 0
    await all_delivered(cluster, presses)
    assert_exactly_once(record(cluster, "worker SIGTERM mid-job"), 6)


async def test_bot_kill9_at_a_random_moment(cluster: Cluster) -> None:
    await deployed(cluster)
    presses = await order_many(cluster, 6)
    await asyncio.sleep(random.Random(11).uniform(0.0, 4.0))  # while painting and delivering
    cluster.bot.kill()
    await restart_bot(cluster)
    await all_delivered(cluster, presses)
    outcome = record(cluster, "bot kill -9 at a random moment")
    # A kill between Telegram storing a result and the bot hearing so resends it once.
    assert outcome.accepted == 6 and outcome.delivered_once == 6, outcome
    assert outcome.lost == 0 and outcome.unanswered == 0, outcome
    assert all(len(cluster.results(p.user)) <= 2 for p in presses)


async def test_bot_kill9_right_after_answering_a_button(cluster: Cluster) -> None:
    await deployed(cluster, workers=1)
    [warmup] = await order_many(cluster, 1, first_user=90)  # the bot is fully up
    await all_delivered(cluster, [warmup])
    killed: list[float] = []

    async def kill_on_answer(method: str, params: dict[str, Any]) -> None:
        """The press was fetched, confirmed by the next poll and is being answered: kill -9
        before Telegram replies, so the bot never runs another line for it."""
        if method != "answerCallbackQuery" or killed:
            return
        press = cluster.presses[-1]
        await cluster.telegram.wait_for(lambda: cluster.confirmed(press), 10)
        killed.append(time.monotonic())
        assert cluster.bot.popen is not None
        os.kill(cluster.bot.popen.pid, signal.SIGKILL)

    cluster.telegram.before.append(kill_on_answer)
    [press] = await order_many(cluster, 1)
    await cluster.telegram.wait_for(lambda: killed, 20)
    cluster.telegram.before.remove(kill_on_answer)
    await restart_bot(cluster)
    await all_delivered(cluster, [warmup, press])
    # The user saw the button answered: a job must exist and reach them, once.
    assert_exactly_once(record(cluster, "bot kill -9 after a button answer"), 2)


async def test_bot_kill9_during_a_result_upload(cluster: Cluster) -> None:
    await deployed(cluster, workers=1)
    killed: list[int] = []

    def kill_after_stored(method: str, params: dict[str, Any]) -> None:
        if is_result_upload(method, params) and not killed:
            killed.append(int(params["chat_id"]))
            assert cluster.bot.popen is not None
            os.kill(cluster.bot.popen.pid, signal.SIGKILL)  # Telegram has it; the bot never hears

    cluster.telegram.after.append(kill_after_stored)
    presses = await order_many(cluster, 3)
    await cluster.telegram.wait_for(lambda: killed, 30)
    cluster.telegram.after.remove(kill_after_stored)
    await restart_bot(cluster)
    await all_delivered(cluster, presses)
    outcome = record(cluster, "bot kill -9 during a result upload")
    assert outcome.accepted == 3 and outcome.delivered_once == 3, outcome
    assert outcome.lost == 0 and outcome.unanswered == 0, outcome
    assert outcome.duplicates <= 1, outcome  # at-least-once: only the upload in flight


async def test_bot_sigterm_during_a_result_upload(cluster: Cluster) -> None:
    await deployed(cluster, workers=1)
    cluster.telegram.upload_delay_s = 1.5  # a slow upload, well inside the grace period
    stopping: list[asyncio.Task[int | None]] = []

    def sigterm_on_upload(method: str, params: dict[str, Any]) -> None:
        if is_result_upload(method, params) and not stopping:
            stopping.append(asyncio.get_running_loop().create_task(cluster.bot.terminate()))

    cluster.telegram.before.append(sigterm_on_upload)
    presses = await order_many(cluster, 3)
    await cluster.telegram.wait_for(lambda: stopping, 30)
    assert await stopping[0] == 0
    cluster.telegram.before.remove(sigterm_on_upload)
    cluster.telegram.upload_delay_s = 0.0
    cluster.bot.start()
    await cluster.bot_ready()
    await all_delivered(cluster, presses)
    assert_exactly_once(record(cluster, "bot SIGTERM during a result upload"), 3)


async def test_redis_kill9_and_restart(cluster: Cluster) -> None:
    await deployed(cluster)
    presses = await order_many(cluster, 6)
    await cluster.telegram.wait_for(lambda: painting_started(cluster), 30)
    cluster.redis.kill()
    await asyncio.sleep(4.0)
    cluster.redis.start()  # the same append-only file
    await all_delivered(cluster, presses, timeout=90)
    assert_exactly_once(record(cluster, "redis kill -9 and restart"), 6)
    delayed = t("en", "queue_delayed")
    told = [p for p in presses if any(delayed in (m.text or "") for m in p.user.messages())]
    for press in told:  # told once, not at every failed poll
        assert sum(delayed in (m.text or "") for m in press.user.messages()) == 1
    assert told, "nobody with a job in flight was told it is delayed"


async def test_bot_started_while_redis_is_down(cluster: Cluster) -> None:
    cluster.start(workers=False)
    await cluster.bot_ready()
    [queued] = await order_many(cluster, 1, first_user=90)  # accepted, waits for a worker
    await queued.user.wait_text("⏳", timeout=20)
    cluster.bot.kill()
    cluster.redis.kill()
    cluster.bot.start()
    await cluster.bot_ready()
    await asyncio.sleep(3.0)
    assert cluster.bot.alive, cluster.log("bot")[-3000:]
    [refused] = await order_many(cluster, 1)
    await refused.user.wait_text(UNAVAILABLE, timeout=20)
    cluster.redis.start()
    worker = cluster.add_worker(*STUB)
    worker.start()
    menu = refused.user.menus()[-1]
    again = Press(refused.user, time.monotonic(), SLUGS[0])
    cluster.presses.append(again)
    refused.user.press(menu, f"st:{SLUGS[0]}")
    await all_delivered(cluster, [queued, again], timeout=60)
    outcome = record(cluster, "bot started while Redis is down")
    assert outcome.unanswered == 0 and outcome.lost == 0 and outcome.duplicates == 0, outcome
    assert outcome.accepted == 2 and outcome.delivered_once == 2, outcome


async def test_worker_with_a_fresh_data_dir_paints_gallery_styles(cluster: Cluster) -> None:
    cluster.add_worker("--weights", "random", "--device", "cpu", "--max-size", "64", painter="")
    cluster.start()
    await cluster.bot_ready()
    presses = await order_many(cluster, 2)
    await all_delivered(cluster, presses, timeout=120)
    assert_exactly_once(record(cluster, "worker with no gallery"), 2)
    assert not (cluster.root / "worker1-data" / "gallery").exists()


async def test_painter_failures_are_logged_and_explained(cluster: Cluster) -> None:
    cluster.add_worker(painter="tests.doubles.chaos_painters:failing")
    cluster.start()
    await cluster.bot_ready()
    ann, bob = cluster.telegram.user(301), cluster.telegram.user(302)
    await cluster.order(ann, "munch-the-scream", seed=1)  # the painter: weights problem
    await cluster.order(bob, "klimt-the-kiss", seed=2)  # the painter: a bug
    await ann.wait_text(t("en", "weights_error"), timeout=30)
    await bob.wait_text(t("en", "painter_error"), timeout=30)
    log = cluster.log("worker1")
    for reason in ("weights_error", "painter_error"):
        lines = [line for line in log.splitlines() if f"reason={reason}" in line]
        assert lines and all("job=" in line for line in lines), log[-3000:]
    assert "stub painter bug" in log  # the cause, for the operator
