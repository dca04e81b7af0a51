"""engine.report: a job's events and previews exist only when someone listens to them."""

from __future__ import annotations

import time

import torch
from PIL import Image

from engine.job import Job
from engine.options import BatchJob, ProgressEvent, StyleInput, StylizeOptions
from engine.report import Reporter


def _lane(photo: Image.Image, painting: Image.Image, heard: list[ProgressEvent] | None):  # type: ignore[no-untyped-def]
    listener = heard.append if heard is not None else None
    job = Job.prepare(BatchJob(photo, [StyleInput(painting)], StylizeOptions(size=64), listener))
    shown: list[torch.Tensor] = []

    def show(best: torch.Tensor) -> Image.Image:
        shown.append(best)
        return Image.new("RGB", (4, 4))

    lane = Reporter(job, time.perf_counter()).lane(0, 64, show)
    return lane, shown


def test_a_job_nobody_listens_to_gets_no_previews_or_events(
    photo: Image.Image, painting: Image.Image
) -> None:
    """A preview costs a device read and a picture to encode; the loop builds one only for a
    lane that asks for it at that step, and a job without a listener asks for none."""
    lane, shown = _lane(photo, painting, None)
    assert lane.preview_at == frozenset()
    lane.on_step(5, 1.0, torch.zeros(1, 3, 4, 4))
    assert shown == []


def test_a_listened_job_gets_its_previews_and_events(
    photo: Image.Image, painting: Image.Image
) -> None:
    heard: list[ProgressEvent] = []
    lane, shown = _lane(photo, painting, heard)
    assert lane.preview_at  # a third and two thirds in
    step = min(lane.preview_at)
    lane.on_step(step, 1.0, torch.zeros(1, 3, 4, 4))
    assert len(shown) == 1 and heard[-1].preview is not None and heard[-1].step == step
