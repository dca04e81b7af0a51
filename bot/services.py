"""What every handler needs, built once per application and kept in `bot_data["services"]`
(handlers reach it as `context.services`, see bot.context)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from telegram import Message

from bot.config import Settings
from bot.follow import Follower
from bot.store import Store
from bot.updates import UpdateProcessor
from engine.queue import JobQueue


@dataclass
class Album:
    """The parts of one media group, collected until the group stops growing. Each part's file
    is fetched as soon as its message is seen, all parts at once (bot.handlers.pictures)."""

    chat_id: int
    user_id: int
    lang: str
    # message_id -> the part's message and its download: the image, or what was wrong with it
    parts: dict[int, tuple[Message, asyncio.Task[bytes | Exception]]] = field(default_factory=dict)
    updates: list[int] = field(default_factory=list)  # held until the album is done (bot.updates)


@dataclass
class Services:
    settings: Settings
    queue: JobQueue
    store: Store
    updates: UpdateProcessor  # the write-ahead and per-user order of updates
    follower: Follower
    paintings: list[Any]  # engine.gallery.Painting, present in the gallery folder
    albums: dict[str, Album] = field(default_factory=dict)
    health: Any = None  # aiohttp runner of /healthz, when ORSAY_METRICS_PORT is set
    resuming: Any = None  # the task resuming undelivered jobs (it waits out a queue outage)

    def painting(self, slug: str) -> Any | None:
        return next((p for p in self.paintings if p.slug == slug), None)
