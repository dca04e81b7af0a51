"""What the painter says and why a job failed reach the user, specifically, in their language:
the real bot against the fake Bot API, the embedded queue, stub painters."""

from __future__ import annotations

import threading

from bot.job_texts import REASON_TEXTS, failure_text
from bot.keyboards import FAILURE_ACTIONS, failure
from bot.texts import BUNDLES, t
from engine import errors
from engine.queue import JobRequest, ProgressCallback
from tests.doubles.bot_helpers import BotFactory, jpeg
from tests.doubles.fake_telegram import FakeTelegram
from tests.doubles.painters import SizedPainter


class FailingPainter:
    """Fails the way a worker without a gallery (or with broken weights) does."""

    def __call__(
        self, request: JobRequest, progress: ProgressCallback, cancel: threading.Event
    ) -> bytes:
        if request.content.endswith(b"WEIGHTS"):
            raise errors.WeightsError("stub: no weights")
        raise errors.GalleryError("stub: no gallery here")


def test_every_reason_code_has_its_own_text_in_both_languages() -> None:
    codes = [code for code in REASON_TEXTS if code != "painter_error"]
    for lang in ("en", "ru"):
        texts = {failure_text(lang, code) for code in codes}
        # none falls back to the vague one; codes whose refusal needs numbers share bad_image's
        assert len(texts) == len({REASON_TEXTS[code] for code in codes})
        assert failure_text(lang, "painter_error") not in texts
        assert failure_text(lang, "no-such-code") == failure_text(lang, "painter_error")
    assert all(
        BUNDLES[lang].has_message(REASON_TEXTS[code]) for code in REASON_TEXTS for lang in BUNDLES
    )


async def test_oom_fallback_is_shown_in_the_progress(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    async with start_bot(painter=SizedPainter(steps=6, scales=2, step_s=0.5)):
        ivan = telegram.user(31, "ru")
        ivan.text("/start")
        await ivan.wait_text("Я перерисовываю фото")
        ivan.photo(jpeg(seed=3, extra=b"OOM"))
        menu = await ivan.wait_text("Какую картину")
        ivan.press(menu, "st:van-gogh-starry-night")
        await ivan.wait_result()
        note = t("ru", "note_oom_retry", size=16)  # the stub's fallback size
        shown = [text for m in ivan.messages("text") for text in m.all_texts()]
        assert any("%" in text and note in text for text in shown), shown


async def test_failures_are_explained_specifically(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    async with start_bot(painter=FailingPainter()):
        ann, ivan = telegram.user(41, "en"), telegram.user(42, "ru")
        ivan.text("/start")
        await ivan.wait_text("Я перерисовываю фото")
        for user, extra in ((ann, b"GALLERY"), (ivan, b"WEIGHTS")):
            user.photo(jpeg(seed=4, extra=extra))
        for user, pick in ((ann, "Which painting"), (ivan, "Какую картину")):
            user.press(await user.wait_text(pick), "st:van-gogh-starry-night")
        await ann.wait_text(t("en", "gallery_error"))
        await ivan.wait_text(t("ru", "weights_error"))


def test_only_failures_a_press_can_mend_offer_a_button() -> None:
    offers = {code: failure("en", code) for code in REASON_TEXTS}
    helpful = {code for code, markup in offers.items() if markup is not None}
    assert helpful == {"painter_error", "gallery_error", "timeout", "style_not_found"}
    for code in ("weights_error", "worker_died", "not_an_image", "image_too_costly"):
        assert offers[code] is None, code  # it would fail again the same way
    data = {code: offers[code].inline_keyboard[0][0].callback_data for code in helpful}  # type: ignore[union-attr]
    assert data == {
        "painter_error": "re:r",
        "gallery_error": "re:r",
        "timeout": "re:f",
        "style_not_found": "again",
    }
    for lang in BUNDLES:  # every offer is worded in every language
        assert all(BUNDLES[lang].has_message(key) for key, _ in FAILURE_ACTIONS.values())


async def test_try_again_repaints_and_broken_weights_offer_nothing(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    async with start_bot(painter=FailingPainter()) as app:
        ann, bob = telegram.user(43, "en"), telegram.user(44, "en")
        for user, extra in ((ann, b"GALLERY"), (bob, b"WEIGHTS")):
            user.photo(jpeg(seed=5, extra=extra))
            user.press(await user.wait_text("Which painting"), "st:van-gogh-starry-night")
        failed = await ann.wait_text(t("en", "gallery_error"))
        assert failed.buttons() == [(t("en", "try_again"), "re:r")]
        assert (await bob.wait_text(t("en", "weights_error"))).buttons() == []
        ann.press(failed, "re:r")  # the same photo in the same painting, painted again
        await telegram.wait_for(
            lambda: sum(t("en", "gallery_error") in (m.text or "") for m in ann.messages()) == 2
        )
        ann.press(failed, "re:f")  # what a timeout offers: the fast quality, and paint again
        await telegram.wait_for(
            lambda: sum(t("en", "gallery_error") in (m.text or "") for m in ann.messages()) == 3
        )
        assert (await app.bot_data["services"].store.user(43)).quality == "fast"
