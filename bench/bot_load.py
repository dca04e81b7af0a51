"""Load on the bot: N simulated users each send a photo and pick a painting.

The bot runs as a real `orsay bot` process (embedded queue, stub painter) against the fake Bot
API server from tests/bot, which runs here with the simulated users. Reported, from the server's
clock: time to first reply to the photo (the painting keyboard) and to the button press
(answerCallbackQuery), p50/p99, lost jobs (a choice that never got its result), and the bot's
event-loop lag: inside the bot process a 10 ms ticker records how late each tick wakes up (what
any update or delivery waits behind blocking work on the loop), from start-up until SIGTERM.

    .venv/bin/python bench/bot_load.py [--users 200] [--rate 20] [--telegram-rate 30]

`--rate` spreads arrivals (Poisson, users/s; 0 = all at once). `--telegram-rate` is the bot's
ORSAY_TELEGRAM_RATE, its global send pace (Telegram's 30 msg/s; 0 = off).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
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
from tests.doubles.fake_telegram import TOKEN, Call, FakeTelegram  # noqa: E402

LAG_TICK_S = 0.01


async def _tick(lags: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(LAG_TICK_S)
        lags.append(max(0.0, loop.time() - before - LAG_TICK_S))


def serve_bot(lag_file: str) -> int:
    """The bot process of this bench: `orsay bot` with a lag ticker started by its post_init and
    its samples written to `lag_file` by its post_stop (bot.app looks both hooks up at build)."""
    import bot.app
    from orsay.cli import main as orsay_main

    lags: list[float] = []
    ticker: list[asyncio.Task[None]] = []
    on_startup, on_stop = bot.app.on_startup, bot.app.on_stop

    async def started(app: Any) -> None:
        await on_startup(app)
        ticker.append(asyncio.get_running_loop().create_task(_tick(lags)))

    async def stopping(app: Any) -> None:
        for task in ticker:
            task.cancel()
        Path(lag_file).write_text(json.dumps(lags))
        await on_stop(app)

    bot.app.on_startup, bot.app.on_stop = started, stopping
    return orsay_main(["bot"])


class Watcher:
    """Resolves per-user futures from the server's call stream (cheaper than polling state)."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.menu: dict[int, asyncio.Future[Call]] = {}
        self.answer: dict[str, asyncio.Future[Call]] = {}
        self.result: dict[int, asyncio.Future[Call]] = {}

    def future(self, table: dict, key: object) -> asyncio.Future[Call]:  # type: ignore[type-arg]
        return table.setdefault(key, self.loop.create_future())

    def __call__(self, call: Call) -> None:
        if call.status != 200:
            return
        chat = call.params.get("chat_id")
        if call.method == "sendMessage" and "rnd" in str(call.params.get("reply_markup")):
            fut = self.future(self.menu, chat)
        elif call.method == "answerCallbackQuery":
            fut = self.future(self.answer, call.params.get("callback_query_id"))
        elif call.method == "sendPhoto" and call.params.get("caption"):
            fut = self.future(self.result, chat)
        else:
            return
        if not fut.done():
            fut.set_result(call)


async def run(args: argparse.Namespace) -> int:
    server = FakeTelegram()
    await server.start()
    watcher = Watcher()
    server.listeners.append(watcher)
    shared = load_settings().shared_dir
    data = Path(tempfile.mkdtemp(prefix="orsay-bot-load-"))
    env = child_env(
        TELEGRAM_BOT_TOKEN=TOKEN,
        ORSAY_BOT_API_URL=server.url,
        ORSAY_DATA_DIR=str(data),
        ORSAY_GALLERY_DIR=str(shared / "artworks"),
        ORSAY_PAINTER="stub",
        ORSAY_TELEGRAM_RATE=str(args.telegram_rate),
        ORSAY_LOG_LEVEL="WARNING",
    )
    lag_file = data / "loop-lag.json"
    profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
    cmd = [sys.executable, *profile, str(Path(__file__).resolve()), "--serve-bot", str(lag_file)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env)
    try:
        await server.wait_for(lambda: server.calls_to("getUpdates"), timeout=60)
        rng = random.Random(0)
        photo_rtt: list[float] = []
        press_rtt: list[float] = []
        lost = 0

        photos = [photo(i) for i in range(args.users)]

        async def user(i: int, delay: float) -> None:
            nonlocal lost
            await asyncio.sleep(delay)
            u = server.user(100_000 + i)
            sent = time.monotonic()
            u.photo(photos[i])
            menu_call = await asyncio.wait_for(watcher.future(watcher.menu, u.id), 60)
            photo_rtt.append(menu_call.at - sent)
            menu = u.menus()[0]
            pressed = time.monotonic()
            query_id = u.press(menu, "rnd")
            answer = await asyncio.wait_for(watcher.future(watcher.answer, query_id), 60)
            press_rtt.append(answer.at - pressed)
            try:
                await asyncio.wait_for(watcher.future(watcher.result, u.id), args.timeout)
            except TimeoutError:
                lost += 1

        delays, t = [], 0.0
        for _ in range(args.users):
            delays.append(t)
            if args.rate > 0:
                t += rng.expovariate(args.rate)
        started = time.monotonic()
        await asyncio.gather(*(user(i, d) for i, d in enumerate(delays)))
        wall = time.monotonic() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 30)
        await server.stop()
    mode = f"{args.rate:g}/s" if args.rate else "burst"
    print(f"users={args.users} arrivals={mode} telegram_rate={args.telegram_rate}")
    first = photo_rtt + press_rtt
    for name, values in (
        ("photo -> keyboard ", photo_rtt),
        ("button -> answer  ", press_rtt),
        ("first reply (both)", first),
    ):
        p50, p99, top = (1000 * v for v in (pct(values, 0.5), pct(values, 0.99), max(values)))
        print(f"{name} p50={p50:.0f} ms  p99={p99:.0f} ms  max={top:.0f} ms")
    lags = json.loads(lag_file.read_text()) if lag_file.exists() else []
    if lags:
        p50, p99, top = (1000 * v for v in (pct(lags, 0.5), pct(lags, 0.99), max(lags)))
        late = sum(lag > 0.05 for lag in lags)
        print(
            f"bot loop lag      p50={p50:.1f} ms  p99={p99:.1f} ms  max={top:.0f} ms  "
            f"ticks>50ms={late}/{len(lags)}"
        )
    print(f"results {args.users - lost}/{args.users}, lost={lost}, wall {wall:.1f} s")
    return 0 if lost == 0 else 1


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-bot":
        return serve_bot(sys.argv[2])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="arrivals per second, 0 = burst")
    parser.add_argument("--telegram-rate", type=int, default=30)
    parser.add_argument("--profile", help="write a cProfile of the bot process here")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a result")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
