"""A fake Telegram Bot API server for end-to-end tests of the bot through real PTB HTTP.

aiohttp on 127.0.0.1 and a random port, serving `/bot<token>/<method>` and the file route
`/file/bot<token>/<path>` the way the Bot API (or a self-hosted telegram-bot-api) does. It keeps
the chat state it needs to behave like Telegram where the bot depends on it: form and multipart
uploads, `attach://` media, "message is not modified", the 64-byte callback-data limit, 429 with
`parameters.retry_after`, 403 for users who blocked the bot, and injectable 5xx/429 faults. Every
call is recorded; `FakeUser` injects what a person would do (photos, files, albums, commands,
button presses) as updates for getUpdates.

Updates are kept the way Telegram keeps them, because the bot's durability depends on exactly
this: an update stays on the server, and is sent again by every getUpdates, until a getUpdates
arrives whose `offset` is higher than its `update_id`; from then on it is forgotten ("confirmed"),
whether or not the bot did anything with it. The confirmation happens when that request arrives,
before its long poll waits, and `on_confirm` listeners hear of it then. A negative offset keeps
only the last -offset updates; `deleteWebhook`/`setWebhook` with `drop_pending_updates` forget
them all. A callback query can be answered once: a second answer is the 400 Telegram gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

TOKEN = "123456789:AAFakeTokenForOrsayTests_abcdefghij"
BOT_USER = {"id": 123456789, "is_bot": True, "first_name": "Orsay", "username": "orsay_bot"}
JSON_KEYS = {"reply_markup", "media", "commands", "allowed_updates", "reply_parameters"}
INT_KEYS = {"chat_id", "message_id", "offset", "limit", "timeout"}
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, bytes]
    at: float
    status: int = 200


@dataclass
class Fault:
    method: str
    status: int
    times: int
    retry_after: int | None = None
    chat_id: int | None = None


@dataclass
class Sent:
    """A message the bot sent (and its current state after edits)."""

    chat_id: int
    message_id: int
    kind: str  # text | photo | document
    text: str | None = None
    caption: str | None = None
    data: bytes | None = None
    reply_markup: dict[str, Any] | None = None
    deleted: bool = False
    edits: int = 0
    history: list[str] = field(default_factory=list)

    def all_texts(self) -> list[str]:
        """Every text this message has shown, oldest first."""
        return [*self.history, self.text or ""]

    def buttons(self) -> list[tuple[str, str]]:
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [(b["text"], b.get("callback_data", "")) for row in rows for b in row]

    def button(self, contains: str) -> str:
        for text, data in self.buttons():
            if contains in text or contains == data:
                return data
        raise AssertionError(f"no button {contains!r} in {self.buttons()}")

    def image_size(self) -> tuple[int, int]:
        assert self.data is not None
        return Image.open(io.BytesIO(self.data)).size


def _jpeg_size(data: bytes) -> tuple[int, int]:
    try:
        return Image.open(io.BytesIO(data)).size
    except Exception:
        return (0, 0)


class FakeTelegram:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.sent: dict[tuple[int, int], Sent] = {}
        self.faults: list[Fault] = []
        self.blocked: set[int] = set()
        self.files: dict[str, bytes] = {}
        self.file_paths: dict[str, str] = {}
        self._updates: list[dict[str, Any]] = []
        self.last_update_id = 0  # the newest update pushed
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._file_ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.webhook: dict[str, Any] | None = None  # what setWebhook was told
        self.by_chat: dict[int, list[Sent]] = {}
        self.listeners: list[Callable[[Call], None]] = []  # told of every answered call
        # told of every confirmation, with the updates it made the server forget
        self.on_confirm: list[Callable[[list[dict[str, Any]]], None]] = []
        self.answered: set[str] = set()  # callback queries answered
        self.url = ""

    # -- server lifecycle -------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.*}", self._download)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- test controls ----------------------------------------------------------------------

    def user(self, user_id: int, lang: str = "en", name: str = "Ann") -> FakeUser:
        return FakeUser(self, user_id, lang, name)

    def fault(
        self,
        method: str,
        status: int,
        times: int = 1,
        retry_after: int | None = None,
        chat_id: int | None = None,
    ) -> None:
        """The next `times` calls of `method` (any chat, or `chat_id`) fail with `status`."""
        self.faults.append(Fault(method, status, times, retry_after, chat_id))

    def push_update(self, update: dict[str, Any]) -> None:
        update["update_id"] = next(self._update_ids)
        self.last_update_id = int(update["update_id"])
        self._updates.append(update)
        asyncio.get_running_loop().create_task(self._notify())

    def add_file(self, data: bytes) -> str:
        file_id = f"file-{next(self._file_ids)}"
        self.files[file_id] = data
        self.file_paths[f"photos/{file_id}.bin"] = file_id
        return file_id

    def calls_to(self, method: str, chat_id: int | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.method == method and (chat_id is None or c.params.get("chat_id") == chat_id)
        ]

    def messages(self, chat_id: int, kind: str | None = None) -> list[Sent]:
        return [m for m in self.by_chat.get(chat_id, []) if kind is None or m.kind == kind]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until `predicate()` is truthy (re-checked after every API call); return it."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- HTTP -------------------------------------------------------------------------------

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401}, status=401)
        file_id = self.file_paths.get(request.match_info["path"])
        if file_id is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=self.files[file_id])

    async def _api(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params, files = await _parse(request)
        call = Call(method, params, files, time.monotonic())
        self.calls.append(call)
        try:
            response = await self._answer(method, params, files)
        finally:
            await self._notify()
        call.status = response.status
        for listener in self.listeners:
            listener(call)
        return response

    def _take_fault(self, method: str, chat_id: Any) -> Fault | None:
        for fault in self.faults:
            wanted = fault.chat_id is None or fault.chat_id == chat_id
            if fault.method == method and fault.times > 0 and wanted:
                fault.times -= 1
                return fault
        return None

    async def _answer(
        self, method: str, params: dict[str, Any], files: dict[str, bytes]
    ) -> web.Response:
        chat_id = params.get("chat_id")
        fault = self._take_fault(method, chat_id)
        if fault is not None:
            if fault.status == 429:
                retry = fault.retry_after or 1
                return _error(
                    429, f"Too Many Requests: retry after {retry}", {"retry_after": retry}
                )
            return _error(fault.status, "Internal Server Error")
        if chat_id in self.blocked:
            return _error(403, "Forbidden: bot was blocked by the user")
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        try:
            result = (
                await handler(params, files) if method == "getUpdates" else handler(params, files)
            )
        except _ApiError as exc:
            return _error(exc.status, exc.description)
        return web.json_response({"ok": True, "result": result})

    # -- methods ----------------------------------------------------------------------------

    def _m_getMe(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        return dict(BOT_USER, can_join_groups=True, supports_inline_queries=False)

    def _m_deleteWebhook(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        if _flag(p.get("drop_pending_updates")):
            self._confirm(self._updates)
        return True

    def _m_setWebhook(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        if _flag(p.get("drop_pending_updates")):
            self._confirm(self._updates)
        self.webhook = dict(p)
        return True

    def _m_setMyCommands(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        return True

    def _m_sendChatAction(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        return True

    def _m_answerCallbackQuery(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        query_id = str(p.get("callback_query_id"))
        if query_id in self.answered:
            raise _ApiError(400, QUERY_TOO_OLD)
        self.answered.add(query_id)
        return True

    def _confirm(self, updates: list[dict[str, Any]]) -> None:
        """Forget `updates` for good, as Telegram does once they are confirmed."""
        if not updates:
            return
        gone = {u["update_id"] for u in updates}
        self._updates = [u for u in self._updates if u["update_id"] not in gone]
        for listener in list(self.on_confirm):
            listener(list(updates))

    async def _m_getUpdates(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        offset = int(p.get("offset") or 0)
        if offset < 0:  # only the last -offset updates are kept
            self._confirm(self._updates[:offset])
        elif offset > 0:
            self._confirm([u for u in self._updates if u["update_id"] < offset])
        deadline = time.monotonic() + float(p.get("timeout") or 0)
        while not self._updates and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return self._updates[: int(p.get("limit") or 100)]

    def _new(self, chat_id: int, kind: str, **fields: Any) -> Sent:
        markup = fields.pop("reply_markup", None)
        _check_markup(markup)
        msg = Sent(chat_id, next(self._message_ids), kind, reply_markup=markup, **fields)
        self.sent[(chat_id, msg.message_id)] = msg
        self.by_chat.setdefault(chat_id, []).append(msg)
        return msg

    def _message_json(self, msg: Sent) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": msg.message_id,
            "date": int(time.time()),
            "chat": {"id": msg.chat_id, "type": "private"},
            "from": BOT_USER,
        }
        if msg.text is not None:
            out["text"] = msg.text
        if msg.caption is not None:
            out["caption"] = msg.caption
        if msg.kind == "photo" and msg.data is not None:
            file_id = self.add_file(msg.data)
            w, h = _jpeg_size(msg.data)
            out["photo"] = [
                {"file_id": file_id, "file_unique_id": file_id, "width": w, "height": h}
            ]
        if msg.kind == "document" and msg.data is not None:
            file_id = self.add_file(msg.data)
            out["document"] = {"file_id": file_id, "file_unique_id": file_id}
        if msg.reply_markup:
            out["reply_markup"] = msg.reply_markup
        return out

    def _upload(self, p: dict[str, Any], f: dict[str, bytes], key: str) -> bytes:
        value = p.get(key)
        if key in f:
            return f[key]
        if isinstance(value, str) and value.startswith("attach://"):
            return f[value[len("attach://") :]]
        if isinstance(value, str) and value in self.files:
            return self.files[value]
        raise _ApiError(400, f"Bad Request: wrong file identifier/HTTP URL specified ({key})")

    def _m_sendMessage(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        if not p.get("text"):
            raise _ApiError(400, "Bad Request: message text is empty")
        msg = self._new(p["chat_id"], "text", text=p["text"], reply_markup=p.get("reply_markup"))
        return self._message_json(msg)

    def _m_sendPhoto(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        data = self._upload(p, f, "photo")
        msg = self._new(
            p["chat_id"], "photo", caption=p.get("caption"), data=data,
            reply_markup=p.get("reply_markup"),
        )  # fmt: skip
        return self._message_json(msg)

    def _m_sendDocument(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        data = self._upload(p, f, "document")
        msg = self._new(p["chat_id"], "document", caption=p.get("caption"), data=data)
        return self._message_json(msg)

    def _m_sendMediaGroup(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        out = []
        for item in p["media"]:
            data = self._upload(item, f, "media")
            msg = self._new(p["chat_id"], item["type"], caption=item.get("caption"), data=data)
            out.append(self._message_json(msg))
        return out

    def _find(self, p: dict[str, Any], what: str) -> Sent:
        msg = self.sent.get((p.get("chat_id"), p.get("message_id")))  # type: ignore[arg-type]
        if msg is None or msg.deleted:
            raise _ApiError(400, f"Bad Request: message to {what} not found")
        return msg

    def _edited(self, msg: Sent) -> Any:
        msg.edits += 1
        return self._message_json(msg)

    def _m_editMessageText(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        msg = self._find(p, "edit")
        if msg.kind != "text":
            raise _ApiError(400, "Bad Request: there is no text in the message to edit")
        markup = p.get("reply_markup")
        _check_markup(markup)
        if p.get("text") == msg.text and markup == msg.reply_markup:
            raise _ApiError(400, NOT_MODIFIED)
        msg.history.append(msg.text or "")
        msg.text, msg.reply_markup = p.get("text"), markup
        return self._edited(msg)

    def _m_editMessageCaption(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        msg = self._find(p, "edit")
        markup = p.get("reply_markup")
        if p.get("caption") == msg.caption and markup == msg.reply_markup:
            raise _ApiError(400, NOT_MODIFIED)
        msg.caption, msg.reply_markup = p.get("caption"), markup
        return self._edited(msg)

    def _m_editMessageMedia(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        msg = self._find(p, "edit")
        media = p["media"]
        data = self._upload(media, f, "media")
        if data == msg.data:
            raise _ApiError(400, NOT_MODIFIED)
        msg.data, msg.caption = data, media.get("caption")
        return self._edited(msg)

    def _m_editMessageReplyMarkup(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        msg = self._find(p, "edit")
        markup = p.get("reply_markup")
        _check_markup(markup)
        if markup == msg.reply_markup:
            raise _ApiError(400, NOT_MODIFIED)
        msg.reply_markup = markup
        return self._edited(msg)

    def _m_deleteMessage(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        msg = self._find(p, "delete")
        msg.deleted = True
        return True

    def _m_getFile(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        file_id = p.get("file_id")
        if file_id not in self.files:
            raise _ApiError(400, "Bad Request: invalid file_id")
        path = next(path for path, fid in self.file_paths.items() if fid == file_id)
        size = len(self.files[file_id])
        return {"file_id": file_id, "file_unique_id": file_id, "file_size": size, "file_path": path}


class _ApiError(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status, self.description = status, description


def _error(status: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)


def _flag(value: Any) -> bool:
    """A boolean parameter as JSON or a form field sends it."""
    return value is True or str(value).lower() == "true"


def _check_markup(markup: Any) -> None:
    for row in (markup or {}).get("inline_keyboard", []):
        for button in row:
            data = button.get("callback_data")
            if data is not None and not 1 <= len(data.encode()) <= 64:
                raise _ApiError(400, "Bad Request: BUTTON_DATA_INVALID")


async def _parse(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Form, multipart or JSON bodies, as PTB and other clients send them."""
    params: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    if request.content_type == "application/json":
        raw = await request.json()
        params = dict(raw)
    else:
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                files[key] = value.file.read()
            else:
                params[key] = value
        params.update({k: v for k, v in request.query.items() if k not in params})
    for key in JSON_KEYS & params.keys():
        if isinstance(params[key], str):
            params[key] = json.loads(params[key])
    for key in INT_KEYS & params.keys():
        if isinstance(params[key], str) and params[key].lstrip("-").isdigit():
            params[key] = int(params[key])
    return params, files


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
        w, h = _jpeg_size(data)
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
