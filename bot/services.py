"""What every handler needs, built once per application and kept in `bot_data["services"]`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from telegram import Update
from telegram.ext import ContextTypes

from bot.config import Settings
from bot.follow import Follower
from bot.store import Store
from bot.texts import pick_language
from engine.queue import JobQueue


@dataclass
class Album:
    """Images of one media group, collected until the group stops growing."""

    chat_id: int
    user_id: int
    lang: str
    images: dict[int, bytes] = field(default_factory=dict)  # message_id -> bytes
    timer: asyncio.TimerHandle | None = None


@dataclass
class Services:
    settings: Settings
    queue: JobQueue
    store: Store
    follower: Follower
    paintings: list[Any]  # engine.gallery.Painting, present in the gallery folder
    albums: dict[str, Album] = field(default_factory=dict)
    health: Any = None  # aiohttp runner of /healthz, when ORSAY_METRICS_PORT is set

    def painting(self, slug: str) -> Any | None:
        return next((p for p in self.paintings if p.slug == slug), None)


def services(context: ContextTypes.DEFAULT_TYPE) -> Services:
    svc: Services = context.bot_data["services"]
    return svc


def lang_of(update: Update, context: ContextTypes.DEFAULT_TYPE) -> str:
    """The user's chosen language, else the one Telegram reports for them."""
    user = update.effective_user
    if user is None:
        return "en"
    chosen = services(context).store.user(user.id).lang
    return chosen or pick_language(user.language_code)
