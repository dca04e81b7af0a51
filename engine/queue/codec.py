"""Bytes on disk and on the wire for requests and events, shared by both backends.

JSON with base64 for the binary parts: readable with `sqlite3`/`redis-cli` when debugging a stuck
job, and no pickle, so a tampered database cannot run code in the bot.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, fields
from typing import Any

from engine.queue.seam import JobEvent, JobOptions, JobRequest, StyleChoice

_EVENT_FIELDS = {f.name for f in fields(JobEvent)}
_BYTES_FIELDS = ("preview", "result")


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def encode_request(request: JobRequest) -> bytes:
    doc = {
        "user_id": request.user_id,
        "chat_id": request.chat_id,
        "content": _b64(request.content),
        "styles": [
            {"slug": s.slug, "image": _b64(s.image), "weight": s.weight, "sha256": s.sha256}
            for s in request.styles
        ],
        "options": asdict(request.options),
        "meta": request.meta,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_request(data: bytes) -> JobRequest:
    doc = json.loads(data)
    return JobRequest(
        user_id=int(doc["user_id"]),
        chat_id=int(doc["chat_id"]),
        content=_unb64(doc["content"]) or b"",
        styles=[
            StyleChoice(
                slug=s["slug"],
                image=_unb64(s["image"]),
                weight=float(s["weight"]),
                sha256=s.get("sha256"),  # absent in jobs queued before blobs
            )
            for s in doc["styles"]
        ],
        options=JobOptions(**doc["options"]),
        meta=dict(doc.get("meta") or {}),
    )


def strip_request(request: JobRequest) -> JobRequest:
    """The request without its pictures: what is kept once a job is delivered (no retention)."""
    styles = [
        StyleChoice(slug=s.slug, image=None, weight=s.weight, sha256=s.sha256)
        for s in request.styles
    ]
    return JobRequest(
        user_id=request.user_id,
        chat_id=request.chat_id,
        content=b"",
        styles=styles,
        options=request.options,
        meta=request.meta,
    )


def encode_event(event: JobEvent) -> bytes:
    doc: dict[str, Any] = {k: v for k, v in asdict(event).items() if v is not None}
    for key in _BYTES_FIELDS:
        if key in doc:
            doc[key] = _b64(doc[key])
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_event(data: bytes | str) -> JobEvent:
    doc = json.loads(data)
    for key in _BYTES_FIELDS:
        if key in doc:
            doc[key] = _unb64(doc[key])
    return JobEvent(**{k: v for k, v in doc.items() if k in _EVENT_FIELDS})
