"""End-to-end user journeys: the real bot (PTB over HTTP) against the fake Bot API server, with
the embedded queue and a fast stub painter. Every journey runs on both link profiles of
tests/doubles/link.py: `instant`, and `slow link` (50 ms a call, getFile 300 ms, 1 MB/s down,
256 KB/s up), where a user's files and the bot's uploads take the time they take on a phone's
link."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.queue import JobRequest, QueueLimits, StyleChoice, open_queue
from engine.queue.stub_painter import result_colour
from tests.doubles.bot_helpers import BotFactory, jpeg
from tests.doubles.fake_telegram import FakeTelegram, FakeUser
from tests.doubles.link import PROFILES
from tests.doubles.painters import SizedPainter

pytestmark = pytest.mark.parametrize(
    "link", PROFILES, indirect=True, ids=lambda link: link.name.replace(" ", "-")
)


def colour_of(data: bytes) -> tuple[int, int, int]:
    import io

    from PIL import Image

    pixel = Image.open(io.BytesIO(data)).convert("RGB").getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return pixel[0], pixel[1], pixel[2]


def close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 6) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


async def test_gallery_choice_gives_a_result(telegram: FakeTelegram, start_bot: BotFactory) -> None:
    async with start_bot(painter=SizedPainter(steps=6, step_s=0.1)) as app:
        ann = telegram.user(11)
        photo = jpeg(seed=1)
        ann.photo(photo)
        menu = await ann.wait_text("Which painting")
        assert ("The Starry Night — Vincent van Gogh", "st:van-gogh-starry-night") in menu.buttons()
        labels = [text for text, _ in menu.buttons()]
        assert "🎲 Surprise me" in labels and "🖼 My own style" in labels
        assert all(len(data.encode()) <= 64 for _, data in menu.buttons())
        ann.press(menu, "st:van-gogh-starry-night")
        [result] = await ann.wait_result()
        assert "Starry Night" in (result.caption or "") and "Gogh" in (result.caption or "")
        expected = JobRequest(11, 11, photo, [StyleChoice(slug="van-gogh-starry-night")])
        assert close(colour_of(result.data or b""), result_colour(expected))
        assert result.image_size() == (384, 256)  # balanced: 384 px long side, aspect kept
        assert {t for t, _ in result.buttons()} >= {"🎨 Another style", "➕ Stronger", "➖ Gentler"}
        [status] = [m for m in ann.messages("text") if "🎨" in m.all_texts()[0]]
        assert all("/2 · about" in text for text in status.all_texts() if "%" in text)
        [preview] = [m for m in ann.messages("photo") if not m.caption]
        # the progress and preview messages go away once the result is there
        await telegram.wait_for(lambda: status.deleted and preview.deleted)
        # one preview per scale (2 scales): sent once, then replaced in place
        assert len(telegram.calls_to("editMessageMedia", 11)) == 1
        svc = app.bot_data["services"]
        await telegram.wait_for(lambda: not svc.follower.tasks)
        assert await svc.queue.undelivered() == []


async def test_commands_languages_and_wrong_input(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    async with start_bot():
        ann, ivan = telegram.user(21, "en"), telegram.user(22, "ru")
        ann.text("/start")
        ivan.text("/start")
        await ann.wait_text("I repaint your photos")
        await ivan.wait_text("Я перерисовываю фото")
        ann.text("/styles")
        sheet = await telegram.wait_for(lambda: ann.messages("photo"))
        assert "12 paintings" in (sheet[0].caption or "")
        assert sheet[0].image_size()[0] > 500  # one contact-sheet image of all paintings
        ann.text("/frobnicate")
        await ann.wait_text("I do not know that command")
        ann.text("hello there")
        await ann.wait_text("Send me a photo and I will repaint it")
        ann.text("/lang")
        chooser = await ann.wait_text("Choose your language")
        ann.press(chooser, "lang:ru")
        await telegram.wait_for(lambda: chooser.text == "Язык: русский 🇷🇺")
        ann.text("/help")
        await ann.wait_text("Как это работает")  # the choice sticks over language_code
        ann.text("/stats")  # not an admin: the normal help
        await telegram.wait_for(
            lambda: len([m for m in ann.messages() if "/styles" in (m.text or "")]) == 2
        )
        admin = telegram.user(1)
        admin.text("/stats")
        await admin.wait_text("Queue: 0 waiting, 0 running, workers 1")


async def test_bad_files_get_clear_answers(telegram: FakeTelegram, start_bot: BotFactory) -> None:
    async with start_bot():
        ann = telegram.user(31)
        ann.document(b"%PDF-1.4 definitely not a picture", name="cv.pdf", mime="application/pdf")
        await ann.wait_text("That file is not an image")
        ann.document(jpeg(seed=2)[:300], name="broken.jpg", mime="image/jpeg")
        await ann.wait_text("seems damaged")
        downloads = len(telegram.calls_to("getFile"))
        ann.document(b"x" * 100, name="huge.png", file_size=25 * 1024 * 1024)
        await ann.wait_text("too large")
        assert len(telegram.calls_to("getFile")) == downloads  # refused before downloading
        ann.photo(jpeg(8, 8, seed=3))
        await ann.wait_text("too small")
        ann.document(jpeg(seed=4), name="holiday.jpg", mime="image/jpeg")  # full-quality file
        await ann.wait_text("Which painting")


async def test_own_style_and_album_shortcut(telegram: FakeTelegram, start_bot: BotFactory) -> None:
    async with start_bot():
        ann = telegram.user(41)
        photo, style = jpeg(seed=5), jpeg(64, 64, seed=6)
        ann.photo(photo)
        menu = await ann.wait_text("Which painting")
        ann.press(menu, menu.button("My own style"))
        await ann.wait_text("Now send the picture whose style")
        ann.photo(style)
        [result] = await ann.wait_result()
        own = JobRequest(41, 41, photo, [StyleChoice(image=style)])
        assert close(colour_of(result.data or b""), result_colour(own))
        assert "your own style" in (result.caption or "")

        bob = telegram.user(42)
        content, painting = jpeg(seed=7), jpeg(seed=8)
        bob.album(content, painting)
        [result] = await bob.wait_result()
        album = JobRequest(42, 42, content, [StyleChoice(image=painting)])
        assert close(colour_of(result.data or b""), result_colour(album))
        assert not any("Which painting" in (m.text or "") for m in bob.messages())


async def test_settings_change_shows_in_the_next_result(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    async with start_bot(ORSAY_MAX_SIZE="320") as app:
        ann = telegram.user(51)
        ann.photo(jpeg(120, 60, seed=9))
        menu = await ann.wait_text("Which painting")
        ann.press(menu, menu.button("Settings"))
        await telegram.wait_for(lambda: menu.text == "Settings — tap to change.")
        ann.press(menu, "set:q:fast")
        await telegram.wait_for(lambda: "• fast" in [t for t, _ in menu.buttons()])
        ann.press(menu, "set:f")  # also as a file
        await telegram.wait_for(lambda: "Also send as file: on" in [t for t, _ in menu.buttons()])
        ann.press(menu, menu.button("Back"))
        await telegram.wait_for(lambda: menu.text == "Nice! Which painting should I use?")
        ann.press(menu, "st:munch-the-scream")
        [first] = await ann.wait_result()
        assert first.image_size() == (256, 128)  # fast = 256 px
        docs = await telegram.wait_for(lambda: ann.messages("document"))
        assert docs[0].data == first.data

        ann.text("/settings")
        panel = await ann.wait_text("Settings — tap to change.")
        ann.press(panel, "set:q:high")  # 512, capped by ORSAY_MAX_SIZE=320
        await telegram.wait_for(lambda: "• high" in [t for t, _ in panel.buttons()])
        ann.press(first, first.button("Stronger"))  # repaint the same photo and painting
        results = await ann.wait_result(2)
        assert results[1].image_size() == (320, 160)
        assert "Scream" in (results[1].caption or "")
        assert (await app.bot_data["services"].store.user(51)).strength == "strong"


async def test_a_print_is_offered_when_enabled_told_up_front_and_sent_as_a_file(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    async with start_bot(ORSAY_PRINT_SIZE="640", painter=SizedPainter(steps=4, step_s=0.05)):
        ann = telegram.user(52)
        ann.photo(jpeg(120, 60, seed=13))
        menu = await ann.wait_text("Which painting")
        ann.press(menu, menu.button("Settings"))
        await telegram.wait_for(lambda: menu.text == "Settings — tap to change.")
        ann.press(menu, "set:q:print")
        await telegram.wait_for(lambda: "• 🖼 print" in [t for t, _ in menu.buttons()])
        ann.press(menu, menu.button("Back"))
        await telegram.wait_for(lambda: menu.text == "Nice! Which painting should I use?")
        ann.press(menu, "st:munch-the-scream")
        told = await ann.wait_text("🖼 A print, 640 px on the long side")
        assert "min, and comes as a file" in (told.text or "")
        docs = await telegram.wait_for(lambda: ann.messages("document"))
        assert docs[0].reply_markup and "Scream" in (docs[0].caption or "")
        assert not [m for m in ann.messages("photo") if m.caption]  # no recompressed copy


async def test_without_the_setting_there_is_no_print(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    async with start_bot() as app:
        ann = telegram.user(53)
        ann.text("/settings")
        panel = await ann.wait_text("Settings — tap to change.")
        assert not [data for _, data in panel.buttons() if data == "set:q:print"]
        ann.press(panel, "set:q:print")  # a stale button from when prints were on
        await asyncio.sleep(0.3)
        assert (await app.bot_data["services"].store.user(53)).quality == "balanced"


async def choose(user: FakeUser, photo: bytes, slug: str = "klimt-the-kiss") -> None:
    before = len(user.menus())
    user.photo(photo)
    menu = await user.wait_menu(after=before)
    user.press(menu, f"st:{slug}")


async def test_cancel_while_queued_and_while_running(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    async with start_bot(painter=SizedPainter(steps=20, step_s=0.1)) as app:
        ann, bob = telegram.user(61), telegram.user(62)
        await choose(ann, jpeg(seed=10))
        running = await ann.wait_text("🎨")
        await choose(bob, jpeg(seed=11))
        queued = await bob.wait_text("Queued — #1 in line")
        bob.press(queued, queued.button("Cancel"))
        await telegram.wait_for(lambda: queued.text == "✖️ Cancelled.")
        ann.press(running, running.button("Cancel"))
        await telegram.wait_for(lambda: running.text == "✖️ Cancelled.", timeout=5)
        await asyncio.sleep(0.3)
        assert not ann.messages("photo") or all(not m.caption for m in ann.messages("photo"))
        assert not bob.messages("photo")
        queue = app.bot_data["services"].queue
        assert await queue.active_jobs(61) == [] and await queue.active_jobs(62) == []
        await telegram.wait_for(lambda: not app.bot_data["services"].follower.tasks)
        assert await queue.undelivered() == []


async def test_limits_and_painter_failure(telegram: FakeTelegram, start_bot: BotFactory) -> None:
    async with start_bot(painter=SizedPainter(steps=10, step_s=0.05)):
        ann = telegram.user(71)
        ann.photo(jpeg(seed=12))
        menu = await ann.wait_text("Which painting")
        for slug in ("klimt-the-kiss", "munch-the-scream", "turner-fighting-temeraire"):
            ann.press(menu, f"st:{slug}")
        await ann.wait_text("You already have 2 pictures in progress")
        await ann.wait_result(2)
        bob = telegram.user(72, "ru")
        await choose(bob, jpeg(seed=13, extra=b"ERROR"))  # the stub painter raises on this
        await bob.wait_text("Не получилось: что-то сломалось у меня")


async def test_queue_full(telegram: FakeTelegram, start_bot: BotFactory, tmp_path: Path) -> None:
    queue = open_queue(
        None,
        painter=SizedPainter(steps=50, step_s=0.05),
        data_dir=tmp_path / "q",
        limits=QueueLimits(per_user=2, max_queue=1),
    )
    async with start_bot(queue=queue):
        users = [telegram.user(80 + i) for i in range(3)]
        for i, user in enumerate(users):
            await choose(user, jpeg(seed=20 + i))
            await telegram.wait_for(lambda u=user: u.messages() and len(u.messages()) >= 2)
        await users[2].wait_text("I am very busy right now")


@pytest.mark.slow
async def test_429_storm_and_5xx_during_progress(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    async with start_bot(painter=SizedPainter(steps=15, step_s=0.1)):
        ann = telegram.user(91)
        await choose(ann, jpeg(seed=14))
        await ann.wait_text("🎨")
        telegram.fault("editMessageText", 429, times=3, retry_after=1)
        telegram.fault("editMessageMedia", 502, times=2)
        telegram.fault("sendPhoto", 500, times=2)
        telegram.fault("sendPhoto", 429, times=1, retry_after=1)
        [result] = await ann.wait_result(timeout=20)
        assert "Kiss" in (result.caption or "")
        assert any(c.status == 429 for c in telegram.calls_to("editMessageText"))
        assert len([m for m in ann.messages("photo") if m.caption]) == 1  # exactly once


async def test_fifty_users_at_once(telegram: FakeTelegram, start_bot: BotFactory) -> None:
    async with start_bot(painter=SizedPainter(steps=1, scales=1)):
        users = [telegram.user(1000 + i) for i in range(50)]
        for i, user in enumerate(users):
            user.photo(jpeg(32, 32, seed=100 + i))
        menus = await asyncio.gather(*(u.wait_text("Which painting", timeout=30) for u in users))
        for user, menu in zip(users, menus, strict=True):
            user.press(menu, "rnd")
        await asyncio.gather(*(u.wait_result(timeout=60) for u in users))
        assert all(len(u.messages("photo")) >= 1 for u in users)


@pytest.mark.slow
async def test_forget_and_blocked_user(telegram: FakeTelegram, start_bot: BotFactory) -> None:
    async with start_bot(painter=SizedPainter(steps=30, step_s=0.05, scales=1)) as app:
        svc = app.bot_data["services"]
        ann = telegram.user(95)
        await choose(ann, jpeg(seed=15))
        status = await ann.wait_text("🎨")
        assert "left" in status.text and "Scale" not in status.text  # one scale: no "1/1"
        telegram.blocked.add(95)  # the user blocks the bot mid-job
        await telegram.wait_for(lambda: not svc.follower.tasks, timeout=10)
        assert await svc.queue.active_jobs(95) == [] and await svc.queue.undelivered() == []

        bob = telegram.user(96)
        await choose(bob, jpeg(seed=16))
        await bob.wait_result()
        assert await svc.store.image(96, "photo") is not None
        bob.text("/forget")
        await bob.wait_text("Done: your pictures, jobs and settings are deleted.")
        assert await svc.store.image(96, "photo") is None
        assert (await svc.store.user(96)).last_style is None
