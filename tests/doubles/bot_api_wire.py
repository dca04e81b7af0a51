"""What the fake Bot API (tests/doubles/fake_telegram.py) speaks: the test token and bot, the
records of calls and sent messages, the error replies, and request parsing (form, multipart or
JSON bodies, as PTB and other clients send them)."""

from __future__ import annotations

import io
import json
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


def jpeg_size(data: bytes) -> tuple[int, int]:
    try:
        return Image.open(io.BytesIO(data)).size
    except Exception:
        return (0, 0)


class ApiError(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status, self.description = status, description


def error(status: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)


def flag(value: Any) -> bool:
    """A boolean parameter as JSON or a form field sends it."""
    return value is True or str(value).lower() == "true"


def check_markup(markup: Any) -> None:
    for row in (markup or {}).get("inline_keyboard", []):
        for button in row:
            data = button.get("callback_data")
            if data is not None and not 1 <= len(data.encode()) <= 64:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")


async def parse(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
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
