"""What a job's messages say: the progress bar and durations, a failed job's reason, a painter's
note. Pure functions of an event and a language, shared by the delivery (bot.delivery) and the
commands that show queue figures."""

from __future__ import annotations

from bot.texts import t
from engine.queue import JobEvent

BAR_WIDTH = 10

# Reason codes (engine.errors codes, engine.queue.lifecycle codes) -> the text key saying it.
# A painter's failure carries its code only: refusals whose texts need numbers (sizes, limits)
# read as "could not use that picture" here; the bot refuses those itself before submitting.
REASON_TEXTS = {
    "not_an_image": "not_an_image",
    "corrupt_image": "corrupt_image",
    "image_too_large": "bad_image",
    "image_too_small": "bad_image",
    "file_too_large": "bad_image",
    "unsupported_format": "bad_image",
    "image_too_costly": "image_too_costly",
    "bad_image": "bad_image",
    "style_not_found": "style_not_found",
    "gallery_error": "gallery_error",
    "weights_error": "weights_error",
    "timeout": "timeout",
    "worker_died": "worker_died",
    "painter_error": "painter_error",
}
NOTICE_TEXTS = {"oom_retry": "note_oom_retry"}  # painter notices the bot can translate


def bar(fraction: float) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * BAR_WIDTH)
    return "▓" * filled + "░" * (BAR_WIDTH - filled)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


def reason_code(reason: str | None) -> str:
    """A failed job's reason as the bot knows it: an unknown or missing one is a painter error."""
    return reason if reason in REASON_TEXTS else "painter_error"


def failure_text(lang: str, reason: str | None) -> str:
    """What the user reads when a job failed: the specific reason, in their language."""
    return t(lang, "done_failed", reason=t(lang, REASON_TEXTS[reason_code(reason)]))


def painter_note(lang: str, event: JobEvent) -> str:
    """A painter message for the status: translated when its notice is known, else as said."""
    key = NOTICE_TEXTS.get(event.notice or "")
    if key is not None:
        return t(lang, key, size=event.size or "?")
    return t(lang, "painter_note", message=event.message)
