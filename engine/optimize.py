"""One optimizer loop over one scale, for a batch of jobs painted in lockstep.

Each job is a row of the pixel tensor and a `Lane`: its step budget, early-stop tolerance,
cancel event and progress hook. One network forward/backward per step serves every row still
running (on a GPU; see `Context.one_forward` for the CPU's per-row groups); a row that finishes
(budget spent, early stop, diverged) or is cancelled leaves the batch and the others carry on.

Nothing in a step reads the device back: losses, best images and the early-stop test stay on
the device, and the loop reads them back in one transfer every `progress_every` steps (8 on a
GPU) and at the steps where something is due (a preview, a lane's last step). Cancellation is a
host-side event checked before every evaluation, so it lands within one evaluation.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from engine.context import Context
from engine.errors import Cancelled
from engine.lbfgs import BatchBoxLBFGS, BatchEvaluate, pyramid_preconditioner
from engine.losses import GatysLoss
from engine.options import Tuning
from engine.schedule import EARLY_STOP_WINDOW, MIN_STEPS_BEFORE_STOP
from engine.tiling import TiledLoss

log = logging.getLogger(__name__)

ADAM_LR = 0.02  # pixels live in [0, 1]; Gatys-Adam recipes use 1-10 on a 0-255 scale
GPU_PROGRESS_EVERY = 8  # unmeasured: a GPU has not run this loop yet
OPTIMIZERS = ("lbfgs", "adam")


class BatchOptimizer(Protocol):
    def step(self) -> torch.Tensor: ...  # each row's loss after the step, (B,) on the device
    def keep(self, rows: Sequence[int] | torch.Tensor) -> None: ...


OptimizerFactory = Callable[[torch.Tensor, BatchEvaluate, Tuning], BatchOptimizer]


class BatchAdam:
    """Adam (torch.optim.Adam's update, default betas) per pixel, clamped to [0, 1] after each
    step; elementwise, so rows are independent by construction."""

    def __init__(self, x: torch.Tensor, evaluate: BatchEvaluate, lr: float = ADAM_LR) -> None:
        self.x, self.evaluate, self.lr = x.detach().clone(), evaluate, lr
        self.m, self.v, self.t = torch.zeros_like(self.x), torch.zeros_like(self.x), 0

    def step(self) -> torch.Tensor:
        f, g = self.evaluate(self.x)
        g = g.reshape(self.x.shape)
        self.t += 1
        self.m.mul_(0.9).add_(g, alpha=0.1)
        self.v.mul_(0.999).addcmul_(g, g, value=0.001)
        denom = (self.v / (1 - 0.999**self.t)).sqrt_().add_(1e-8)
        self.x.addcdiv_(self.m, denom, value=-self.lr / (1 - 0.9**self.t)).clamp_(0, 1)
        return f.detach()

    def keep(self, rows: Sequence[int] | torch.Tensor) -> None:
        index = torch.as_tensor(rows, device=self.x.device)
        self.x, self.m, self.v = self.x[index], self.m[index], self.v[index]


def make_optimizer(name: str) -> OptimizerFactory:
    """`lbfgs`: engine.lbfgs's box-aware, preconditioned L-BFGS; `adam`: BatchAdam."""
    if name == "adam":
        return lambda x, evaluate, tuning: BatchAdam(x, evaluate)
    if name != "lbfgs":
        raise ValueError(f"unknown optimizer {name!r} (choose {' or '.join(OPTIMIZERS)})")

    def lbfgs(x: torch.Tensor, evaluate: BatchEvaluate, tuning: Tuning) -> BatchOptimizer:
        strength = tuning.precondition
        pre = pyramid_preconditioner(strength, tuning.precondition_levels) if strength else None
        return BatchBoxLBFGS(x, evaluate, history=tuning.lbfgs_history, precondition=pre)

    return lbfgs


@dataclasses.dataclass
class Lane:
    """One job's part of a scale. `on_step(step, loss, preview)` hears the job's loss after a
    step (read back every `progress_every` steps) and, at the steps in `preview_at`, its best
    image so far."""

    steps: int
    tolerance: float
    cancel: threading.Event | None
    on_step: Callable[[int, float, torch.Tensor | None], None]
    preview_at: frozenset[int] = frozenset()

    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()


@dataclasses.dataclass
class LaneResult:
    """How one lane's scale ended."""

    best: torch.Tensor | None = None  # (1, 3, H, W): the lowest-loss image any evaluation saw
    best_loss: float = math.inf
    steps_run: int = 0
    evaluations: int = 0
    seconds: float = 0.0
    error: BaseException | None = None  # Cancelled for a cancelled job
    early_stopped: bool = False


class _RowsCancelled(Exception):
    def __init__(self, rows: list[int]) -> None:
        super().__init__("cancelled")
        self.rows = rows


def progress_every(tuning: Tuning, device: torch.device) -> int:
    if tuning.progress_every is not None:
        return max(1, tuning.progress_every)
    return 1 if device.type == "cpu" else GPU_PROGRESS_EVERY


class _Group:
    """Rows stepped by one optimizer: their lanes, objective, best images and losses so far,
    and the recent losses the early stop compares (all on the device)."""

    def __init__(
        self,
        ctx: Context,
        ids: list[int],
        objective: GatysLoss | TiledLoss,
        start: torch.Tensor,
        lanes: Sequence[Lane],
        results: list[LaneResult],
        began: float,
    ) -> None:
        self.ctx, self.ids, self.objective = ctx, ids, objective
        self.lanes, self.results, self.began = lanes, results, began
        self.best = start.detach().clone()
        self.best_loss = torch.full((len(ids),), math.inf, device=start.device)
        self.history: list[torch.Tensor] = []
        self.values = self.best_loss
        self.opt: BatchOptimizer | None = None

    def evaluate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gone = [r for r, i in enumerate(self.ids) if self.lanes[i].cancelled()]
        if gone:
            raise _RowsCancelled(gone)
        values, grad = self.objective.value_and_grad(self.ctx, x)
        improved = (values < self.best_loss).view(-1, *([1] * (x.dim() - 1)))
        self.best = torch.where(improved, x.detach(), self.best)
        self.best_loss = torch.minimum(values, self.best_loss)
        for i in self.ids:
            self.results[i].evaluations += 1
        return values, grad

    def step(self) -> None:
        """One optimizer step for the rows that are not cancelled (those leave, Cancelled)."""
        assert self.opt is not None
        while self.ids:
            try:
                self.values = self.opt.step()
            except _RowsCancelled as stop:  # the step changed nothing; retried for the rest
                self.finish(stop.rows, Cancelled("cancelled"), self.best_loss.tolist())
                continue
            self.history = [*self.history[-EARLY_STOP_WINDOW:], self.values]
            return

    def readout(self) -> torch.Tensor:
        """(rows, 3): each row's loss now, EARLY_STOP_WINDOW steps ago, and its best loss."""
        return torch.stack([self.values, self.history[0], self.best_loss], 1)

    def finish(
        self,
        rows: Sequence[int],
        error: BaseException | None,
        losses: Sequence[float],
        early: Sequence[int] = (),
    ) -> None:
        """End `rows` (positions in this group) with their best images; the rest carry on."""
        if not rows:
            return
        for r in rows:
            out = self.results[self.ids[r]]
            out.best = self.best[r : r + 1].clone()
            out.best_loss, out.error = losses[r], error
            out.seconds = time.perf_counter() - self.began
            out.early_stopped = r in early
        keep = [r for r in range(len(self.ids)) if r not in set(rows)]
        self.ids = [self.ids[r] for r in keep]
        if not keep:
            return
        index = torch.as_tensor(keep, device=self.best.device)
        assert self.opt is not None
        self.opt.keep(index)
        self.objective = self.objective.select(index)
        self.best, self.best_loss = self.best[index], self.best_loss[index]
        self.values = self.values[index]
        self.history = [h[index] for h in self.history]


def stalled(old_enough: bool, tolerance: float, before: float, now: float) -> bool:
    """The early stop: the loss fell by at most `tolerance` (relative) over the window."""
    return old_enough and tolerance > 0 and before - now <= tolerance * abs(before)


def optimize(
    ctx: Context,
    objective: GatysLoss | TiledLoss,  # TiledLoss: pictures bigger than a tile (issue 19)
    start: torch.Tensor,
    lanes: Sequence[Lane],
    optimizer: str | OptimizerFactory = "lbfgs",
    tuning: Tuning | None = None,
) -> list[LaneResult]:
    """Optimize every row of `start` against its row of `objective`; one LaneResult per lane."""
    tuning = tuning or Tuning()
    factory = make_optimizer(optimizer) if isinstance(optimizer, str) else optimizer
    every = progress_every(tuning, ctx.device)
    began = time.perf_counter()
    results = [LaneResult() for _ in lanes]
    groups = _groups(ctx, objective, start, lanes, factory, tuning, results, began)
    can_stop = max(MIN_STEPS_BEFORE_STOP, EARLY_STOP_WINDOW + 1)

    step = 0
    while groups:
        step += 1
        for group in groups:
            group.step()
        groups = [g for g in groups if g.ids]
        if not groups:
            break
        for group in groups:
            for i in group.ids:
                results[i].steps_run = step
        due = [lanes[i] for g in groups for i in g.ids]
        if step % every and not any(step in lane.preview_at or step >= lane.steps for lane in due):
            continue
        # The loop's one host read: every row's loss now and EARLY_STOP_WINDOW steps ago, and
        # its best loss; the early-stop test runs on the host.
        read = torch.cat([g.readout() for g in groups]).tolist()
        offset = 0
        for group in groups:
            readout = read[offset : offset + len(group.ids)]
            offset += len(group.ids)
            _settle(group, readout, lanes, step, step >= can_stop)
        groups = [g for g in groups if g.ids]
    return results


def _groups(
    ctx: Context,
    objective: GatysLoss | TiledLoss,
    start: torch.Tensor,
    lanes: Sequence[Lane],
    factory: OptimizerFactory,
    tuning: Tuning,
    results: list[LaneResult],
    began: float,
) -> list[_Group]:
    """The rows' optimizers: one for the whole batch, or one a row on the batch-invariant CPU
    path (engine.context.Context)."""
    if ctx.one_forward or len(lanes) == 1:
        parts = [list(range(len(lanes)))]
    else:
        parts = [[i] for i in range(len(lanes))]
    groups = []
    for ids in parts:
        own, rows = objective, start
        if len(parts) > 1:
            own, rows = objective.select(ids), start[ids[0] : ids[0] + 1]
        group = _Group(ctx, ids, own, rows, lanes, results, began)
        group.opt = factory(rows.detach().clone(), group.evaluate, tuning)
        groups.append(group)
    return groups


def _settle(
    group: _Group,
    readout: Sequence[Sequence[float]],
    lanes: Sequence[Lane],
    step: int,
    old_enough: bool,
) -> None:
    """Tell each row's lane its step (and preview), then end the rows that are done: budget
    spent, diverged (keeping the best image) or stalled (the early stop)."""
    done, early = [], []
    for r, (value, before, _) in enumerate(readout):
        lane = lanes[group.ids[r]]
        preview = group.best[r : r + 1] if step in lane.preview_at else None
        lane.on_step(step, value, preview)
        if not math.isfinite(value):
            log.warning("loss diverged at step %d; keeping the best image", step)
            done.append(r)
        elif step >= lane.steps:
            done.append(r)
        elif stalled(old_enough, lane.tolerance, before, value):
            early.append(r)
    best = [loss for _, _, loss in readout]
    group.finish(done + early, None, best, early)
