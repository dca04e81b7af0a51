"""Albums on a slow link (issue 30, finding 1): a photo and a painting sent as one album are one
job in that painting, however long each part takes to download. A user's updates run one after
another (bot.updates), so an album part that fetched its file inside its handler held the next
part back for the whole download, and the album's settle timer fired in between."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable

import pytest

from bot.handlers import pictures
from bot.media import validate
from engine.queue import JobRequest, StyleChoice
from engine.queue.stub_painter import result_colour
from tests.bot.test_journeys import close, colour_of
from tests.doubles.bot_helpers import BotFactory, eventually, jpeg
from tests.doubles.fake_telegram import FakeTelegram
from tests.doubles.link import SLOW_LINK

# Each file of the album takes 1.5 s to come down (getFile's wait: Telegram fetching it from
# its data centre), about twice the album's settle time: the case seen end to end.
SLOW_FILES = dataclasses.replace(SLOW_LINK, name="slow files", get_file_s=1.5)


@pytest.mark.parametrize("link", [SLOW_FILES], indirect=True, ids=["slow-files"])
async def test_an_album_of_slow_files_stays_one_album(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    async with start_bot() as app:
        svc = app.bot_data["services"]
        dee = telegram.user(61)
        content, painting = jpeg(seed=61), jpeg(seed=62)
        dee.album(content, painting)
        # something comes back: a result, or (split) a style menu for each part
        await telegram.wait_for(lambda: dee.menus() or dee.messages("photo"), timeout=20)
        await eventually(svc.store.unhandled, [], timeout=20)  # both parts handled
        await telegram.wait_for(lambda: not svc.follower.tasks, timeout=20)
        stats = await svc.queue.stats()
        assert dee.menus() == []  # a split album offered each of its parts the paintings
        assert stats.done_today == 1 and stats.queued == stats.running == 0
        [result] = dee.messages("photo")
        album = JobRequest(61, 61, validate(content), [StyleChoice(image=validate(painting))])
        assert close(colour_of(result.data or b""), result_colour(album))
        assert await svc.store.image(61, "photo") == validate(content)  # not the painting


@pytest.mark.parametrize("link", [SLOW_FILES], indirect=True, ids=["slow-files"])
async def test_a_bad_part_is_refused_and_the_rest_is_a_photo(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    async with start_bot() as app:
        svc = app.bot_data["services"]
        eve = telegram.user(62)
        photo = jpeg(seed=63)
        eve.album(photo, jpeg(8, 8, seed=64))  # the second part is too small to paint
        await eve.wait_text("too small", timeout=20)
        await eve.wait_menu(timeout=20)  # the album of one photo: the paintings are offered
        await eventually(svc.store.unhandled, [], timeout=20)
        assert len(eve.menus()) == 1
        assert await svc.store.image(62, "photo") == validate(photo)


@pytest.mark.parametrize("link", [SLOW_FILES], indirect=True, ids=["slow-files"])
async def test_a_stop_while_the_files_come_down_replays_the_album_whole(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    """The parts are held while their files come down, so a stop then leaves both unhandled and
    the next start paints the album once."""
    fay = telegram.user(63)
    content, painting = jpeg(seed=65), jpeg(seed=66)
    async with start_bot() as app:
        svc = app.bot_data["services"]
        fay.album(content, painting)
        await eventually(lambda: _count(svc.store.unhandled()), 2)  # both parts fetched
    assert not fay.messages()  # stopped before the album was done
    async with start_bot() as app:
        svc = app.bot_data["services"]
        [result] = await fay.wait_result(timeout=20)
        await eventually(svc.store.unhandled, [], timeout=20)
        await telegram.wait_for(lambda: not svc.follower.tasks, timeout=20)
        assert (await svc.queue.stats()).done_today == 1
    album = JobRequest(63, 63, validate(content), [StyleChoice(image=validate(painting))])
    assert close(colour_of(result.data or b""), result_colour(album))
    assert fay.menus() == [] and len(fay.messages("photo")) == 1


async def _count(rows: Awaitable[list[tuple[int, str]]]) -> int:
    return len(await rows)


async def test_an_album_part_kept_waiting_in_its_users_line_still_joins_the_album(
    telegram: FakeTelegram, start_bot: BotFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load a part may wait in its user's line (its store writes queued behind other
    users', 2 cores busy) longer than the settle time; seen in the 50-album chaos scenario: 1 of
    50 split. Here each update's first write takes 0.5 s, five times the settle time: the album
    must wait for the part the bot has admitted. Before: a style menu for each part."""
    monkeypatch.setattr(pictures, "ALBUM_SETTLE_S", 0.1)
    async with start_bot() as app:
        svc = app.bot_data["services"]
        begin = svc.store.begin

        async def slow_begin(update_id: int) -> None:
            await asyncio.sleep(0.5)
            await begin(update_id)

        monkeypatch.setattr(svc.store, "begin", slow_begin)
        fay = telegram.user(66)
        content, painting = jpeg(seed=66), jpeg(seed=67)
        fay.album(content, painting)
        await telegram.wait_for(lambda: fay.menus() or fay.messages("photo"), timeout=20)
        await eventually(svc.store.unhandled, [], timeout=20)
        await telegram.wait_for(lambda: not svc.follower.tasks, timeout=20)
        assert fay.menus() == []
        assert (await svc.queue.stats()).done_today == 1
        assert await svc.store.image(66, "photo") == validate(content)
