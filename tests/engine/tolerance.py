"""Tolerances for float32 checks of identities that hold exactly in real arithmetic (issue 29).

PyTorch picks its CPU kernels by the instruction set: ATen's own (ATEN_CPU_CAPABILITY), oneDNN's
convolutions (ONEDNN_MAX_CPU_ISA) and MKL's, and each path adds float32 terms in its own order.
A float32 identity then holds only to the rounding of its reductions, by an amount that changes
with the CPU: the tiled Wasserstein gradient of tests/engine/test_tiling.py was 7.9e-6 from the
untiled one on this machine's AVX-512 path, 1.09e-5 on AVX2 (the CPU of the issue, where the
old bound of 1e-5 failed) and 1.38e-5 on ATen's default path. Tests whose code runs in float64
compare there instead, where their identities hold to 1e-10; these bounds are for the code that
computes in float32 whatever its input (engine.tiling, engine.losses, engine.color).

`make test-kernels` runs the numerical modules again on the default and AVX2 paths.
"""

from __future__ import annotations

import math

import torch

EPS32 = torch.finfo(torch.float32).eps  # 2^-23 = 1.19e-7; the unit roundoff u is half of it
# λ of `reordered`. The tiled-gradient identity of test_tiling.py, the worst case measured
# (Wasserstein, 5 pictures on each of the default, AVX2 and AVX-512 paths), came to
# 0.36-1.14 × √n·eps with n its 26,880-term statistics: λ = 4 leaves 3.5x over the worst.
CONFIDENCE = 4.0


def reordered(terms: int, eps: float = EPS32) -> float:
    """How far apart, relative to their size, two evaluations of the same sums of `terms` terms
    may land when each adds them in its own order (another kernel path, another split into
    tiles). Rounding errors that behave as independent random variables grow as √n, not n
    (Higham & Mary, "A new approach to probabilistic rounding error analysis", SIAM J. Sci.
    Comput. 41(5), 2019): each evaluation is within about λ·√n·u of the exact sum for a small
    constant λ, so two are within λ·√n·eps of each other."""
    return CONFIDENCE * math.sqrt(terms) * eps


def worst_case(terms: int, eps: float = EPS32) -> float:
    """γ_n = n·u / (1 − n·u) (Higham, Accuracy and Stability of Numerical Algorithms, Lemma 3.1):
    the rounding error of an n-term sum or dot product, or of n operations in a row, relative to
    the sum of the terms' magnitudes, in any order and with or without fused multiply-adds. It
    holds on every kernel path; use it where n is small."""
    u = eps / 2
    return terms * u / (1 - terms * u)
