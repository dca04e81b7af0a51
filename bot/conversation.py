"""The photo → style conversation: its named states, and PTB persistence that keeps each user's
state in the bot's own SQLite store so that a restart (or kill -9) does not forget it.

                   photo                         🖼 own style
    WAITING_PHOTO ─────────▶ CHOOSING_STYLE ──────────────────▶ WAITING_STYLE_PICTURE
      (no row)                 │      ▲  ▲                                │
          ▲                    └──────┘  └─── picture: painted in it ─────┤
          │               photo: the new one     painting / 🎲: instead ──┘
          └──── /forget (from any state); 🖼 also starts from WAITING_PHOTO

WAITING_PHOTO is PTB's END: a user with no conversation (new, or after /forget) has no row.
The other buttons (pages, settings, repaint, cancel, and paintings / 🎲 outside
WAITING_STYLE_PICTURE) and the album shortcut work in every state and leave it as it is; their
callback data is plain text naming durable things (bot.keyboards), so it needs no persistence.

Why not PicklePersistence: it rewrites one pickle of every conversation on each flush, in place
(not atomically), in a second file beside the store; rows in the store's SQLite (WAL) are written
one at a time and survive kill -9. PTB hands conversation states over only in
`update_persistence`, which bot.app calls after every update (a handler in a later group), not
on PTB's 60 s timer. The state is then staged (Store.stage_conversation), not written: the
update processor's handled mark for that user's update writes it, in the same transaction
(bot.updates). A kill -9 before that transaction loses both the new state and the mark, so the
update is replayed under the state it first ran under; a state written before the mark would
have replayed a style picture under the new state, as a new photo (issue 30). A stop flushes
nothing: what is still staged belongs to updates not handled, which are replayed.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from telegram.ext import BasePersistence, ConversationHandler, PersistenceInput

from bot.store import Store

NAME = "photo_to_style"


class State(IntEnum):
    WAITING_PHOTO = ConversationHandler.END
    CHOOSING_STYLE = 1
    WAITING_STYLE_PICTURE = 2


ADict = dict[Any, Any]
Key = tuple[int | str, ...]  # PTB's ConversationKey: (chat id, user id) here
CDCData = tuple[list[tuple[str, float, dict[str, Any]]], dict[str, str]]  # PTB's, unused


class StorePersistence(BasePersistence[ADict, ADict, ADict]):
    """Conversation states only (user, chat, bot and callback data are not persisted: the
    store keeps what the bot needs, and callback data is plain text)."""

    def __init__(self, store: Store) -> None:
        nothing_else = PersistenceInput(
            bot_data=False, chat_data=False, user_data=False, callback_data=False
        )
        super().__init__(store_data=nothing_else, update_interval=60)
        self.store = store

    async def get_conversations(self, name: str) -> dict[Key, object]:
        return {key: State(state) for key, state in (await self.store.conversations(name)).items()}

    async def update_conversation(self, name: str, key: Key, new_state: object | None) -> None:
        """Staged until the update's handled mark writes it (module docstring)."""
        if new_state is not None and not isinstance(new_state, int):
            raise TypeError(f"conversation states are State members, not {new_state!r}")
        self.store.stage_conversation(name, key, new_state)

    # -- the kinds of data this persistence does not keep ------------------------------------

    async def get_user_data(self) -> dict[int, ADict]:
        return {}

    async def get_chat_data(self) -> dict[int, ADict]:
        return {}

    async def get_bot_data(self) -> ADict:
        return {}

    async def get_callback_data(self) -> CDCData | None:
        return None

    async def update_user_data(self, user_id: int, data: ADict) -> None:
        pass

    async def update_chat_data(self, chat_id: int, data: ADict) -> None:
        pass

    async def update_bot_data(self, data: ADict) -> None:
        pass

    async def update_callback_data(self, data: CDCData) -> None:
        pass

    async def drop_user_data(self, user_id: int) -> None:
        pass

    async def drop_chat_data(self, chat_id: int) -> None:
        pass

    async def refresh_user_data(self, user_id: int, user_data: ADict) -> None:
        pass

    async def refresh_chat_data(self, chat_id: int, chat_data: ADict) -> None:
        pass

    async def refresh_bot_data(self, bot_data: ADict) -> None:
        pass

    async def flush(self) -> None:
        pass  # a staged state is written with its update's handled mark, or replayed
