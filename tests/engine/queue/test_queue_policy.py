"""Fair order, ETA and the wire format, checked by hand."""

from __future__ import annotations

import argparse

import pytest

from engine.queue import JobEvent, JobOptions, JobRequest, StyleChoice
from engine.queue.codec import (
    decode_event,
    decode_request,
    encode_event,
    encode_request,
    strip_request,
)
from engine.queue.policy import DEFAULT_RUN_S, RunTimes, eta_s, fair_order


def test_fair_order_is_round_robin_by_user() -> None:
    submitted = [("a1", 1), ("a2", 1), ("a3", 1), ("b1", 2), ("c1", 3), ("b2", 2)]
    assert fair_order(submitted) == ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert fair_order([]) == []


def test_run_times_moving_average_and_default() -> None:
    runs = RunTimes()
    assert runs.mean() is None and runs.estimate() == DEFAULT_RUN_S
    for seconds in [100.0] * 5 + [10.0] * 20:  # only the last 20 runs count
        runs.add(seconds)
    assert runs.estimate() == pytest.approx(10.0)


def test_eta_counts_rounds_ahead_and_the_job_in_progress() -> None:
    assert eta_s(1, 10.0) == 15.0  # half of the running job, then its own run
    assert eta_s(3, 10.0) == 35.0
    assert eta_s(3, 10.0, workers=2) == 25.0
    assert eta_s(1, 10.0, busy=False) == 10.0


def test_request_and_event_round_trip_binary_safely() -> None:
    request = JobRequest(
        user_id=5,
        chat_id=-100,
        content=bytes(range(256)),
        styles=[StyleChoice(slug="starry", weight=0.7), StyleChoice(image=b"\x00\xff", weight=0.3)],
        options=JobOptions(size=256, strength="strong", preserve_colors=True, quality="fast"),
        meta={"lang": "fr", "message_id": 42},
    )
    assert decode_request(encode_request(request)) == request
    stripped = decode_request(encode_request(strip_request(request)))
    assert stripped.content == b"" and stripped.styles[1].image is None
    assert stripped.styles[0].slug == "starry" and stripped.meta == request.meta
    event = JobEvent(
        "j", "progress", scale=1, scales=2, step=3, total=4, fraction=0.4, preview=b"\xff"
    )
    assert decode_event(encode_event(event)) == event


def test_worker_refuses_an_embedded_queue(capsys: pytest.CaptureFixture[str]) -> None:
    from engine.commands import worker
    from engine.settings import load_settings

    settings = load_settings({})
    parser = argparse.ArgumentParser()
    worker.register(parser.add_subparsers(), settings)
    args = parser.parse_args(["worker", "--queue", "sqlite:///x.db", "--stub-painter"])
    assert args.run(args, settings) == 2
    assert "needs a Redis queue" in capsys.readouterr().err
