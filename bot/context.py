"""The context every handler gets (`ContextTypes(context=BotContext)` in bot.app), as in PTB's
contexttypesbot example: typed properties for what handlers need, so no handler digs in
`bot_data` or asserts on the update's user.

The user's settings are read once per update, off the event loop, in `refresh_data` (which PTB
awaits before any handler or job callback gets the context), so `lang` and `prefs` are plain
reads and no property hides a query.
"""

from __future__ import annotations

from typing import Any

from telegram import Update, User
from telegram.ext import Application, CallbackContext, ExtBot

from bot.services import Services
from bot.store import UserPrefs
from bot.texts import pick_language

ADict = dict[Any, Any]


class BotContext(CallbackContext[ExtBot[None], ADict, ADict, ADict]):
    def __init__(
        self,
        application: Application[Any, Any, Any, Any, Any, Any],
        chat_id: int | None = None,
        user_id: int | None = None,
    ) -> None:
        super().__init__(application=application, chat_id=chat_id, user_id=user_id)
        self._user: User | None = None
        self._prefs: UserPrefs | None = None

    @classmethod
    def from_update(
        cls, update: object, application: Application[Any, Any, Any, Any, Any, Any]
    ) -> BotContext:
        context = super().from_update(update, application)
        if isinstance(update, Update):
            context._user = update.effective_user
        return context

    async def refresh_data(self) -> None:
        await super().refresh_data()
        if self._user is not None and self._prefs is None:
            self._prefs = await self.services.store.user(self._user.id)

    @property
    def services(self) -> Services:
        """The queue, store, follower, settings and gallery of this bot (set in bot.app)."""
        services: Services = self.bot_data["services"]
        return services

    @property
    def user_id(self) -> int:
        """The user the update came from (every update the handlers take has one)."""
        if self._user_id is None:
            raise RuntimeError("this update has no user")
        return self._user_id

    @property
    def chat_id(self) -> int:
        if self._chat_id is None:
            raise RuntimeError("this update has no chat")
        return self._chat_id

    @property
    def prefs(self) -> UserPrefs:
        """The user's settings as they were when this update arrived (`store.update` returns
        them as they are after a change)."""
        if self._prefs is None:
            raise RuntimeError("this update has no user")
        return self._prefs

    @property
    def lang(self) -> str:
        """The user's chosen language, else the one Telegram reports for them, else English."""
        if self._user is None:
            return "en"
        chosen = self._prefs.lang if self._prefs is not None else None
        return chosen or pick_language(self._user.language_code)
