"""Getting a user's picture off Telegram and making sure it is one, without trusting the file
name or the MIME type: the bytes are decoded by the engine's loader, in a thread."""

from __future__ import annotations

import asyncio

from telegram import Message

from engine.errors import ImageError, ImageTooLarge, NotAnImage
from engine.imaging import load_image

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # the Bot API refuses getFile above this


def has_image(message: Message) -> bool:
    return bool(message.photo) or message.document is not None


async def download_image(message: Message) -> bytes:
    """The image a message carries (photo or file), validated; raises an ImageError subclass
    whose `code` the bot translates. The size is checked before downloading anything."""
    media = message.photo[-1] if message.photo else message.document
    if media is None:
        raise NotAnImage("no picture in that message")
    if media.file_size and media.file_size > MAX_DOWNLOAD_BYTES:
        raise ImageTooLarge("over the 20 MB download limit")
    file = await media.get_file()
    data = bytes(await file.download_as_bytearray())
    await asyncio.to_thread(validate, data)
    return data


def validate(data: bytes) -> None:
    try:
        load_image(data)
    except ImageError:
        raise
    except Exception as exc:  # a decoder bug must still read as "bad picture" to the user
        raise NotAnImage("unreadable") from exc
