"""How long a style press lives only in the bot's memory (issue 11, "a press is never lost";
issue 21, the write-ahead of updates).

With long polling, Telegram forgets an update once the bot asks getUpdates with a higher offset,
whether or not the bot has acted on it, and PTB asks again as soon as a batch is queued. Before
issue 21 a press was confirmed almost at once while its job existed only once `submit` had
returned (the callback is answered right after submit, so answerCallbackQuery marks that
moment): a kill -9 between the two lost the press. Now each update is written to the bot's store
(bot.updates) before PTB may confirm it; this bench checks that from the outside.

The bot runs as a real `orsay bot` process (embedded queue, stub painter) against the fake Bot
API server from tests/doubles, here. Per press, from the server's clock, measured from the
getUpdates response that delivered the press:
  (a) confirm: the next getUpdates whose offset passes it (Telegram may drop it now);
  (b) job:     answerCallbackQuery for it (submit has returned: the job exists);
  window = (b) - (a): how long the press was confirmed before its job existed;
  on disk: whether, at the moment of (a), the bot's store already held the update (read by
  this process from the bot's SQLite file). A press confirmed and not on disk is one a kill -9
  at that moment would lose.

    .venv/bin/python bench/press_window.py [--presses 30] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import pct, photo  # noqa: E402
from engine.settings import child_env, load_settings  # noqa: E402
from tests.doubles.fake_telegram import TOKEN, FakeTelegram  # noqa: E402


def record_deliveries(server: FakeTelegram) -> dict[int, float]:
    """update_id -> when the getUpdates response carrying it left the server."""
    delivered: dict[int, float] = {}
    original = server._m_getUpdates

    async def get_updates(p: dict[str, Any], f: dict[str, bytes]) -> Any:
        result = await original(p, f)
        now = time.monotonic()
        for update in result:
            delivered.setdefault(int(update["update_id"]), now)
        return result

    server._m_getUpdates = get_updates  # type: ignore[method-assign]
    return delivered


def record_durability(server: FakeTelegram, store: Path) -> dict[int, bool]:
    """update_id -> whether the bot's store held it when a getUpdates confirmed it."""
    durable: dict[int, bool] = {}

    def check(updates: list[dict[str, Any]]) -> None:
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
        try:
            for update in updates:
                row = db.execute(
                    "SELECT 1 FROM updates WHERE update_id = ?", (update["update_id"],)
                ).fetchone()
                durable[int(update["update_id"])] = row is not None
        finally:
            db.close()

    server.on_confirm.append(check)
    return durable


def first_call(server: FakeTelegram, method: str, match: Any) -> float | None:
    return next((c.at for c in server.calls if c.method == method and match(c.params)), None)


async def run(args: argparse.Namespace) -> int:
    server = FakeTelegram()
    await server.start()
    delivered = record_deliveries(server)
    shared = load_settings().shared_dir
    data = Path(tempfile.mkdtemp(prefix="orsay-press-window-"))
    durable = record_durability(server, data / "bot" / "bot.sqlite3")
    env = child_env(
        TELEGRAM_BOT_TOKEN=TOKEN,
        ORSAY_BOT_API_URL=server.url,
        ORSAY_DATA_DIR=str(data),
        ORSAY_GALLERY_DIR=str(shared / "artworks"),
        ORSAY_PAINTER="stub",
        ORSAY_TELEGRAM_RATE="0",
        ORSAY_LOG_LEVEL="WARNING",
    )
    proc = subprocess.Popen([sys.executable, "-m", "orsay", "bot"], cwd=REPO, env=env)
    confirm: list[float] = []
    job: list[float] = []
    window: list[float] = []
    pressed: list[int] = []
    photos = [photo(i) for i in range(args.presses)]
    slot = asyncio.Semaphore(args.concurrency)
    try:
        await server.wait_for(lambda: server.calls_to("getUpdates"), timeout=60)

        async def one(i: int) -> None:
            async with slot:
                user = server.user(200_000 + i)
                user.photo(photos[i])
                menu = await server.wait_for(lambda: user.menus(), 30)
                await asyncio.sleep(random.Random(i).uniform(0.0, 0.3))  # off the poll's beat
                query_id = user.press(menu[0], "rnd")
                update_id = server.last_update_id
                pressed.append(update_id)

                def seen() -> tuple[float, float] | None:
                    a = first_call(
                        server, "getUpdates", lambda p: int(p.get("offset") or 0) > update_id
                    )
                    b = first_call(
                        server,
                        "answerCallbackQuery",
                        lambda p: p.get("callback_query_id") == query_id,
                    )
                    return (a, b) if a is not None and b is not None else None

                a, b = await server.wait_for(seen, 30)
                out = delivered[update_id]
                confirm.append(a - out)
                job.append(b - out)
                window.append(b - a)

        await asyncio.gather(*(one(i) for i in range(args.presses)))
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 30)
        await server.stop()
    print(f"presses={args.presses} concurrency={args.concurrency} (ms after the press's delivery)")
    for name, values in (
        ("(a) confirmed by next getUpdates", confirm),
        ("(b) job exists (callback answer)", job),
        ("window (b)-(a), confirmed, no job yet", window),
    ):
        p50, p95, top = (1000 * v for v in (pct(values, 0.5), pct(values, 0.95), max(values)))
        print(f"{name}: p50={p50:.1f}  p95={p95:.1f}  max={top:.1f}")
    print(f"presses confirmed before their job existed (window > 0): {sum(w > 0 for w in window)}")
    lost = sum(not durable.get(u, False) for u in pressed)
    print(f"presses confirmed while not on disk (a kill -9 then loses them): {lost}/{len(pressed)}")
    return 0 if lost == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presses", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=1, help="users pressing at once")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
