"""How fast, and how late, the fake Bot API answers: named link profiles for the double
(tests/doubles/fake_telegram.py), so the journeys and the chaos suite run against real timing,
not only against a Telegram that answers everything at once.

A profile models what a bot sees of Telegram on an ordinary link (figures chosen from what a
phone-sized upload and Telegram's file servers give, see issue 30):

- `call_s`: every Bot API round trip;
- `get_file_s`: getFile's extra wait before it names the file's path;
- `download_bps`: the file route's bandwidth (a user's photo comes down at this rate);
- `upload_bps`: how fast an uploaded file reaches Telegram; the answer comes once all of it has
  (the client's write may end sooner, into the kernel's buffers, and its read timeout then runs
  while the rest drains: that is how real uploads time out, too).

Faults that are not timing (429 with retry_after, 5xx, answers that come after the server kept
the message) are injected per test (`FakeTelegram.fault`, `FakeTelegram.late`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Link:
    name: str
    call_s: float = 0.0
    get_file_s: float = 0.0
    download_bps: float = 0.0  # 0: instant
    upload_bps: float = 0.0  # 0: instant

    def download_s(self, size: int) -> float:
        return size / self.download_bps if self.download_bps else 0.0

    def upload_s(self, size: int) -> float:
        return size / self.upload_bps if self.upload_bps else 0.0


INSTANT = Link("instant")
SLOW_LINK = Link(
    "slow link", call_s=0.05, get_file_s=0.3, download_bps=1_000_000, upload_bps=256_000
)
PROFILES = (INSTANT, SLOW_LINK)


@dataclass
class Late:
    """The next `times` calls of `method` (any chat, or `chat_id`) are carried out, the message
    kept, and answered only `after_s` later: the ambiguous timeout, where the bot cannot tell
    whether Telegram has its message."""

    method: str
    after_s: float
    times: int
    chat_id: int | None = None
