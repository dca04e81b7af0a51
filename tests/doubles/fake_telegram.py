"""A fake Telegram Bot API server for end-to-end tests of the bot through real PTB HTTP.

aiohttp on 127.0.0.1 and a random port, serving `/bot<token>/<method>` and the file route
`/file/bot<token>/<path>` the way the Bot API (or a self-hosted telegram-bot-api) does, at the
timing of a link profile (tests/doubles/link.py: `instant`, or `slow link`). It keeps
the chat state it needs to behave like Telegram where the bot depends on it: form and multipart
uploads, `attach://` media, "message is not modified", the 64-byte callback-data limit, 429 with
`parameters.retry_after`, 403 for users who blocked the bot, injectable 5xx/429 faults and late
answers (the message kept, the answer after the client's timeout). Every
call is recorded; `FakeUser` (tests/doubles/fake_user.py) injects what a person would do
(photos, files, albums, commands, button presses) as updates for getUpdates. The wire format,
records and errors are in tests/doubles/bot_api_wire.py.

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
import itertools
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.doubles.bot_api_wire import (
    BOT_USER,
    NOT_MODIFIED,
    QUERY_TOO_OLD,
    TOKEN,
    ApiError,
    Call,
    Fault,
    Sent,
    check_markup,
    error,
    flag,
    jpeg_size,
    parse,
)
from tests.doubles.fake_user import FakeUser
from tests.doubles.link import INSTANT, Late, Link

__all__ = ["TOKEN", "ApiError", "Call", "FakeTelegram", "FakeUser", "Fault", "Late", "Sent"]


class FakeTelegram:
    def __init__(self, token: str = TOKEN, link: Link = INSTANT) -> None:
        self.token = token
        self.link = link
        self.lates: list[Late] = []
        self._closing = asyncio.Event()
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
        # a stopping server waits for its handlers at most 1 s (aiohttp's default, 60 s, made a
        # test whose Telegram never answered wait out that answer in its teardown)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        self._closing.set()  # late answers still pending are given now
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

    def late(self, method: str, after_s: float, times: int = 1, chat_id: int | None = None) -> None:
        """The next `times` calls of `method` are carried out at once (the message is kept) and
        answered `after_s` later: past PTB's read timeout, the bot cannot tell they worked."""
        self.lates.append(Late(method, after_s, times, chat_id))

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
        body = self.files[file_id]
        await asyncio.sleep(self.link.call_s + self.link.download_s(len(body)))
        return web.Response(body=body)

    async def _api(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return error(401, "Unauthorized")
        method = request.match_info["method"]
        began = time.monotonic()
        params, files = await parse(request)
        uploaded = sum(len(data) for data in files.values())
        # the call reaches Telegram once its files have: a round trip plus the upload's time
        arrive = began + self.link.call_s + self.link.upload_s(uploaded)
        await asyncio.sleep(max(0.0, arrive - time.monotonic()))
        if method == "getFile":
            await asyncio.sleep(self.link.get_file_s)
        call = Call(method, params, files, time.monotonic())
        self.calls.append(call)
        try:
            response = await self._answer(method, params, files)
        finally:
            await self._notify()
        late = self._take_late(method, params.get("chat_id"))
        if late is not None:
            with contextlib.suppress(TimeoutError):  # kept above; the answer comes too late
                await asyncio.wait_for(self._closing.wait(), late.after_s)
        call.status = response.status
        for listener in self.listeners:
            listener(call)
        return response

    def _take_late(self, method: str, chat_id: Any) -> Late | None:
        return _take(self.lates, method, chat_id)

    def _take_fault(self, method: str, chat_id: Any) -> Fault | None:
        return _take(self.faults, method, chat_id)

    async def _answer(
        self, method: str, params: dict[str, Any], files: dict[str, bytes]
    ) -> web.Response:
        chat_id = params.get("chat_id")
        fault = self._take_fault(method, chat_id)
        if fault is not None:
            if fault.status == 429:
                retry = fault.retry_after or 1
                return error(429, f"Too Many Requests: retry after {retry}", {"retry_after": retry})
            return error(fault.status, "Internal Server Error")
        if chat_id in self.blocked:
            return error(403, "Forbidden: bot was blocked by the user")
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return error(404, "Not Found: method not found")
        try:
            result = (
                await handler(params, files) if method == "getUpdates" else handler(params, files)
            )
        except ApiError as exc:
            return error(exc.status, exc.description)
        return web.json_response({"ok": True, "result": result})

    # -- methods ----------------------------------------------------------------------------

    def _m_getMe(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        return dict(BOT_USER, can_join_groups=True, supports_inline_queries=False)

    def _m_deleteWebhook(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        if flag(p.get("drop_pending_updates")):
            self._confirm(self._updates)
        return True

    def _m_setWebhook(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        if flag(p.get("drop_pending_updates")):
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
            raise ApiError(400, QUERY_TOO_OLD)
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
        check_markup(markup)
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
            w, h = jpeg_size(msg.data)
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
        raise ApiError(400, f"Bad Request: wrong file identifier/HTTP URL specified ({key})")

    def _m_sendMessage(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        if not p.get("text"):
            raise ApiError(400, "Bad Request: message text is empty")
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
        msg = self._new(
            p["chat_id"], "document", caption=p.get("caption"), data=data,
            reply_markup=p.get("reply_markup"),
        )  # fmt: skip
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
            raise ApiError(400, f"Bad Request: message to {what} not found")
        return msg

    def _edited(self, msg: Sent) -> Any:
        msg.edits += 1
        return self._message_json(msg)

    def _m_editMessageText(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        msg = self._find(p, "edit")
        if msg.kind != "text":
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        markup = p.get("reply_markup")
        check_markup(markup)
        if p.get("text") == msg.text and markup == msg.reply_markup:
            raise ApiError(400, NOT_MODIFIED)
        msg.history.append(msg.text or "")
        msg.text, msg.reply_markup = p.get("text"), markup
        return self._edited(msg)

    def _m_editMessageCaption(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        msg = self._find(p, "edit")
        markup = p.get("reply_markup")
        if p.get("caption") == msg.caption and markup == msg.reply_markup:
            raise ApiError(400, NOT_MODIFIED)
        msg.caption, msg.reply_markup = p.get("caption"), markup
        return self._edited(msg)

    def _m_editMessageMedia(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        msg = self._find(p, "edit")
        media = p["media"]
        data = self._upload(media, f, "media")
        if data == msg.data:
            raise ApiError(400, NOT_MODIFIED)
        msg.data, msg.caption = data, media.get("caption")
        return self._edited(msg)

    def _m_editMessageReplyMarkup(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        msg = self._find(p, "edit")
        markup = p.get("reply_markup")
        check_markup(markup)
        if markup == msg.reply_markup:
            raise ApiError(400, NOT_MODIFIED)
        msg.reply_markup = markup
        return self._edited(msg)

    def _m_deleteMessage(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        msg = self._find(p, "delete")
        msg.deleted = True
        return True

    def _m_getFile(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        file_id = p.get("file_id")
        if file_id not in self.files:
            raise ApiError(400, "Bad Request: invalid file_id")
        path = next(path for path, fid in self.file_paths.items() if fid == file_id)
        size = len(self.files[file_id])
        return {"file_id": file_id, "file_unique_id": file_id, "file_size": size, "file_path": path}


def _take(planned: list[Any], method: str, chat_id: Any) -> Any:
    """The first fault or late answer planned for this call (a `Fault` or `Late`: `method`,
    `times` left, `chat_id` or None for any chat), its count taken down; None if none is."""
    for item in planned:
        wanted = item.chat_id is None or item.chat_id == chat_id
        if item.method == method and item.times > 0 and wanted:
            item.times -= 1
            return item
    return None
