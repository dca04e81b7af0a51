"""One optimizer loop over one scale, for a batch of jobs painted in lockstep.

Each job is a row of the pixel tensor and a `Lane`: its step budget, early-stop tolerance,
cancel event and progress hook. One network forward/backward per evaluation serves every row
still running; a row that finishes (budget spent, early stop, diverged) or is cancelled leaves
the batch and the others carry on. Losses, best images and the early-stop test stay on the
device; the loop reads them back every `progress_every` steps (and at preview and final steps).
Cancellation is checked before every evaluation, so it lands within one evaluation.
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

from engine.errors import Cancelled
from engine.lbfgs import BatchBoxLBFGS, BatchEvaluate, pyramid_preconditioner
from engine.losses import GatysLoss
from engine.objective import Context
from engine.options import Tuning
from engine.schedule import EARLY_STOP_WINDOW, MIN_STEPS_BEFORE_STOP

log = logging.getLogger(__name__)

ADAM_LR = 0.02  # pixels live in [0, 1]; Gatys-Adam recipes use 1-10 on a 0-255 scale
GPU_PROGRESS_EVERY = 8  # unmeasured: a GPU has not run this loop yet


class BatchOptimizer(Protocol):
    def step(self) -> torch.Tensor: ...  # each row's loss after the step, (B,) on the device
    def keep(self, rows: Sequence[int]) -> None: ...


OptimizerFactory = Callable[[torch.Tensor, BatchEvaluate, Tuning], BatchOptimizer]


class BatchAdam:
    """Adam (torch.optim.Adam's update, default betas) per pixel, clamped to [0, 1] after each
    step; elementwise, so rows are independent by construction."""

    def __init__(self, x: torch.Tensor, evaluate: BatchEvaluate, lr: float = ADAM_LR) -> None:
        self.x, self.evaluate, self.lr = x.detach().clone(), evaluate, lr
        self.m, self.v, self.t = torch.zeros_like(self.x), torch.zeros_like(self.x), 0

    def step(self) -> torch.Tensor:
        f, g = self.evaluate(self.x, None)
        g = g.reshape(self.x.shape)
        self.t += 1
        self.m.mul_(0.9).add_(g, alpha=0.1)
        self.v.mul_(0.999).addcmul_(g, g, value=0.001)
        denom = (self.v / (1 - 0.999**self.t)).sqrt_().add_(1e-8)
        self.x.addcdiv_(self.m, denom, value=-self.lr / (1 - 0.9**self.t)).clamp_(0, 1)
        return f.detach()

    def keep(self, rows: Sequence[int]) -> None:
        index = torch.as_tensor(list(rows), device=self.x.device)
        self.x, self.m, self.v = self.x[index], self.m[index], self.v[index]


def make_optimizer(name: str) -> OptimizerFactory:
    """`lbfgs`: engine.lbfgs's box-aware, preconditioned L-BFGS; `adam`: BatchAdam."""
    if name == "adam":
        return lambda x, evaluate, tuning: BatchAdam(x, evaluate)

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
class Outcome:
    best: torch.Tensor | None = None  # (1, 3, H, W): the lowest-loss image any evaluation saw
    best_loss: float = math.inf
    steps_run: int = 0
    evaluations: int = 0
    seconds: float = 0.0
    error: BaseException | None = None  # Cancelled for a cancelled job
    early_stopped: bool = False


@dataclasses.dataclass
class _State:
    """The rows still running: their objective and best images (replaced as rows leave)."""

    objective: GatysLoss
    best: torch.Tensor


class _RowsCancelled(Exception):
    def __init__(self, rows: list[int]) -> None:
        super().__init__("cancelled")
        self.rows = rows


class _PerRow:
    """One optimizer per row, stepped in turn: the batch-invariant path (see
    engine.objective.Context.one_forward). A step interrupted by a cancelled row resumes where
    it stopped, so no row steps twice."""

    def __init__(self, rows: list[BatchOptimizer]) -> None:
        self.rows = rows
        self.stepped: dict[int, torch.Tensor] = {}

    def step(self) -> torch.Tensor:
        for k, opt in enumerate(self.rows):
            if k not in self.stepped:
                self.stepped[k] = opt.step()
        values = torch.cat([self.stepped[k] for k in range(len(self.rows))])
        self.stepped = {}
        return values

    def keep(self, rows: Sequence[int]) -> None:
        self.stepped = {
            new: self.stepped[old] for new, old in enumerate(rows) if old in self.stepped
        }
        self.rows = [self.rows[r] for r in rows]


def _row_evaluate(evaluate: BatchEvaluate, active: list[int], lane: int) -> BatchEvaluate:
    """The batch's evaluate for one lane's row, wherever that row is now."""
    return lambda x, rows: evaluate(x, [active.index(lane)])


def progress_every(tuning: Tuning, device: torch.device) -> int:
    if tuning.progress_every is not None:
        return max(1, tuning.progress_every)
    return 1 if device.type == "cpu" else GPU_PROGRESS_EVERY


def optimize(
    ctx: Context,
    objective: GatysLoss,
    start: torch.Tensor,
    lanes: Sequence[Lane],
    optimizer: str | OptimizerFactory = "lbfgs",
    tuning: Tuning | None = None,
) -> list[Outcome]:
    """Optimize every row of `start` against its row of `objective`; one Outcome per lane."""
    tuning = tuning or Tuning()
    factory = make_optimizer(optimizer) if isinstance(optimizer, str) else optimizer
    every = progress_every(tuning, ctx.device)
    began = time.perf_counter()
    outcomes = [Outcome() for _ in lanes]
    active = list(range(len(lanes)))
    state = _State(objective, start.detach().clone())
    best_loss = torch.full((len(lanes),), math.inf, device=start.device)
    tolerances = torch.tensor([lane.tolerance for lane in lanes], device=start.device)
    history: list[torch.Tensor] = []

    def evaluate(x: torch.Tensor, rows: Sequence[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal best_loss
        ids = active if rows is None else [active[r] for r in rows]
        gone = [r for r, i in enumerate(ids) if lanes[i].cancelled()]
        if gone:
            raise _RowsCancelled(gone if rows is None else [rows[r] for r in gone])
        obj = state.objective if rows is None else state.objective.select(rows)
        x = x.detach().requires_grad_(True)
        values = obj.parts(x, ctx.features(x, obj.layers))["total"]
        (grad,) = torch.autograd.grad(values.sum(), x)
        values = values.detach()
        best = state.best
        if rows is None:
            improved = values < best_loss
            state.best = torch.where(improved.view(-1, 1, 1, 1), x.detach(), best)
            best_loss = torch.minimum(values, best_loss)
        else:
            index = torch.as_tensor(list(rows), device=x.device)
            improved = values < best_loss[index]
            best[index] = torch.where(improved.view(-1, 1, 1, 1), x.detach(), best[index])
            best_loss[index] = torch.minimum(values, best_loss[index])
        for i in ids:
            outcomes[i].evaluations += 1
        return values, grad

    opt: BatchOptimizer
    if ctx.one_forward or len(lanes) == 1:
        opt = factory(start.detach().clone(), evaluate, tuning)
    else:
        opt = _PerRow(
            [
                factory(
                    start[i : i + 1].detach().clone(), _row_evaluate(evaluate, active, i), tuning
                )
                for i in range(len(lanes))
            ]
        )

    def finish(rows: Sequence[int], error: BaseException | None, early: Sequence[int] = ()) -> None:
        nonlocal best_loss, tolerances, history
        if not rows:
            return
        losses = best_loss.tolist()
        for r in rows:
            out = outcomes[active[r]]
            out.best = state.best[r : r + 1].clone()
            out.best_loss, out.error = losses[r], error
            out.seconds = time.perf_counter() - began
            out.early_stopped = r in early
        keep = [r for r in range(len(active)) if r not in set(rows)]
        active[:] = [active[r] for r in keep]
        if not keep:
            return
        index = torch.as_tensor(keep, device=start.device)
        opt.keep(keep)
        state.objective = state.objective.select(keep)
        state.best, best_loss = state.best[index], best_loss[index]
        tolerances, history = tolerances[index], [h[index] for h in history]

    step = 0
    while active:
        gone = [r for r, i in enumerate(active) if lanes[i].cancelled()]
        if gone:
            finish(gone, Cancelled("cancelled"))
            continue
        try:
            values = opt.step()
        except _RowsCancelled as stop:  # the step is retried for the others; state is intact
            finish(stop.rows, Cancelled("cancelled"))
            continue
        step += 1
        for i in active:
            outcomes[i].steps_run = step
        history = [*history[-EARLY_STOP_WINDOW:], values]
        due = [lanes[i] for i in active]
        if step % every and not any(step in lane.preview_at or step >= lane.steps for lane in due):
            continue
        stalled = torch.zeros_like(values, dtype=torch.bool)
        if step >= max(MIN_STEPS_BEFORE_STOP, EARLY_STOP_WINDOW + 1):
            before = history[0]
            stalled = (tolerances > 0) & ((before - values) <= tolerances * before.abs())
        read, stops = values.tolist(), stalled.tolist()  # the loop's host read
        done, early = [], []
        for r, lane in enumerate(due):
            preview = state.best[r : r + 1] if step in lane.preview_at else None
            lane.on_step(step, read[r], preview)
            if not math.isfinite(read[r]):
                log.warning("loss diverged at step %d; keeping the best image", step)
                done.append(r)
            elif step >= lane.steps:
                done.append(r)
            elif stops[r]:
                early.append(r)
        finish(done + early, None, early)
    return outcomes
