"""End-to-end user journeys: the real bot (PTB over HTTP) against the fake Bot API server, with
the embedded queue and a fast stub painter."""

from __future__ import annotations

import asyncio

from conftest import BotFactory, jpeg
from fake_telegram import FakeTelegram
from painters import SizedPainter

from engine.queue import JobRequest, JobOptions, StyleChoice
from engine.queue.stub_painter import result_colour


def colour_of(data: bytes) -> tuple[int, int, int]:
    import io

    from PIL import Image

    pixel = Image.open(io.BytesIO(data)).convert("RGB").getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return pixel[0], pixel[1], pixel[2]


def close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 6) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


async def test_gallery_choice_gives_a_result(telegram: FakeTelegram, start_bot: BotFactory) -> None:
    async with start_bot(painter=SizedPainter(step_s=0.02)) as app:
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
        [preview] = [m for m in ann.messages("photo") if not m.caption]
        # the progress and preview messages go away once the result is there
        await telegram.wait_for(lambda: status.deleted and preview.deleted)
        # one preview per scale (2 scales): sent once, then replaced in place
        assert len(telegram.calls_to("editMessageMedia", 11)) == 1
        svc = app.bot_data["services"]
        await telegram.wait_for(lambda: not svc.follower.tasks)
        assert await svc.queue.undelivered() == []
