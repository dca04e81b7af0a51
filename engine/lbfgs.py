"""L-BFGS for pixels boxed to [0, 1]: projected steps, true curvature pairs, a backtracking guard,
in a fixed number of tensor operations per step and without reading anything back to the host.

torch.optim.LBFGS without a line search (its strong-Wolfe search does not know about the box)
overshoots badly while its memory is short: on the bench's 128 px run the loss jumped from 1.3
to 195 in the first dozen steps, so a third of a scale's budget went to climbing back down.
Clamping after its step also feeds it a wrong displacement for every clamped pixel. Here each
trial point is projected onto the box, the pair (s, y) uses the displacement actually taken, and
a step that raises the loss is halved (no more than MAX_HALVINGS times) instead of accepted: the
projected-Armijo idea of L-BFGS-B in a few lines.

`BatchBoxLBFGS` runs B independent problems (one per row of x) in lockstep, so one network
forward/backward serves them all. Every row has its own curvature memory, step length, line
search and resets, and its path does not depend on the other rows.

Why it looks the way it does (counted with bench/step_profile.py; on a GPU every dispatched
operator is a kernel launch of ~5-10 µs and every host read stalls the stream):
- The quasi-Newton direction uses the compact representation of Byrd, Nocedal & Schnabel (1994)
  instead of the two-loop recursion: H g = γP(g - Y u) + S p, with u = R⁻¹ Sᵀg and
  p = R⁻ᵀ((D + γ YᵀPY) u - γ YᵀPg), where R is the upper triangle of SᵀY in the order the pairs
  were made and D its diagonal. The memory is one (B, 2·slots, N) tensor (S over Y), so a step
  reads it twice whatever its size: one batched product with [s, y, Py, g, Pg] gives the new
  row and column of SᵀY and YᵀPY plus Sᵀg and YᵀPg, one more gives S p and Y u. The two-loop
  recursion dispatched 21 operators per stored pair (1,071 at history 50); this step's count
  does not grow with the memory. The small (m × m) algebra runs in float64 (float32 on MPS).
- The line search spans steps: every step evaluates exactly one trial point per row. A row
  whose trial fails the Armijo test keeps its point and direction and tries half the step at
  the next step (at most MAX_HALVINGS times); a row that passes (or runs out of halvings) takes
  its new point and computes its next direction. Which rows do which is decided with masks on
  the device, so nothing is read back and the step has the same shapes every time (a CUDA
  graph can capture it). With fp32 the old search evaluated 121 times in 120 steps (32 px) and
  123 times at 256 px with bf16 and the trained fixture, so spreading halvings over steps
  changes almost nothing; its `step()` now means one evaluation.
- The memory is a ring of `history` slots per row plus one scratch slot: a finished search
  writes its pair to the row's next slot (the oldest pair), a row still searching writes to the
  scratch slot, which is never valid. A pair whose curvature is not positive is written but
  marked invalid, so a row keeps the pairs accepted in its last `history` finished searches.
`BoxLBFGS` is the same optimizer for one problem with a float-returning objective; its `step()`
runs until the line search has finished (one iteration, reading the loss back).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

# (loss, gradient) at a point; the point is passed in, the gradient comes back flat or shaped.
Evaluate = Callable[[torch.Tensor], tuple[float, torch.Tensor]]
# Batched: points (B, ...) -> (losses (B,), gradients (B, ...) or (B, N)).
BatchEvaluate = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

FIRST_STEP = 0.05  # largest pixel change of the first (memoryless) step, in [0, 1] units
MAX_HALVINGS = 6
ARMIJO = 1e-4
CURVATURE = 1e-10  # a pair is kept when sᵀy > CURVATURE·|s||y|


def pyramid_preconditioner(strength: float, levels: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """P v = v + Σ_k strength·2^k · up(avgpool_{2^k}(v)): symmetric positive definite (nearest
    upsampling is 4^k times the adjoint of 2^k average pooling), and it lengthens the steps
    L-BFGS takes along smooth directions, which the total-variation term leaves badly scaled.
    An exact (I + λ·Laplacian)^-1 by FFT did no better in the same test (192 px, 100 steps)."""

    def apply(v: torch.Tensor) -> torch.Tensor:
        out = v.clone()
        for k in range(1, levels + 1):
            f = 2**k
            if min(v.shape[-2:]) < f:
                break
            pooled = F.avg_pool2d(v, f, ceil_mode=True)
            up = F.interpolate(pooled, scale_factor=f, mode="nearest")
            if up.shape[-2:] != v.shape[-2:]:
                up = up[..., : v.shape[-2], : v.shape[-1]]
            out.add_(up, alpha=strength * f)
        return out

    return apply


def _identity(v: torch.Tensor) -> torch.Tensor:
    return v


class BatchBoxLBFGS:
    """Minimizes each row of `evaluate` over x in [lower, upper]; `step()` once per evaluation.

    `keep(rows)` drops the other rows (a finished or cancelled job) without touching the rest.
    A step changes no state before its evaluation returns, so a step whose evaluation raised (a
    cancelled row) can be run again for the remaining rows after `keep`. Per-row scalars are
    kept as (B, 1) columns so they broadcast over the (B, N) pixels without reshaping."""

    def __init__(
        self,
        x: torch.Tensor,
        evaluate: BatchEvaluate,
        history: int = 50,
        lower: float = 0.0,
        upper: float = 1.0,
        precondition: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if history < 1:
            raise ValueError(f"history must be at least 1, not {history}")
        b = x.shape[0]
        self.evaluate, self.history = evaluate, history
        self.lower, self.upper = lower, upper
        self.precondition = precondition or _identity
        dev = x.device
        small = torch.float32 if dev.type == "mps" else torch.float64
        self._image = tuple(x.shape[1:])
        self._x = x.detach().reshape(b, -1).clamp(lower, upper)
        self.f: torch.Tensor | None = None  # (B, 1) loss at each row's point
        self.g = torch.zeros_like(self._x)
        self.d = torch.zeros_like(self._x)  # the direction the current line search follows
        self.t = self._x.new_ones((b, 1))  # its step length: 1, 1/2, 1/4, ...
        self.tries = torch.zeros((b, 1), dtype=torch.long, device=dev)  # halvings spent on it
        slots = history + 1  # the ring, then a scratch slot for rows still searching
        # Each slot's s, then its P y. Y itself is never needed: R takes only sᵢᵀy_j for i <= j,
        # the new column of which is Sᵀy_new, and YᵀPg = (PY)ᵀg, YᵀPY = (PY)ᵀY as P = Pᵀ.
        self.memory = self._x.new_zeros((b, 2 * slots, self._x.shape[1]))
        self.ptr = torch.zeros((b, 1), dtype=torch.long, device=dev)  # ring slot of the next pair
        # Oldest pair first (ring slots ptr, ptr + 1, ...): sᵢᵀy_j (upper triangle), yᵢᵀPy_j.
        self.gram = torch.zeros((b, 2, history, history), dtype=small, device=dev)
        self.valid = torch.zeros((b, history), dtype=torch.bool, device=dev)
        self.gamma = torch.ones((b, 1), dtype=small, device=dev)  # sᵀy / yᵀPy, newest pair
        self._ring = torch.arange(history, device=dev)
        self._newest = self._ring == history - 1
        self._small = small

    @property
    def x(self) -> torch.Tensor:
        """Each row's current point (the best accepted), shaped like the start."""
        return self._x.view(-1, *self._image)

    def keep(self, rows: Sequence[int] | torch.Tensor) -> None:
        index = torch.as_tensor(rows, dtype=torch.long, device=self._x.device)
        for name in ("_x", "g", "d", "t", "tries", "memory", "ptr", "gram", "valid", "gamma"):
            setattr(self, name, getattr(self, name)[index])
        if self.f is not None:
            self.f = self.f[index]

    def _flat(self, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.detach().reshape(self._x.shape)
        return grad if grad.dtype == self._x.dtype else grad.to(self._x.dtype)

    def step(self) -> torch.Tensor:
        """One evaluation for every row; returns each row's loss (B,) at its current point (its
        best accepted point, which a row still halving its step keeps)."""
        if self.f is None:
            f0, g0 = self.evaluate(self.x)
            self.f, self.g = f0.detach().view(-1, 1), self._flat(g0)
            everyone = torch.ones_like(self.tries, dtype=torch.bool)
            zero = torch.zeros_like(self._x)
            self._advance(zero, zero, self.f, ~everyone, everyone)
        trial = torch.addcmul(self._x, self.t, self.d).clamp_(self.lower, self.upper)
        f_trial, g_trial = self.evaluate(trial.view(-1, *self._image))
        return self.update(trial, f_trial.detach(), g_trial.detach())

    def update(
        self, trial: torch.Tensor, f_trial: torch.Tensor, g_trial: torch.Tensor
    ) -> torch.Tensor:
        """Everything a step does after its evaluation: the Armijo test, the new points, the
        memory and the next directions. Static shapes and no data-dependent Python, so
        `torch.compile(fullgraph=True)` takes it whole and never recompiles
        (tests/engine/test_lbfgs.py)."""
        assert self.f is not None
        x, f, g = self._x, self.f, self.g
        f_trial, g_trial = f_trial.view(-1, 1), self._flat(g_trial)
        # A trial whose loss or gradient is not finite (a NaN or inf in one pixel's gradient,
        # the loss still finite) fails as a NaN loss does: its loss becomes NaN, so the Armijo
        # test rejects it, the row halves, and a search that runs out of halvings drops the
        # memory. Its gradient becomes the row's own, so y = 0 and no NaN reaches the memory
        # (0·NaN in the products over it would make later directions NaN). Accepted, as before,
        # it made every later direction NaN: the row froze at a loss of 12.2 where the clean one
        # reached 4e-14 (tests/engine/test_lbfgs.py). Six operators (158 -> 164 a step), no read.
        finite = g_trial.isfinite().all(1, keepdim=True) & f_trial.isfinite()
        f_trial = torch.where(finite, f_trial, torch.nan)
        g_trial = torch.where(finite, g_trial, g)
        s = trial - x
        ok = f_trial <= torch.add(f, (g * s).sum(1, keepdim=True), alpha=ARMIJO)
        done = ok | (self.tries >= MAX_HALVINGS)
        # No acceptable point along d: the memory is misleading, drop it; move only if the last
        # trial is no worse than where the row stands.
        moves = done & (ok | (f_trial <= f))
        self.valid = self.valid & (ok | ~done)
        y = g_trial - g
        ys = (s * y).sum(1, keepdim=True)
        norms = torch.linalg.vector_norm(s, dim=1, keepdim=True)
        norms = norms * torch.linalg.vector_norm(y, dim=1, keepdim=True)
        good = moves & (ys > CURVATURE * norms)
        self._x = torch.where(moves, trial, x)
        self.g = torch.where(moves, g_trial, g)
        self.f = torch.where(moves, f_trial, f)
        self._advance(s, y, ys, good, done)
        return self.f.view(-1)

    def _advance(
        self,
        s: torch.Tensor,
        y: torch.Tensor,
        ys: torch.Tensor,
        good: torch.Tensor,
        done: torch.Tensor,
    ) -> None:
        """Remember the pair (s, y) of every row whose search is `done` (valid where `good`) and
        give those rows their next direction; the other rows halve their step."""
        b, n = self._x.shape
        x, g = self._x, self.g
        # Pixels at a bound whose gradient pushes them outward cannot move: leave them out of
        # the quasi-Newton model as well as the step (the active set of L-BFGS-B, simplified).
        pinned = ((x <= self.lower) & (g > 0)) | ((x >= self.upper) & (g < 0))
        free_g = g.masked_fill(pinned, 0.0)
        stacked = torch.cat([y, free_g])
        py, pg = self.precondition(stacked.view(2 * b, *self._image)).view(2, b, n).unbind(0)
        order, s_y, s_g, py_y, py_g = self._store(s, py, stacked, done)
        valid, gamma = self._renew_gram(s_y, py_y, ys, good, done)
        d_memory = self._quasi_newton(valid, gamma, s_g, py_g, pg, order, pinned)
        downhill = (g * d_memory).sum(1, keepdim=True) < 0
        use = valid.any(1, keepdim=True) & downhill
        # A model that points uphill is misleading: that row starts over.
        self.valid = valid & (downhill | ~done)
        # Without a memory: scaled so no pixel of a row moves by more than FIRST_STEP (the
        # gradient's scale says nothing about a good pixel step).
        biggest = pg.abs().amax(1, keepdim=True).clamp_min(1e-30)
        fresh = (pg * (-FIRST_STEP / biggest)).masked_fill_(pinned, 0.0)
        self.d = torch.where(done, torch.where(use, d_memory, fresh), self.d)
        self.t = torch.where(done, 1.0, self.t * 0.5)
        self.tries = torch.where(done, 0, self.tries + 1)

    def _store(
        self, s: torch.Tensor, py: torch.Tensor, stacked: torch.Tensor, done: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """Write the pair (s, P y) to the memory, then read the memory once against y_new and g
        (`stacked`): the ring order, sᵢᵀ y_new, sᵢᵀ g, yᵢᵀ P y_new and yᵢᵀ P g, oldest first."""
        b, n = self._x.shape
        m, slots, small = self.history, self.history + 1, self._small
        # The pair goes to the row's next ring slot (its oldest), or to the scratch slot.
        slot = torch.where(done, self.ptr, m)
        index = torch.cat([slot, slot + slots], 1).unsqueeze(2).expand(b, 2, n)
        self.memory.scatter_(1, index, torch.stack([s, py], 1))
        self.ptr = ptr = torch.where(done, (self.ptr + 1) % m, self.ptr)
        # One pass over the memory: every stored s and P y against y_new and g, taken oldest
        # first (the i-th oldest pair sits in ring slot (ptr + i) mod m).
        # [y, g] as each row's (N, 2) column-major matrix: a view of `stacked`, not a copy
        dots = torch.bmm(self.memory, stacked.view(2, b, n).permute(1, 2, 0)).to(small)
        chrono = (ptr + self._ring) % m
        order = torch.cat([chrono, chrono + slots], 1).unsqueeze(2)
        on_s, on_py = dots.gather(1, order.expand(b, 2 * m, 2)).view(b, 2, m, 2).unbind(1)
        s_y, s_g = on_s.unbind(2)  # sᵢᵀ y_new, sᵢᵀ g
        py_y, py_g = on_py.unbind(2)  # yᵢᵀ P y_new, yᵢᵀ P g
        return order, s_y, s_g, py_y, py_g

    def _renew_gram(
        self,
        s_y: torch.Tensor,
        py_y: torch.Tensor,
        ys: torch.Tensor,
        good: torch.Tensor,
        done: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The small matrices SᵀY and YᵀPY with the new pair in, and each row's valid pairs
        and γ after it."""
        b, m, small = self._x.shape[0], self.history, self._small
        # Where a search ended the oldest pair leaves and the new one is the last row/column.
        newest = done & self._newest
        ended = done.view(b, 1, 1, 1)
        gram = torch.where(ended, self.gram.roll((-1, -1), (2, 3)), self.gram)
        new = torch.stack([s_y, py_y], 1)
        gram = torch.where(newest.view(b, 1, 1, m), new.unsqueeze(3), gram)
        self.gram = torch.where(newest.view(b, 1, m, 1), new.unsqueeze(2), gram)
        valid = torch.where(done, self.valid.roll(-1, 1), self.valid)
        valid = torch.where(newest, good, valid)
        ypy_new = py_y[:, m - 1 :].clamp_min(1e-30)
        self.gamma = torch.where(good, ys.to(small) / ypy_new, self.gamma)
        return valid, self.gamma

    def _quasi_newton(
        self,
        valid: torch.Tensor,
        gamma: torch.Tensor,
        s_g: torch.Tensor,
        py_g: torch.Tensor,
        pg: torch.Tensor,
        order: torch.Tensor,
        pinned: torch.Tensor,
    ) -> torch.Tensor:
        """−H g from the memory's valid pairs (the compact form; pinned pixels left still)."""
        b, n = self._x.shape
        slots, small, x = self.history + 1, self._small, self._x
        # H g = γ P(g − Y u) + S p, with invalid pairs masked out of the small system.
        live = valid.to(small)
        sy, ypy = torch.where(
            (valid.unsqueeze(2) & valid.unsqueeze(1)).unsqueeze(1), self.gram, 0.0
        ).unbind(1)
        r = sy.triu() + torch.diag_embed(1.0 - live)
        u = torch.linalg.solve_triangular(r, (s_g * live).unsqueeze(2), upper=True)
        gamma_u = gamma.unsqueeze(2) * u
        w = sy.diagonal(dim1=1, dim2=2).unsqueeze(2) * u - (gamma * py_g * live).unsqueeze(2)
        p = torch.linalg.solve_triangular(r.mT, torch.baddbmm(w, ypy, gamma_u), upper=False)
        # −H g = S(−p) + (PY)(γu) − γPg: coefficients back to ring slots, one pass.
        coef = torch.zeros((b, 2 * slots, 1), dtype=x.dtype, device=x.device)
        coef.scatter_(1, order, torch.cat([p.neg(), gamma_u], 1).to(x.dtype))
        d_memory = torch.bmm(coef.mT, self.memory).view(b, n)
        return torch.addcmul(d_memory, gamma.to(x.dtype), pg, value=-1).masked_fill_(pinned, 0)


class BoxLBFGS:
    """`BatchBoxLBFGS` for one problem: x is (1, ...), `evaluate` returns (float, gradient)."""

    def __init__(
        self,
        x: torch.Tensor,
        evaluate: Evaluate,
        history: int = 50,
        lower: float = 0.0,
        upper: float = 1.0,
        precondition: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        def batched(point: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            value, grad = evaluate(point)
            return torch.tensor([value], dtype=point.dtype, device=point.device), grad

        self._batch = BatchBoxLBFGS(x, batched, history, lower, upper, precondition)

    @property
    def x(self) -> torch.Tensor:
        return self._batch.x

    def step(self) -> float:
        """One iteration (its line search to the end); returns the loss at the new point (the
        best point seen so far)."""
        value = self._batch.step()
        while int(self._batch.tries[0, 0]):
            value = self._batch.step()
        return float(value[0])
