"""A person in a private chat with the fake Bot API's bot: what they send (photos, files,
albums, commands, button presses) becomes updates for getUpdates, and what the bot sent them can
be read and waited for."""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Any

from tests.doubles.bot_api_wire import Sent, jpeg_size

if TYPE_CHECKING:
    from tests.doubles.fake_telegram import FakeTelegram


class FakeUser:
    """A person in a private chat with the bot (chat id = user id)."""

    def __init__(self, server: FakeTelegram, user_id: int, lang: str, name: str) -> None:
        self.server, self.id, self.lang, self.name = server, user_id, lang, name
        self._album_ids = itertools.count(1)

    def _from(self) -> dict[str, Any]:
        return {"id": self.id, "is_bot": False, "first_name": self.name, "language_code": self.lang}

    def _message(self, **fields: Any) -> dict[str, Any]:
        msg = {
            "message_id": next(self.server._message_ids),
            "date": int(time.time()),
            "chat": {"id": self.id, "type": "private", "first_name": self.name},
            "from": self._from(),
            **fields,
        }
        self.server.push_update({"message": msg})
        return msg

    def text(self, text: str) -> dict[str, Any]:
        entities = []
        if text.startswith("/"):
            entities = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return self._message(text=text, entities=entities)

    def photo(self, data: bytes, *, file_size: int | None = None, **extra: Any) -> dict[str, Any]:
        file_id = self.server.add_file(data)
        w, h = jpeg_size(data)
        size = {
            "file_id": file_id,
            "file_unique_id": file_id,
            "width": w,
            "height": h,
            "file_size": file_size or len(data),
        }
        return self._message(photo=[size], **extra)

    def document(
        self,
        data: bytes,
        name: str = "photo.png",
        mime: str = "image/png",
        file_size: int | None = None,
    ) -> dict[str, Any]:
        file_id = self.server.add_file(data)
        doc = {
            "file_id": file_id,
            "file_unique_id": file_id,
            "file_name": name,
            "mime_type": mime,
            "file_size": file_size or len(data),
        }
        return self._message(document=doc)

    def album(self, *images: bytes) -> list[dict[str, Any]]:
        group = f"album-{self.id}-{next(self._album_ids)}"
        return [self.photo(image, media_group_id=group) for image in images]

    def press(self, message: Sent, data: str) -> str:
        """Tap a button; returns the callback query id (answerCallbackQuery names it)."""
        query = {
            "id": f"cq-{next(self.server._update_ids)}",
            "from": self._from(),
            "chat_instance": str(self.id),
            "data": data,
            "message": self.server._message_json(message),
        }
        self.server.push_update({"callback_query": query})
        return str(query["id"])

    # -- what the bot said to this user -----------------------------------------------------

    def messages(self, kind: str | None = None) -> list[Sent]:
        return self.server.messages(self.id, kind)

    def last_text(self) -> str:
        texts = [m.text for m in self.messages("text") if m.text]
        return texts[-1] if texts else ""

    async def wait_text(self, contains: str, timeout: float = 10.0) -> Sent:
        def found() -> Sent | None:
            for m in reversed(self.messages("text")):
                if m.text and contains in m.text:
                    return m
            return None

        result: Sent = await self.server.wait_for(found, timeout)
        return result

    def menus(self) -> list[Sent]:
        """Style keyboards the bot sent (in whatever language)."""
        return [m for m in self.messages("text") if any(d == "rnd" for _, d in m.buttons())]

    async def wait_menu(self, after: int = 0, timeout: float = 10.0) -> Sent:
        """The first style keyboard after the first `after` ones."""

        def found() -> Sent | None:
            menus = self.menus()
            return menus[after] if len(menus) > after else None

        result: Sent = await self.server.wait_for(found, timeout)
        return result

    async def wait_result(self, count: int = 1, timeout: float = 15.0) -> list[Sent]:
        """Result photos: the bot's photos that carry the result buttons."""

        def results() -> list[Sent] | None:
            found = [m for m in self.messages("photo") if m.reply_markup and m.caption]
            return found if len(found) >= count else None

        found: list[Sent] = await self.server.wait_for(results, timeout)
        return found
