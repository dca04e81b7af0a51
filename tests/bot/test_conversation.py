"""The photo → style conversation (bot.conversation): named states kept in the store as soon as
they change, so a restart does not forget them; and buttons that queue a job answer only after
the job exists (issue 11: an answered press is never lost)."""

from __future__ import annotations

from typing import Any

from bot.conversation import NAME, State
from engine.queue import JobRequest
from tests.doubles.bot_helpers import BotFactory, eventually, jpeg
from tests.doubles.fake_telegram import Call, FakeTelegram


async def test_buttons_answer_after_the_job_exists(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    order: list[str] = []

    def on_call(call: Call) -> None:
        if call.method == "answerCallbackQuery":
            order.append(f"answered {call.params['callback_query_id']}")

    telegram.listeners.append(on_call)
    async with start_bot() as app:
        queue = app.bot_data["services"].queue
        submit = queue.submit

        async def recording_submit(request: JobRequest, **kwargs: Any) -> Any:
            result = await submit(request, **kwargs)
            order.append(f"job {result[0]}")
            return result

        queue.submit = recording_submit
        ann = telegram.user(701)
        ann.photo(jpeg(seed=70))
        menu = await ann.wait_menu()
        presses = [ann.press(menu, "st:klimt-the-kiss")]
        [result] = await ann.wait_result()
        presses.append(ann.press(menu, "rnd"))
        await ann.wait_result(2)
        presses.append(ann.press(result, "re:+"))
        await ann.wait_result(3)
        await telegram.wait_for(lambda: len(order) == 6)
        for i, query_id in enumerate(presses):
            assert order[2 * i].startswith("job ")  # the job was queued …
            assert order[2 * i + 1] == f"answered {query_id}"  # … before the press was answered


async def test_waiting_for_the_style_picture_survives_a_restart(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    ann = telegram.user(702)
    photo, style = jpeg(seed=71), jpeg(64, 64, seed=72)
    async with start_bot() as app:
        store = app.bot_data["services"].store
        ann.photo(photo)
        menu = await ann.wait_menu()
        await eventually(lambda: store.conversations(NAME), {(702, 702): State.CHOOSING_STYLE})
        ann.press(menu, "own")
        await ann.wait_text("Now send the picture whose style")
        # on disk while the bot still runs: a kill -9 now would not forget it either
        await eventually(
            lambda: store.conversations(NAME), {(702, 702): State.WAITING_STYLE_PICTURE}
        )
    async with start_bot():
        ann.photo(style)
        [result] = await ann.wait_result()
        assert "your own style" in (result.caption or "")
        assert len(ann.menus()) == 1  # the picture was the style, not a new photo


async def test_a_painting_instead_of_the_style_picture_and_forget(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    async with start_bot() as app:
        store = app.bot_data["services"].store
        ann = telegram.user(703)
        ann.photo(jpeg(seed=73))
        menu = await ann.wait_menu()
        ann.press(menu, "own")
        await ann.wait_text("Now send the picture whose style")
        ann.press(menu, "st:munch-the-scream")  # changed their mind: a painting after all
        [result] = await ann.wait_result()
        assert "Scream" in (result.caption or "")
        ann.photo(jpeg(seed=74))  # so this is a new photo to repaint, not a style
        await ann.wait_menu(after=1)
        assert await store.conversations(NAME) == {(703, 703): State.CHOOSING_STYLE}
        ann.text("/forget")
        await ann.wait_text("Done: your pictures, jobs and settings are deleted.")
        await eventually(lambda: store.conversations(NAME), {})
