"""`stylize` end to end on tiny pictures: output, progress, determinism, cancellation, cache,
out-of-memory fallback, and one quality check with the trained VGG16 fixture."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from engine import style_cache, style_transfer
from engine.errors import Cancelled
from engine.job import Job
from engine.model import VGGFeatures
from engine.options import BatchJob, ProgressEvent, StyleInput, StylizeOptions
from engine.start import start_image
from engine.style_transfer import stylize
from tests.engine.tolerance import worst_case


def _count_forwards(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Record the input shape of every network forward pass."""
    calls: list[tuple[int, ...]] = []
    original = VGGFeatures.forward

    def counting(self: VGGFeatures, image: torch.Tensor, layers):  # type: ignore[no-untyped-def]
        calls.append(tuple(image.shape))
        return original(self, image, layers)

    monkeypatch.setattr(VGGFeatures, "forward", counting)
    return calls


def test_end_to_end_output_progress_and_report(
    photo: Image.Image, painting: Image.Image, tiny_options: StylizeOptions, test_device: str
) -> None:
    events: list[ProgressEvent] = []
    result = stylize(photo, [StyleInput(painting)], tiny_options, progress=events.append)
    assert result.image.size == (64, 43)  # 96x64 photo at long side 64, aspect kept
    assert result.image.mode == "RGB"
    stages = [e.stage for e in events]
    assert stages[0] == "loading" and stages[-1] == "done"
    fractions = [e.fraction for e in events if e.stage == "optimizing"]
    assert fractions == sorted(fractions) and events[-1].fraction == 1.0
    previews = [e for e in events if e.preview is not None]
    # A third and two thirds into each scale (steps 2 and 4 of 6), then at its end.
    shown = [(e.scale_index, e.step, e.preview.size) for e in previews]  # type: ignore[union-attr]
    assert shown == [(1, s, (48, 32)) for s in (2, 4, 6)] + [(2, s, (64, 43)) for s in (2, 4, 6)]
    assert all(e.eta_s is not None and e.eta_s >= 0 for e in events if e.stage == "optimizing")

    report = json.loads(json.dumps(result.report))  # JSON-able
    assert [s["size"] for s in report["scales"]] == [48, 64]
    assert all(s["steps_run"] == 6 for s in report["scales"])
    losses = report["final_losses"]
    assert set(losses) == {"content", "style", "tv", "total"}
    w = report["loss_weights"]
    # The report's total is c·content + s·style + t·tv in fp32, elementwise: the weights'
    # rounding to fp32, the products and the two sums, 4 roundings of terms >= 0 (γ_4 = 2.4e-7)
    assert losses["total"] == pytest.approx(
        w["content_weight"] * losses["content"]
        + w["style_weight"] * losses["style"]
        + w["tv_weight"] * losses["tv"],
        rel=worst_case(4),
    )
    assert report["device"].startswith(test_device) and report["precision"] == "fp32"
    assert report["peak_memory"]["bytes"] > 0
    assert report["wall_s"] > 0 and report["oom_fallbacks"] == []


def _channel_means(image: Image.Image, side: int) -> torch.Tensor:
    small = image.convert("RGB").resize((side, side), Image.Resampling.BILINEAR)
    return pil_to_tensor(small).float().mean(dim=(1, 2)) / 255


@pytest.mark.parametrize("init", ["gray", "noise", "content", "palette"])
def test_inits_start_where_they_say(
    photo: Image.Image,
    painting: Image.Image,
    tiny_options: StylizeOptions,
    init: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    optimized: list[torch.Tensor] = []  # images the optimizer evaluates (those needing a grad)
    original = VGGFeatures.forward

    def recording(self: VGGFeatures, image: torch.Tensor, layers):  # type: ignore[no-untyped-def]
        if image.requires_grad:
            optimized.append(image.detach().clone())
        return original(self, image, layers)

    monkeypatch.setattr(VGGFeatures, "forward", recording)
    tiny_options.init = init  # type: ignore[assignment]
    tiny_options.scales, tiny_options.steps = (48,), 1
    stylize(photo, [StyleInput(painting)], tiny_options)
    start = optimized[0]
    means = start.mean(dim=(0, 2, 3))
    if init == "gray":
        assert (start == 0.5).all()
    elif init == "noise":
        assert start.std() > 0.25  # uniform noise in [0, 1] has std ~0.29
    elif init == "content":
        assert torch.allclose(means, _channel_means(photo, 48), atol=0.02)
    else:  # the photo's layout in the painting's colours
        assert torch.allclose(means, _channel_means(painting, 48), atol=0.03)
        assert not torch.allclose(means, _channel_means(photo, 48), atol=0.05)


def test_palette_init_keeps_the_photo_when_colours_are_preserved(
    photo: Image.Image, painting: Image.Image, tiny_options: StylizeOptions
) -> None:
    tiny_options.preserve_colors = "histogram"
    job = Job.prepare(BatchJob(photo, [StyleInput(painting)], tiny_options))
    content = job.content_at(48, torch.device("cpu"))
    start = start_image(
        content,
        init=tiny_options.init,
        preserve_colors=tiny_options.preserve_colors,
        palette=job.main_style(),
        generator=job.generator,
    )
    assert torch.equal(start, content)


def test_same_seed_same_picture(
    photo: Image.Image, painting: Image.Image, tiny_options: StylizeOptions
) -> None:
    tiny_options.init = "noise"
    tiny_options.scales, tiny_options.steps = (48,), 4
    a = stylize(photo, [StyleInput(painting)], tiny_options).image
    b = stylize(photo, [StyleInput(painting)], tiny_options).image
    tiny_options.seed = 8
    c = stylize(photo, [StyleInput(painting)], tiny_options).image
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_optimizers_lower_the_loss(
    photo: Image.Image, painting: Image.Image, tiny_options: StylizeOptions, optimizer: str
) -> None:
    tiny_options.optimizer = optimizer  # type: ignore[assignment]
    tiny_options.scales, tiny_options.steps = (48,), 12
    events: list[ProgressEvent] = []
    stylize(photo, [StyleInput(painting)], tiny_options, progress=events.append)
    losses = [e.loss for e in events if e.stage == "optimizing" and e.loss is not None]
    assert min(losses[1:]) < 0.8 * losses[0]


def test_cancel_stops_within_one_step(
    photo: Image.Image,
    painting: Image.Image,
    tiny_options: StylizeOptions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cancel = threading.Event()
    calls = _count_forwards(monkeypatch)
    after_cancel: list[int] = []

    def on_progress(event: ProgressEvent) -> None:
        if event.stage == "optimizing" and event.step == 3 and not cancel.is_set():
            cancel.set()
            after_cancel.append(len(calls))

    tiny_options.steps = 50
    with pytest.raises(Cancelled):
        stylize(photo, [StyleInput(painting)], tiny_options, progress=on_progress, cancel=cancel)
    assert after_cancel, "cancel was never requested"
    assert len(calls) == after_cancel[0]  # not one more network evaluation after the request


def test_cancel_from_another_thread_inside_lbfgs(
    photo: Image.Image,
    painting: Image.Image,
    tiny_options: StylizeOptions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker thread sets the event while a closure is running: that is the last evaluation."""
    cancel = threading.Event()
    calls = _count_forwards(monkeypatch)
    original = VGGFeatures.forward
    seen: list[int] = []

    def slow(self: VGGFeatures, image: torch.Tensor, layers):  # type: ignore[no-untyped-def]
        if len(calls) == 6 and not cancel.is_set():
            threading.Thread(target=cancel.set).start()
            threading.Event().wait(0.2)
            seen.append(len(calls))
        return original(self, image, layers)

    monkeypatch.setattr(VGGFeatures, "forward", slow)
    _ = calls  # the counting wrapper is replaced; count through `seen` and the closure instead
    tiny_options.steps = 50
    with pytest.raises(Cancelled):
        stylize(photo, [StyleInput(painting)], tiny_options, cancel=cancel)
    assert seen == [6]


def test_style_targets_are_cached_in_memory_and_on_disk(
    photo: Image.Image,
    painting: Image.Image,
    tiny_options: StylizeOptions,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    tiny_options.style_cache_dir = tmp_path / "style-cache"
    calls = _count_forwards(monkeypatch)
    style = StyleInput(painting, cache_key="stripes@abc")
    first = stylize(photo, [style], tiny_options)
    first_calls = len(calls)
    second = stylize(photo, [style], tiny_options)
    # Two scales: the second run skips exactly the two style forward passes.
    assert len(calls) - first_calls == first_calls - 2
    assert (first.report["style_cache_hits"], second.report["style_cache_hits"]) == (0, 2)
    assert len(list((tmp_path / "style-cache").glob("*.pt"))) == 2
    assert second.image.tobytes() == first.image.tobytes()

    style_cache._caches.clear()  # a new process: only the disk copy is left
    third = stylize(photo, [style], tiny_options)
    assert third.report["style_cache_hits"] == 2
    assert third.image.tobytes() == first.image.tobytes()

    tiny_options.style_scale = 0.5  # part of the key: a miss
    assert stylize(photo, [style], tiny_options).report["style_cache_hits"] == 0


def test_uploaded_styles_are_not_cached(
    photo: Image.Image,
    painting: Image.Image,
    tiny_options: StylizeOptions,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tiny_options.style_cache_dir = tmp_path / "style-cache"
    stylize(photo, [StyleInput(painting)], tiny_options)
    assert not (tmp_path / "style-cache").exists()


def test_blend_of_two_styles(
    photo: Image.Image, painting: Image.Image, tiny_options: StylizeOptions
) -> None:
    tiny_options.scales, tiny_options.steps = (48,), 4
    flipped = painting.transpose(Image.Transpose.FLIP_LEFT_RIGHT).convert("L").convert("RGB")
    both = stylize(photo, [StyleInput(painting, 0.7), StyleInput(flipped, 0.3)], tiny_options)
    one = stylize(photo, [StyleInput(painting)], tiny_options)
    assert both.image.size == one.image.size
    assert both.image.tobytes() != one.image.tobytes()


def test_wasserstein_style_loss_runs(
    photo: Image.Image, painting: Image.Image, tiny_options: StylizeOptions
) -> None:
    tiny_options.style_loss = "wasserstein"
    tiny_options.scales, tiny_options.steps = (48,), 8
    events: list[ProgressEvent] = []
    stylize(photo, [StyleInput(painting)], tiny_options, progress=events.append)
    losses = [e.loss for e in events if e.stage == "optimizing" and e.loss is not None]
    assert losses[-1] < losses[0]


def test_out_of_memory_retries_smaller_and_says_so(
    photo: Image.Image,
    painting: Image.Image,
    tiny_options: StylizeOptions,
    monkeypatch: pytest.MonkeyPatch,
    test_device: str,
) -> None:
    original = style_transfer._paint_scale

    def flaky(ctx, jobs, reporters, index, *args):  # type: ignore[no-untyped-def]
        if reporters[0].plan.sides[index] == 64:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(ctx, jobs, reporters, index, *args)

    monkeypatch.setattr(style_transfer, "_paint_scale", flaky)
    events: list[ProgressEvent] = []
    result = stylize(photo, [StyleInput(painting)], tiny_options, progress=events.append)
    messages = [e.message for e in events if e.message]
    assert messages == [f"{test_device.upper()} out of memory: retrying at 48 px"]
    assert result.report["oom_fallbacks"] == [{"from": 64, "to": 48}]
    assert max(result.image.size) == 48


def test_other_errors_are_not_swallowed(
    photo: Image.Image,
    painting: Image.Image,
    tiny_options: StylizeOptions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args):  # type: ignore[no-untyped-def]
        raise RuntimeError("shape mismatch somewhere")

    monkeypatch.setattr(style_transfer, "_paint_scale", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        stylize(photo, [StyleInput(painting)], tiny_options)


@pytest.mark.slow
def test_trained_features_move_the_style_a_long_way(
    test_data: Path, trained_vgg16: Path, test_device: str
) -> None:
    """With real (trained VGG16) features the style loss must drop by a large factor from the
    content-initialized start: the painting's statistics are actually being matched."""
    weights = trained_vgg16
    content = Image.open(test_data / "photos" / "chelsea-the-cat.png")
    style = StyleInput(Image.open(test_data / "artworks" / "van-gogh-starry-night.jpg"))
    base = StylizeOptions(size=96, model="vgg16", weights=str(weights), device=test_device, seed=0)
    start = stylize(
        content, [style], StylizeOptions(**{**base.__dict__, "scales": (96,), "steps": 1})
    )
    run = stylize(content, [style], StylizeOptions(**{**base.__dict__, "quality": "fast"}))
    s0, s1 = start.report["final_losses"]["style"], run.report["final_losses"]["style"]
    assert s1 < s0 / 20, (s0, s1)
    assert run.report["final_losses"]["total"] < start.report["final_losses"]["total"] / 5


def test_out_of_memory_at_a_coarse_scale_says_the_new_scale_count(
    photo: Image.Image,
    painting: Image.Image,
    tiny_options: StylizeOptions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = style_transfer._paint_scale

    def flaky(ctx, jobs, reporters, index, *args):  # type: ignore[no-untyped-def]
        if reporters[0].plan.sides[index] == 48:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(ctx, jobs, reporters, index, *args)

    monkeypatch.setattr(style_transfer, "_paint_scale", flaky)
    events: list[ProgressEvent] = []
    result = stylize(photo, [StyleInput(painting)], tiny_options, progress=events.append)
    told = next(i for i, e in enumerate(events) if e.message)
    assert {e.scale_count for e in events[told:]} == {1}  # 48 and 64 px became one 36 px scale
    assert result.report["schedule"]["sides_run"] == [36]
    assert result.report["scales"][0]["steps_planned"] == 6
    assert max(result.image.size) == 36


def test_a_first_look_comes_before_the_first_step(
    photo: Image.Image, painting: Image.Image, tiny_options: StylizeOptions
) -> None:
    tiny_options.tuning = dataclasses.replace(
        tiny_options.tuning, first_look_side=40, first_look_steps=3
    )
    tiny_options.scales, tiny_options.steps = (64,), 6
    events: list[ProgressEvent] = []
    stylize(photo, [StyleInput(painting)], tiny_options, progress=events.append)
    looks = [i for i, e in enumerate(events) if e.first_look]
    first_step = next(i for i, e in enumerate(events) if e.step > 0)
    assert len(looks) == 1 and looks[0] < first_step
    look = events[looks[0]]
    assert look.preview is not None and max(look.preview.size) == 40


def test_no_first_look_without_a_listener_or_for_small_outputs(
    photo: Image.Image,
    painting: Image.Image,
    tiny_options: StylizeOptions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _count_forwards(monkeypatch)
    tiny_options.scales, tiny_options.steps = (64,), 2
    events: list[ProgressEvent] = []
    stylize(photo, [StyleInput(painting)], tiny_options, progress=events.append)  # 64 < 128
    assert not any(e.first_look for e in events)
    with_listener = len(calls)
    tiny_options.tuning = dataclasses.replace(tiny_options.tuning, first_look_side=40)
    stylize(photo, [StyleInput(painting)], tiny_options)
    assert len(calls) == 2 * with_listener  # nobody listens: no extra passes


def test_warm_up_loads_the_network_once(random_weights_vgg16: Path) -> None:
    from engine.model import _cache

    style_transfer.warm_up("vgg16", str(random_weights_vgg16), "cpu", side=32)
    assert any(key[0] == "vgg16" for key in _cache)
