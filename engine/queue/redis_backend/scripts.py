"""The Lua scripts behind every change to the Redis queue that must be atomic, one file each in
lua/ (package data, read with importlib.resources).

Accepting a job (limits check + insert), leaving the line (and moving the user's later jobs up a
rank), claiming a job with a lease (and a batch's further jobs), finishing and handing back: each
is one script, so no other client ever sees half of it. Each script names its KEYS and ARGV in
locals at its top and is given every key it touches (key names come from keys.py; no script
builds one, as Redis Cluster requires). What they share is put in front of them here: the numbers
of keys.py as Lua constants, and the helpers of line.lua (the fair line) and take.lua (a claim).
Event payloads written by scripts use cjson, which reads back through codec.decode_event.
"""

from __future__ import annotations

from importlib import resources

from engine.queue.redis_backend import keys as k

# keys.py's numbers, as the scripts name them
CONSTANTS = {
    "RANK_SPAN_MS": k.RANK_SPAN_MS,
    "MAX_RANK": k.MAX_RANK,
    "EVENTS_MAXLEN": k.EVENTS_MAXLEN,
    "LINE_MAXLEN": k.LINE_MAXLEN,
    "RECENT": k.RECENT,
    "RECENT_WAITS": k.RECENT_WAITS,
    "DAY_KEY_TTL_S": k.DAY_KEY_TTL_S,
    "SUBMITTED_TTL_S": k.SUBMITTED_TTL_S,
}


def lua(name: str) -> str:
    """The text of lua/<name>.lua."""
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text("utf-8")


def script(name: str, *helpers: str) -> str:
    """lua/<name>.lua as Redis runs it: the constants, then the helper files, then the script."""
    constants = "".join(f"local {key} = {value}\n" for key, value in CONSTANTS.items())
    return "\n".join([constants, *(lua(helper) for helper in helpers), lua(name)])


SUBMIT = script("submit", "line")
CANCEL = script("cancel", "line")
CLAIM = script("claim", "line", "take")
CLAIM_MORE = script("claim_more", "line", "take")
FINISH = script("finish")
REQUEUE = script("requeue", "line")
RELEASE = script("release")
