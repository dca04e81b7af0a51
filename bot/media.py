"""Getting a user's picture off Telegram and making sure it is one, without trusting the file
name or the MIME type: the bytes are decoded once, by the engine's sandboxed loader in a thread,
and what goes on to the queue is the normalised picture (upright sRGB JPEG, at most
engine.imaging.MAX_SIDE a side), so the painter's own decode is small and known to succeed."""

from __future__ import annotations

import asyncio

from telegram import Message

from bot.texts import t
from engine.errors import ImageError, NotAnImage
from engine.imaging import normalize, read_source, too_many_bytes

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # the Bot API refuses getFile above this


def has_image(message: Message) -> bool:
    return bool(message.photo) or message.document is not None


async def download_image(message: Message) -> bytes:
    """The image a message carries (photo or file), validated and normalised; raises an
    ImageError subclass whose `code` and `params` the bot translates (`refusal`). The size is
    checked before downloading anything."""
    media = message.photo[-1] if message.photo else message.document
    if media is None:
        raise NotAnImage("no picture in that message")
    if media.file_size and media.file_size > MAX_DOWNLOAD_BYTES:
        raise too_many_bytes(media.file_size, MAX_DOWNLOAD_BYTES)
    file = await media.get_file()
    data = bytes(await file.download_as_bytearray())
    return await asyncio.to_thread(validate, data)


def validate(data: bytes) -> bytes:
    """The normalised picture of `data`, or an ImageError: the loader raises nothing else, and a
    bug anywhere in it must still read as "I could not use that picture" to the user."""
    try:
        return normalize(read_source(data, MAX_DOWNLOAD_BYTES))
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError("unreadable") from exc


def refusal(lang: str, error: ImageError) -> str:
    """The refusal text for `error` in `lang`, with its numbers filled in."""
    return t(lang, error.code, **error.params)
