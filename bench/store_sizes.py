"""The stores' sizes under a long run: N updates through one bot, and the rows in each table of
the bot's store and of the embedded queue after every checkpoint (issue 30, finding 6). With the
stores pruned while the bot runs the rows stay at what the age bounds hold of the traffic, however
many updates went through; without (`--no-prune`: the bot as it was, pruning only at start) they
grow with the count.

The real application (bot.app.build_application, PTB polling over HTTP) runs in this process
against the fake Bot API of tests/doubles on loopback, with the embedded queue and the stub
painter. Most updates are /start or plain text, from a fixed population of users (the `users`
table grows with users, not with updates); every `--journey-every`-th is a photo whose style
menu is then pressed (🎲), a job painted and delivered. Updates go in batches, each answered
before the next (the bot's own pace); a checkpoint counts the rows once its updates are handled.

Days do not fit in a bench, so the bounds are scaled down, in this process only: the age of
handled updates' ids and of delivered jobs' rows (bot.store.KEEP_HANDLED_S), of the queue's
delivered records and job keys (KEEP_RECORDS_S, KEEP_KEYS_S; the keys no shorter than the
updates' ids, as in the real bounds), and the two prune periods (bot.app.PRUNE_EVERY_S,
engine.queue.embedded.store.PURGE_EVERY_S) are all `--keep` and `--prune-every` seconds.

    .venv/bin/python bench/store_sizes.py [--updates 10000] [--keep 5] [--prune-every 1]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import bot.app  # noqa: E402
import bot.store  # noqa: E402
import engine.queue.embedded.store as queue_store  # noqa: E402
from bench.common import photo  # noqa: E402
from bot.config import load_settings  # noqa: E402
from engine.queue.stub_painter import StubPainter  # noqa: E402
from tests.doubles.fake_telegram import TOKEN, FakeTelegram  # noqa: E402

BOT_TABLES = ("updates", "job_messages", "users", "conversations")
QUEUE_TABLES = ("jobs", "job_keys", "blobs", "job_blobs")
BATCH = 100  # updates pushed before waiting for their answers
JOURNEY_USERS = 20  # who send photos, in turn


def scale_bounds(keep_s: float, every_s: float) -> None:
    """The age bounds and prune periods, for this process (module docstring)."""
    bot.store.KEEP_HANDLED_S = keep_s
    bot.app.PRUNE_EVERY_S = every_s
    queue_store.KEEP_RECORDS_S = queue_store.KEEP_KEYS_S = keep_s
    queue_store.PURGE_EVERY_S = every_s


def count(path: Path, tables: tuple[str, ...]) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        return {t: int(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in tables}
    finally:
        db.close()


class Traffic:
    """What the users send: text from a fixed population, and every `journey_every`-th update
    a photo journey."""

    def __init__(self, server: FakeTelegram, users: int, journey_every: int) -> None:
        self.server = server
        self.users = [server.user(500_000 + i) for i in range(users)]
        self.journey_every = journey_every
        self.journey_users = [server.user(600_000 + i) for i in range(JOURNEY_USERS)]
        self.sent = 0  # updates pushed
        self.journeys: list[asyncio.Task[None]] = []
        self.photos = [photo(i) for i in range(8)]  # made before the clock starts

    def push(self, n: int) -> None:
        for _ in range(n):
            user = self.users[self.sent % len(self.users)]
            if self.sent % self.journey_every == self.journey_every - 1:
                self.journeys.append(asyncio.create_task(self.journey(self.sent)))
            elif self.sent % 2:
                user.text("/start")
            else:
                user.text("hello there")
            self.sent += 1

    async def journey(self, n: int) -> None:
        """A photo, its menu pressed, the result: two updates (the press counts in `sent`).
        A batch's journeys have users of their own (one job at a time each)."""
        user = self.journey_users[n // self.journey_every % len(self.journey_users)]
        menus, results = len(user.menus()), len(user.messages("photo"))
        user.photo(self.photos[n % len(self.photos)])
        menu = await user.wait_menu(after=menus, timeout=60)
        user.press(menu, "rnd")
        self.sent += 1
        await user.wait_result(count=results + 1, timeout=60)

    async def settled(self, svc: Any) -> None:
        """Every update so far fetched and handled, every journey delivered."""
        await self.server.wait_for(lambda: not self.server._updates, timeout=120)
        await asyncio.gather(*self.journeys)
        self.journeys = []
        deadline = time.monotonic() + 120
        while await svc.store.unhandled() or svc.follower.tasks:
            assert time.monotonic() < deadline, "the bot did not catch up"
            await asyncio.sleep(0.05)


async def run(args: argparse.Namespace) -> dict[int, dict[str, int]]:
    if not args.no_prune:
        scale_bounds(args.keep, args.prune_every)
    server = FakeTelegram()
    await server.start()
    data = Path(tempfile.mkdtemp(prefix="orsay-store-sizes-"))
    settings = load_settings(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "ORSAY_BOT_API_URL": server.url,
            "ORSAY_DATA_DIR": str(data),
            "ORSAY_GALLERY_DIR": str(REPO / "tests" / "data" / "artworks"),
            "ORSAY_TELEGRAM_RATE": "0",
            "ORSAY_SHUTDOWN_GRACE": "0.2",
        }
    )
    app = bot.app.build_application(settings, painter=StubPainter())
    traffic = Traffic(server, args.users, args.journey_every)
    sizes: dict[int, dict[str, int]] = {}
    checkpoints = sorted({args.updates * q // 4 for q in (1, 2, 4)})
    began = time.monotonic()
    try:
        async with bot.app.running(app):
            svc = app.bot_data["services"]
            for checkpoint in checkpoints:
                while traffic.sent < checkpoint:
                    traffic.push(min(BATCH, checkpoint - traffic.sent))
                    await traffic.settled(svc)
                    assert time.monotonic() - began < args.timeout, "past --timeout"
                bot_rows = count(data / "bot" / "bot.sqlite3", BOT_TABLES)
                sizes[traffic.sent] = bot_rows | count(data / "queue.sqlite3", QUEUE_TABLES)
                elapsed = time.monotonic() - began
                rate = traffic.sent / elapsed
                print(f"{traffic.sent:>6} updates {elapsed:6.1f} s ({rate:.0f}/s)", end="  ")
                print(" ".join(f"{table}={rows}" for table, rows in sizes[traffic.sent].items()))
    finally:
        await server.stop()
        shutil.rmtree(data, ignore_errors=True)
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=10_000)
    parser.add_argument("--keep", type=float, default=5.0, help="age bound, s (days, scaled)")
    parser.add_argument("--prune-every", type=float, default=1.0, help="prune period, s")
    parser.add_argument("--users", type=int, default=200, help="users sending text")
    parser.add_argument("--journey-every", type=int, default=50, help="one photo+press per N")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after, s")
    parser.add_argument(
        "--no-prune", action="store_true", help="the real bounds (2 days): nothing goes in a run"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    bounds = f"keep {args.keep:g} s, pruned every {args.prune_every:g} s"
    print(f"{args.updates} updates, {'the real bounds (2 days)' if args.no_prune else bounds}")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
