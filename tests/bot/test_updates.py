"""The update processor (bot.updates) through the real bot and the fake Bot API: one user's
updates in order, every fetched update on disk before Telegram may forget it and replayed after a
restart, in polling and in webhook mode, and an update Telegram sends twice handled once."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from telegram import Update

from bot.app import build_application, running
from bot.config import load_settings
from bot.store import Store
from bot.updates import UpdateProcessor
from engine.queue import JobRequest, StyleChoice
from engine.queue.stub_painter import result_colour
from tests.doubles.bot_helpers import BotFactory, eventually, jpeg
from tests.doubles.fake_telegram import ApiError, FakeTelegram
from tests.doubles.painters import SizedPainter
from tests.doubles.queue_helpers import free_port

REPEAT = 10
SLUG = "klimt-the-kiss"


def colour_of(data: bytes) -> tuple[int, int, int]:
    pixel = Image.open(io.BytesIO(data)).convert("RGB").getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return pixel[0], pixel[1], pixel[2]


def painted_from(result: bytes, photo: bytes, user: int) -> bool:
    expected = result_colour(JobRequest(user, user, photo, [StyleChoice(slug=SLUG)]))
    return all(abs(a - b) <= 6 for a, b in zip(colour_of(result), expected, strict=True))


async def test_a_photo_and_a_press_in_one_batch_paint_the_new_photo(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    """A user sends a new photo and, before the bot answers, presses a painting on the menu
    they already had. Both arrive in one getUpdates; a person expects the new photo painted.
    Handled concurrently, the press could read the old photo (the new one is still being
    downloaded and checked); in order, it cannot. Every time, so REPEAT users try it."""
    async with start_bot(painter=SizedPainter(steps=1, scales=1)):
        for i in range(REPEAT):
            user = telegram.user(500 + i)
            old, new = jpeg(seed=2 * i), jpeg(seed=2 * i + 1)
            user.photo(old)
            menu = await user.wait_menu()
            batch_before = len(telegram.calls_to("getUpdates"))
            user.photo(new)  # no await between the two: one getUpdates carries both
            user.press(menu, f"st:{SLUG}")
            [result] = await user.wait_result()
            assert painted_from(result.data or b"", new, user.id), f"user {user.id}"
            assert not painted_from(result.data or b"", old, user.id)
            assert len(user.menus()) == 2  # the new photo was offered the paintings too
            assert len(telegram.calls_to("getUpdates")) > batch_before


def photo_update(
    telegram: FakeTelegram, user_id: int, update_id: int, seed: int, album: str | None = None
) -> dict[str, Any]:
    """A photo message as Telegram would send it (its file served by the fake), in `album`."""
    data = jpeg(seed=seed)
    file_id = telegram.add_file(data)
    size = {"file_id": file_id, "file_unique_id": file_id, "width": 96, "height": 64}
    return {
        "update_id": update_id,
        "message": {
            "message_id": 90_000 + update_id,
            "date": 1_764_600_000,
            "chat": {"id": user_id, "type": "private", "first_name": "Ann"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Ann", "language_code": "en"},
            "photo": [dict(size, file_size=len(data))],
            **({"media_group_id": album} if album else {}),
        },
    }


async def journal_before_start(bot_env: dict[str, str], update: dict[str, Any]) -> None:
    """What a bot killed right after its getUpdates leaves behind: the update in its store,
    and Telegram no longer holding it."""
    store = Store(Path(bot_env["ORSAY_DATA_DIR"]) / "bot")
    assert await store.journal(update["update_id"], json.dumps(update))
    store.close()


async def test_an_update_fetched_before_a_crash_is_replayed_on_start(
    telegram: FakeTelegram, start_bot: BotFactory, bot_env: dict[str, str]
) -> None:
    await journal_before_start(bot_env, photo_update(telegram, 801, 7001, seed=80))
    async with start_bot() as app:
        ann = telegram.user(801)
        menu = await ann.wait_menu()  # the photo's answer, from the replay
        ann.press(menu, f"st:{SLUG}")
        await ann.wait_result()
        store = app.bot_data["services"].store
        await eventually(store.unhandled, [])
    assert len(ann.menus()) == 1


async def test_an_album_fetched_before_a_crash_is_replayed_whole(
    telegram: FakeTelegram, start_bot: BotFactory, bot_env: dict[str, str]
) -> None:
    """An album's parts stay unhandled until the album is done (its images wait in memory for
    the rest of it), so a crash in between replays the album and paints it once."""
    for update_id, seed in ((7201, 84), (7202, 85)):
        await journal_before_start(bot_env, photo_update(telegram, 805, update_id, seed, "g-1"))
    async with start_bot() as app:
        cy = telegram.user(805)
        [result] = await cy.wait_result()
        assert "your own style" in (result.caption or "")
        await eventually(app.bot_data["services"].store.unhandled, [])
        await asyncio.sleep(0.5)
    assert len(cy.messages("photo")) == 1 and not cy.menus()


async def test_an_update_telegram_sends_again_is_handled_once(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    """No getUpdates after the press's batch reaches Telegram (each fails, the stop's last one
    too; PTB logs it and goes on), so Telegram still holds the press and sends it again to the
    next start, which must not handle it again: a second job, the result twice."""
    original = telegram._m_getUpdates
    unconfirmed_after: list[int] = []

    async def get_updates(p: dict[str, Any], f: dict[str, bytes]) -> Any:
        if unconfirmed_after and int(p.get("offset") or 0) > unconfirmed_after[0]:
            raise ApiError(502, "Bad Gateway")  # it never confirms the press
        return await original(p, f)

    telegram._m_getUpdates = get_updates  # type: ignore[method-assign]
    ann = telegram.user(802)
    async with start_bot():
        ann.photo(jpeg(seed=81))
        menu = await ann.wait_menu()
        # the poll in flight asked for offset last + 1: it fetches the press; later ones fail
        unconfirmed_after.append(telegram.last_update_id + 1)
        ann.press(menu, f"st:{SLUG}")
        await ann.wait_result()
    assert telegram._updates, "the fake should still hold the press"
    unconfirmed_after.clear()
    async with start_bot():
        await telegram.wait_for(lambda: not telegram._updates)  # fetched again, confirmed
        await asyncio.sleep(0.5)  # would a second job and result follow?
    assert len(ann.menus()) == 1 and len(ann.messages("photo")) == 1


async def test_webhook_answers_once_the_update_is_on_disk_and_replays_on_start(
    telegram: FakeTelegram, bot_env: dict[str, str], tmp_path: Path
) -> None:
    """Telegram retries a webhook call until it gets a 200: the bot answers only once the
    update is written ahead (a failed write answers 500), and replays on start what it had
    written and not handled."""
    await journal_before_start(bot_env, photo_update(telegram, 803, 7101, seed=82))
    port, secret = free_port(), "s3cret-token"
    url = f"http://127.0.0.1:{port}/hook"
    webhook = {
        "listen": "127.0.0.1",
        "port": port,
        "url_path": "hook",
        "webhook_url": url,
        "secret_token": secret,
    }
    settings = load_settings(bot_env)
    app = build_application(settings, painter=SizedPainter(steps=1, scales=1))
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret}
    ann, bob = telegram.user(803), telegram.user(804)
    async with running(app, webhook=webhook), httpx.AsyncClient() as client:
        assert telegram.webhook is not None and telegram.webhook["url"] == url
        await ann.wait_menu()  # replayed from the store before the webhook took anything
        store = app.bot_data["services"].store
        journal = store.journal
        failing = [True]

        async def flaky_journal(update_id: int, payload: str) -> bool:
            if failing.pop() if failing else False:
                raise OSError("disk full")
            return await journal(update_id, payload)

        store.journal = flaky_journal
        update = photo_update(telegram, 804, 7102, seed=83)
        refused = await client.post(url, json=update, headers=headers)
        assert refused.status_code == 500  # not on disk: Telegram will send it again
        answered = await client.post(url, json=update, headers=headers)
        assert answered.status_code == 200
        assert not await journal(7102, "{}")  # known: on disk when Telegram heard 200
        await bob.wait_menu()
        again = await client.post(url, json=update, headers=headers)  # a retry after a timeout
        assert again.status_code == 200
        await asyncio.sleep(0.5)
    assert len(bob.menus()) == 1 and len(ann.menus()) == 1


def text_update(update_id: int, user: int) -> Update:
    message = {
        "message_id": update_id,
        "date": 1_764_600_000,
        "chat": {"id": user, "type": "private"},
        "from": {"id": user, "is_bot": False, "first_name": "U"},
        "text": "hi",
    }
    update = Update.de_json({"update_id": update_id, "message": message}, None)
    assert update is not None
    return update


async def test_the_processor_orders_each_users_updates_and_runs_users_alongside(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path)
    processor = UpdateProcessor(store, running=8)
    events: list[tuple[str, int]] = []

    async def handle(update_id: int) -> None:
        events.append(("start", update_id))
        await asyncio.sleep(0.2 if update_id == 1 else 0.02)
        events.append(("end", update_id))

    # users 1, 2, 1, 1: what one getUpdates batch could carry
    for update_id, user in ((1, 1), (2, 2), (3, 1), (4, 1)):
        await processor.inbox.put(text_update(update_id, user))
    await processor.inbox.put(text_update(3, 1))  # Telegram sent it again: dropped at the door
    assert processor.inbox.qsize() == 4
    tasks = []
    while not processor.inbox.empty():  # what Application's update fetcher does
        update = processor.inbox.get_nowait()
        assert isinstance(update, Update)
        coroutine = handle(update.update_id)
        tasks.append(asyncio.create_task(processor.process_update(update, coroutine)))
    await asyncio.gather(*tasks)
    at = {event: i for i, event in enumerate(events)}
    assert at[("end", 1)] < at[("start", 3)] and at[("end", 3)] < at[("start", 4)]  # in order
    assert at[("start", 2)] < at[("end", 1)]  # another user did not wait for user 1
    assert await store.unhandled() == []
    store.close()


async def test_the_processor_replays_what_was_written_and_not_handled(tmp_path: Path) -> None:
    store = Store(tmp_path)
    first = UpdateProcessor(store)
    await first.inbox.put(text_update(11, 5))  # fetched, then the process died
    await first.inbox.put(text_update(12, 6))
    handled = first.inbox.get_nowait()
    assert isinstance(handled, Update)
    await first.process_update(handled, asyncio.sleep(0))
    again = UpdateProcessor(store)  # the next start
    assert await again.replay(None) == 1  # type: ignore[arg-type]
    replayed = again.inbox.get_nowait()
    assert isinstance(replayed, Update) and replayed.update_id == 12
    assert replayed.message is not None and replayed.message.text == "hi"
    store.close()


async def test_a_held_update_stays_unhandled_until_released(tmp_path: Path) -> None:
    store = Store(tmp_path)
    processor = UpdateProcessor(store)
    await processor.inbox.put(text_update(21, 7))
    await processor.inbox.put(text_update(22, 7))

    async def album_part() -> None:
        processor.hold(21)  # what it asks for is still to come

    first, second = processor.inbox.get_nowait(), processor.inbox.get_nowait()
    assert isinstance(first, Update) and isinstance(second, Update)
    await processor.process_update(first, album_part())
    await processor.process_update(second, asyncio.sleep(0))  # the user's line moved on
    assert [update_id for update_id, _ in await store.unhandled()] == [21]
    await processor.release([21])
    assert await store.unhandled() == []
    store.close()
