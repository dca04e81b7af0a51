"""`stylize` and `stylize_batch`: the calls the CLI, the queue workers and the benches make.

Gatys et al. by optimization, strung together from small pieces: engine.schedule says which
sizes run and for how many steps (one full-size scale below 600 px, a half-size pass first from
there up), engine.start where each scale starts (the photo in the painting's palette by
default), engine.objective builds each job's content features and style targets (cached for
gallery paintings), and engine.optimize runs one optimizer loop per scale. A batch paints
several compatible jobs (engine.batching.bucket_key) in one forward/backward per evaluation,
each with its own events, early stop and cancellation. Before the real run a job with a
progress listener gets a "first look": a few steps at a small size, shown as a preview within
seconds. A GPU out-of-memory error splits a batch in two; a single job climbs down one ladder
(`_after_oom`): smaller tiles first, then a smaller schedule (engine.schedule.shrink_after_oom).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence

import torch
from PIL import Image

from engine import color, tiles, tiling
from engine import device as devices
from engine import objective as objectives
from engine.batching import bucket_key
from engine.context import Context
from engine.errors import Cancelled
from engine.job import MIN_SIDE, Job, ProgressFn
from engine.model import load_features
from engine.optimize import Lane, LaneResult, OptimizerFactory, optimize
from engine.options import BatchJob, StyleInput, StylizeOptions, StylizeResult
from engine.report import Reporter
from engine.schedule import shrink_after_oom
from engine.start import start_image, to_image
from engine.start import to_tensor as _to_tensor
from engine.style_cache import StyleCache, default_cache
from engine.tiling import Objective

__all__ = ["_to_tensor", "stylize", "stylize_batch", "warm_up"]

log = logging.getLogger(__name__)
OOM_SHRINK = 0.75  # each out-of-memory retry drops the size by a quarter


class _SplitBatch(Exception):
    """A batch ran out of memory: paint it as two smaller batches."""


def _output(job: Job, pixels: torch.Tensor, side: int) -> torch.Tensor:
    if job.options.preserve_colors == "luminance":
        return color.with_content_chroma(pixels, job.content_at(side, pixels.device))
    return pixels.clamp(0, 1)


def _shower(job: Job, side: int) -> Callable[[torch.Tensor], Image.Image]:
    return lambda best: to_image(_output(job, best, side))


def _paint_scale(
    ctx: Context,
    jobs: Sequence[Job],
    reporters: Sequence[Reporter],
    index: int,
    previous: Sequence[torch.Tensor | None],
    caches: Sequence[StyleCache | None],
    optimizer: str | OptimizerFactory,
    tile: int | None,
) -> tuple[list[LaneResult], Objective]:
    """One scale for a batch of jobs that share its side; the outcomes and the objective
    (tiled where the picture is bigger than `tile`)."""
    side = reporters[0].plan.sides[index]
    contents = torch.cat([job.content_at(side, ctx.device) for job in jobs])
    height, width = contents.shape[-2:]
    tile = None if tiles.fits(height, width, tile) else tile
    loss, hits = objectives.build(ctx, jobs, contents, side, ctx.precision, caches, tile)
    for reporter, n in zip(reporters, hits, strict=True):
        reporter.cache_hits += n
    starts = torch.cat(
        [
            start_image(
                c,
                init=job.options.init,
                preserve_colors=job.options.preserve_colors,
                palette=job.main_style(),
                generator=job.generator,
                previous=prev,
                detail_transfer=job.options.tuning.detail_transfer,
            )
            for job, c, prev in zip(jobs, contents.split(1), previous, strict=True)
        ]
    ).contiguous()
    lanes = [
        r.lane(index, side, _shower(job, side)) for job, r in zip(jobs, reporters, strict=True)
    ]
    objective: Objective = loss
    if tile is not None:
        objective = tiling.TiledLoss(
            loss, tile, on_tile=lambda done, total: _tile_done(reporters, done, total)
        )
    tuning = reporters[0].plan.tuning(index, jobs[0].options.tuning)
    if tile is not None:  # the optimizer's history is picture-sized: keep it within the tile's
        opts, (height, width) = jobs[0].options, contents.shape[-2:]
        pairs = tiling.history_within(
            tile, height, width, opts.model, ctx.precision, tuning.lbfgs_history
        )
        tuning = dataclasses.replace(tuning, lbfgs_history=pairs)
    return optimize(ctx, objective, starts, lanes, optimizer, tuning), objective


def _tile_done(reporters: Sequence[Reporter], done: int, total: int) -> None:
    for reporter in reporters:
        reporter.tile_done(done, total)


def _first_look(
    ctx: Context,
    jobs: Sequence[Job],
    reporters: Sequence[Reporter],
    caches: Sequence[StyleCache | None],
) -> None:
    """A few steps at a small size, shown as the first preview. Its own generator, so the real
    run starts where it would without it; an out-of-memory error just skips it."""
    tuning = jobs[0].options.tuning
    side = tuning.first_look_side
    try:
        contents = torch.cat([job.content_at(side, ctx.device) for job in jobs])
        loss, _ = objectives.build(ctx, jobs, contents, side, ctx.precision, caches)
        starts = torch.cat(
            [
                start_image(
                    c,
                    init=job.options.init,
                    preserve_colors=job.options.preserve_colors,
                    palette=job.main_style(),
                    generator=torch.Generator().manual_seed(job.seed + 1),
                )
                for job, c in zip(jobs, contents.split(1), strict=True)
            ]
        )
        quiet = [Lane(tuning.first_look_steps, 0.0, job.cancel, lambda *a: None) for job in jobs]
        outcomes = optimize(ctx, loss, starts, quiet, jobs[0].options.optimizer, tuning)
    except Exception as error:
        if not devices.is_oom(error):
            raise
        devices.free_cache(ctx.device)
        return
    for job, reporter, out in zip(jobs, reporters, outcomes, strict=True):
        if out.error is None and out.best is not None:
            reporter.emit(
                stage="optimizing",
                scale_index=1,
                size=side,
                total_steps=reporter.plan.steps[0],
                preview=to_image(_output(job, out.best, side)),
                first_look=True,
            )


def _paint(
    jobs: list[Job], optimizer: OptimizerFactory | None
) -> list[StylizeResult | BaseException]:
    """One batch from set-up to results: the network, the first look, the scales (`_Scales`)
    and the final images (`_finish`); one result or exception per job, in order."""
    started = time.perf_counter()
    reporters = [Reporter(job, started) for job in jobs]
    ctx = _context(jobs, reporters)
    for r in reporters:
        r.emit(stage="style_targets")
    caches = [
        default_cache(job.options.style_cache_dir) if job.options.style_cache else None
        for job in jobs
    ]
    results: list[StylizeResult | BaseException | None] = [None] * len(jobs)
    alive = [i for i, job in enumerate(jobs) if not job.cancelled()]
    for i in set(range(len(jobs))) - set(alive):
        results[i] = Cancelled("cancelled")
    for r in reporters:
        r.opt_started = time.perf_counter()
    opts = jobs[0].options
    tile = tiling.pick_tile(opts.tile, ctx.device, opts.model, ctx.precision)
    for reporter in reporters:
        reporter.weigh_tiles(tile)
    look = [i for i in alive if _wants_first_look(jobs[i])]
    if look:
        picked = [caches[i] for i in look]
        _first_look(ctx, [jobs[i] for i in look], [reporters[i] for i in look], picked)
    previous: list[torch.Tensor | None] = [None] * len(jobs)
    run = _Scales(ctx, jobs, reporters, caches, results, previous)
    alive, last, tile = run.paint(alive, optimizer, tile)
    if alive:
        reuse = None
        if ctx.precision == "fp32" and last is not None:  # the last objective is the final one
            reuse = last[1].select([last[0].index(i) for i in alive])
        final = [(i, jobs[i], reporters[i], previous[i]) for i in alive]
        _finish(ctx, final, caches, reuse, len(jobs), results, tile)
    return [r if r is not None else Cancelled("cancelled") for r in results]


def _context(jobs: Sequence[Job], reporters: Sequence[Reporter]) -> Context:
    """The batch's device, precision and network (loaded now, the "loading" stage)."""
    opts = jobs[0].options
    device = devices.pick_device(opts.device)
    precision = devices.pick_precision(opts.precision, device)
    if any(job.options.seed is not None for job in jobs):
        devices.make_deterministic(device)
    devices.reset_peak_memory(device)
    for r in reporters:
        r.emit(stage="loading")
    net = load_features(opts.model, opts.weights, device)
    return Context(net, device, precision)


def _wants_first_look(job: Job) -> bool:
    tuning = job.options.tuning
    return (
        job.progress is not None
        and tuning.first_look_steps > 0
        and MIN_SIDE <= tuning.first_look_side < job.options.size
    )


@dataclasses.dataclass
class _Scales:
    """The scale loop of one batch: each job's results and its picture after each scale
    (`previous`, the next scale's start), filled in as the scales run."""

    ctx: Context
    jobs: Sequence[Job]
    reporters: Sequence[Reporter]
    caches: Sequence[StyleCache | None]
    results: list[StylizeResult | BaseException | None]
    previous: list[torch.Tensor | None]

    def paint(
        self, alive: list[int], optimizer: OptimizerFactory | None, tile: int | None
    ) -> tuple[list[int], tuple[list[int], Objective] | None, int | None]:
        """Every scale for the jobs in `alive` (row numbers); the jobs still alive after the
        last, the last scale's rows and objective, and the tile size it ended with."""
        jobs, reporters, previous = self.jobs, self.reporters, self.previous
        last: tuple[list[int], Objective] | None = None  # the final scale's rows and objective
        index = 0
        while alive and index < len(reporters[alive[0]].plan.sides):
            batch = [jobs[i] for i in alive]
            side = reporters[alive[0]].plan.sides[index]
            try:
                outcomes, loss = _paint_scale(
                    self.ctx,
                    batch,
                    [reporters[i] for i in alive],
                    index,
                    [previous[i] for i in alive],
                    [self.caches[i] for i in alive],
                    optimizer or batch[0].options.optimizer,
                    tile,
                )
                last = (list(alive), loss)
            except Exception as error:
                if not devices.is_oom(error):
                    raise
                devices.free_cache(self.ctx.device)
                if len(alive) > 1:
                    raise _SplitBatch from error
                rung = _after_oom(self.ctx.device, reporters[alive[0]], side, index, tile)
                if rung is None:
                    raise
                index, tile = rung
                continue
            self._keep(alive, outcomes, index, side)
            alive = [i for i in alive if self.results[i] is None]
            index += 1
        return alive, last, tile

    def _keep(self, alive: list[int], outcomes: list[LaneResult], index: int, side: int) -> None:
        """A scale's outcomes: a job's error is its result, its picture the next start."""
        for i, out in zip(alive, outcomes, strict=True):
            if out.error is not None:
                self.results[i] = out.error
                continue
            assert out.best is not None
            self.previous[i] = out.best
            image = to_image(_output(self.jobs[i], out.best, side))
            self.reporters[i].scale_done(index, side, out, image)


def _after_oom(
    device: torch.device, reporter: Reporter, side: int, index: int, tile: int | None
) -> tuple[int, int | None] | None:
    """The out-of-memory ladder of a single job: smaller tiles first (the print keeps its
    size), then a smaller size (engine.schedule.shrink_after_oom re-plans the rest). The scale
    to retry and the tile size to retry it with; None when the picture is MIN_SIDE already."""
    smaller_tile = tiles.shrink_tile(side, tile)
    if smaller_tile is not None:
        size, rung = side, f"in {smaller_tile} px tiles"
        reporter.oom.append({"tile_from": tile or side, "tile_to": smaller_tile})
        tile = smaller_tile
        reporter.weigh_tiles(tile)
    elif side > MIN_SIDE:
        size = max(MIN_SIDE, int(side * OOM_SHRINK))
        rung = f"at {size} px"
        reporter.oom.append({"from": side, "to": size})
        reporter.plan, index = shrink_after_oom(reporter.plan, index, size)
    else:
        return None
    message = f"{device.type.upper()} out of memory: retrying {rung}"
    log.warning(message)
    fraction = reporter.fraction(index, 0)
    reporter.emit(
        stage="optimizing", message=message, size=size, scale_index=index + 1, fraction=fraction
    )
    return index, tile


def _finish(
    ctx: Context,
    final: list[tuple[int, Job, Reporter, torch.Tensor | None]],
    caches: Sequence[StyleCache | None],
    loss: Objective | None,
    batch: int,
    results: list[StylizeResult | BaseException | None],
    tile: int | None,
) -> None:
    """Final images, and their losses at the output size in fp32 with the jobs' weights, so runs
    with different schedules or precisions are compared on the same objective (in tiles where
    the picture is bigger than `tile`: the loss is the same, the memory is not)."""
    jobs = [job for _, job, _, _ in final]
    side = final[0][2].plan.sides[-1]
    best = torch.cat([p for _, _, _, p in final if p is not None]).clamp(0, 1)
    if loss is None:
        contents = torch.cat([job.content_at(side, ctx.device) for job in jobs])
        height, width = contents.shape[-2:]
        tile = None if tiles.fits(height, width, tile) else tile
        picked = [caches[i] for i, _, _, _ in final]
        built, hits = objectives.build(ctx, jobs, contents, side, "fp32", picked, tile)
        for (_, _, reporter, _), n in zip(final, hits, strict=True):
            reporter.cache_hits += n
        loss = built if tile is None else tiling.TiledLoss(built, tile)
    parts = tiling.parts(ctx, loss, best, "fp32")
    values = {k: v.tolist() for k, v in parts.items()}
    for r, (i, job, reporter, _) in enumerate(final):
        image = to_image(_output(job, best[r : r + 1], side))
        losses = {k: float(v[r]) for k, v in values.items()}
        report = reporter.report(losses, image, ctx.device, ctx.precision, batch)
        reporter.emit(
            stage="done", fraction=1.0, loss=losses["total"], scale_index=len(reporter.plan.sides)
        )
        results[i] = StylizeResult(image=image, report=report)


def stylize_batch(
    requests: Sequence[BatchJob], *, optimizer: OptimizerFactory | None = None
) -> list[StylizeResult | BaseException]:
    """Paint compatible jobs together; one result or exception per job, in order.

    Every job must have the same `engine.batching.bucket_key` (ValueError otherwise). A job's
    `cancel` ends only that job (its result is `Cancelled`); its `progress` hears only its own
    events. `optimizer` replaces the jobs' optimizer (benchmarks compare variants with it)."""
    keys = {bucket_key(r.content.size, r.options) for r in requests}
    if len(keys) > 1:
        raise ValueError("stylize_batch needs jobs of one bucket (engine.batching.bucket_key)")
    results: list[StylizeResult | BaseException | None] = [None] * len(requests)
    jobs: list[Job] = []
    rows: list[int] = []
    for i, request in enumerate(requests):
        try:
            jobs.append(Job.prepare(request))
            rows.append(i)
        except Exception as error:  # a bad request fails alone
            results[i] = error
    if jobs:
        painted: list[StylizeResult | BaseException]
        try:
            painted = _paint(jobs, optimizer)
        except _SplitBatch:
            half = len(rows) // 2
            painted = stylize_batch([requests[i] for i in rows[:half]], optimizer=optimizer)
            painted += stylize_batch([requests[i] for i in rows[half:]], optimizer=optimizer)
        except Exception as error:  # the shared forward failed: every job of the batch did
            painted = [error] * len(jobs)
        for i, result in zip(rows, painted, strict=True):
            results[i] = result
    return [r for r in results if r is not None]


def stylize(
    content: Image.Image,
    styles: Sequence[StyleInput],
    options: StylizeOptions,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> StylizeResult:
    """Repaint `content` in the blended style of `styles`; see StylizeOptions for the knobs.

    Raises engine.errors.Cancelled within one evaluation of `cancel.set()`, WeightsError for
    unusable weights. Style targets of styles with a `cache_key` are cached in memory, and on
    disk in `options.style_cache_dir` when the caller names one (the CLI, workers and the bot do).
    """
    (result,) = stylize_batch([BatchJob(content, styles, options, progress, cancel)])
    if isinstance(result, BaseException):
        raise result
    return result


def warm_up(
    model: str = "vgg19", weights: str = "torchvision", device: str = "auto", side: int = 64
) -> None:
    """What a worker calls once at start, so its first user does not pay for it: load the
    network, let cuDNN pick its fastest kernels (on CUDA), and run one tiny forward/backward in
    the precision the painter will use (CPU oneDNN and cuDNN set up their kernels on first use)."""
    resolved = devices.pick_device(device)
    devices.configure_worker(resolved)
    precision = devices.pick_precision("auto", resolved)
    net = load_features(model, weights, resolved)
    ctx = Context(net, resolved, precision)
    x = torch.rand(1, 3, side, side, device=resolved, requires_grad=True)
    feats = ctx.features(x, ("relu4_2", "relu5_1"))
    torch.autograd.grad(torch.stack([f.float().mean() for f in feats.values()]).sum(), x)
