"""engine.style_transfer.stylize_batch: a job painted in a batch paints what it paints alone, hears
only its own events, and can be cancelled without stopping the others."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from PIL import Image, ImageOps

from engine.errors import Cancelled
from engine.options import BatchJob, ProgressEvent, StyleInput, StylizeOptions
from engine.style_transfer import stylize, stylize_batch

STEPS = 24
SIDE = 48


def _jobs(photo: Image.Image, painting: Image.Image, base: StylizeOptions) -> list[BatchJob]:
    """Four jobs of one bucket that differ in photo, painting, strength, colour mode, init, seed."""
    tuning = dataclasses.replace(base.tuning, first_look_steps=0)
    base = dataclasses.replace(base, size=SIDE, scales=(SIDE,), steps=STEPS, tuning=tuning)
    photos = [photo, ImageOps.mirror(photo), ImageOps.invert(photo), ImageOps.flip(photo)]
    paintings = [painting, painting.rotate(90), ImageOps.posterize(painting, 2), painting]
    variants = [
        {"strength": 0.5},
        {"strength": 0.8, "preserve_colors": "luminance", "seed": 3},
        {"strength": 0.2, "preserve_colors": "histogram", "init": "content"},
        {"strength": 0.6, "init": "noise", "seed": 11},
    ]
    return [
        BatchJob(p, [StyleInput(s)], dataclasses.replace(base, **v))
        for p, s, v in zip(photos, paintings, variants, strict=True)
    ]


def _listen(job: BatchJob) -> tuple[BatchJob, list[ProgressEvent]]:
    events: list[ProgressEvent] = []
    return dataclasses.replace(job, progress=events.append), events


def _step_losses(events: list[ProgressEvent]) -> list[float]:
    """The loss after each step (a scale's closing event repeats its last step with the best
    loss; the first event of each step is the step's own)."""
    losses: dict[int, float] = {}
    for e in events:
        if e.stage == "optimizing" and e.loss is not None and e.step:
            losses.setdefault(e.step, e.loss)
    return [losses[s] for s in sorted(losses)]


@pytest.mark.slow
@pytest.mark.timeout(900)  # solo + batched runs, B = 1..4: ~4 min on a loaded 2-core box
def test_a_job_in_a_batch_follows_its_path_alone(
    photo: Image.Image, painting: Image.Image, tiny_options: StylizeOptions
) -> None:
    jobs = _jobs(photo, painting, tiny_options)
    alone = []
    for job in jobs:
        listened, events = _listen(job)
        result = stylize(listened.content, listened.styles, listened.options, listened.progress)
        alone.append((_step_losses(events), result.report["final_losses"]["total"]))
    for size in range(1, len(jobs) + 1):
        listened = [_listen(job) for job in jobs[:size]]
        results = stylize_batch([job for job, _ in listened])
        for (losses, final), (_, events), result in zip(alone, listened, results, strict=False):
            assert not isinstance(result, BaseException)
            batched = _step_losses(events)
            assert len(batched) == len(losses) == STEPS
            assert batched[:20] == pytest.approx(losses[:20], rel=1e-4)
            assert result.report["final_losses"]["total"] == pytest.approx(final, rel=0.01)
            assert result.report["batch_size"] == size
            assert events[0].stage == "loading" and events[-1].stage == "done"


def test_cancelling_one_job_leaves_the_others_running(
    photo: Image.Image, painting: Image.Image, tiny_options: StylizeOptions
) -> None:
    jobs = [_listen(job) for job in _jobs(photo, painting, tiny_options)[:3]]
    cancel = threading.Event()

    def cancel_at_five(event: ProgressEvent, seen: list[ProgressEvent] = jobs[1][1]) -> None:
        seen.append(event)
        if event.step == 5:
            cancel.set()

    jobs[1] = (dataclasses.replace(jobs[1][0], progress=cancel_at_five, cancel=cancel), jobs[1][1])
    results = stylize_batch([job for job, _ in jobs])
    assert isinstance(results[1], Cancelled)
    assert max(e.step for e in jobs[1][1]) == 5
    for i in (0, 2):
        assert not isinstance(results[i], BaseException)
        assert max(e.step for e in jobs[i][1]) == STEPS
        assert jobs[i][1][-1].stage == "done"


def test_incompatible_jobs_are_refused(
    photo: Image.Image, painting: Image.Image, tiny_options: StylizeOptions
) -> None:
    a, b = _jobs(photo, painting, tiny_options)[:2]
    with pytest.raises(ValueError, match="bucket"):
        stylize_batch([a, dataclasses.replace(b, options=dataclasses.replace(b.options, size=40))])


def test_a_bad_request_fails_alone(
    photo: Image.Image, painting: Image.Image, tiny_options: StylizeOptions
) -> None:
    good, bad = _jobs(photo, painting, tiny_options)[:2]
    results = stylize_batch([good, dataclasses.replace(bad, styles=[])])
    assert not isinstance(results[0], BaseException)
    assert isinstance(results[1], ValueError)
