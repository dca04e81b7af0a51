"""Counting what a piece of torch code dispatches and where it waits for the host, on any device.

On a GPU every operator dispatched in eager mode is at least one kernel launch (~5-10 µs of host
time), and every host read (`.item()`, `.tolist()`, `nonzero`, a tensor built from Python data)
stalls the stream until the device catches up. Both can be counted on a CPU with torch.profiler,
where the counts are the same as on a GPU and stable while times are not. bench/step_profile.py
and the sync-budget tests use this; nothing on the painting path imports it.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from torch.autograd.profiler import record_function

LABEL = "orsay."  # record_function names that open a bucket: orsay.network, orsay.step, ...
# Host reads: a scalar or list read back, a data-dependent shape, a tensor made from Python data.
SYNC_OPS = {
    "aten::_local_scalar_dense": "item",
    "aten::nonzero": "nonzero",
    "aten::resolve_neg": "tolist",  # Tensor.tolist() dispatches resolve_conj + resolve_neg
    "aten::lift_fresh": "python_data",
}


@contextlib.contextmanager
def labelled(name: str) -> Iterator[None]:
    """Ops dispatched inside (and the backward of the forward ops) count towards `name`."""
    with record_function(LABEL + name):
        yield


def _label(event: Any) -> str | None:
    name: str = event.name
    return name[len(LABEL) :] if name.startswith(LABEL) else None


def _ancestors(event: Any) -> Iterator[Any]:
    parent = event.cpu_parent
    while parent is not None:
        yield parent
        parent = parent.cpu_parent


def _is_aten(event: Any) -> bool:
    return bool(event.name.startswith("aten::"))


def outermost(events: Iterable[Any]) -> list[Any]:
    """The aten:: events not nested in another aten:: event: one per operator dispatched."""
    return [e for e in events if _is_aten(e) and not any(_is_aten(a) for a in _ancestors(e))]


def host_reads(events: Iterable[Any]) -> Counter[str]:
    """Host reads by kind (`item`, `nonzero`, `tolist`, `python_data`)."""
    reads: Counter[str] = Counter()
    for e in events:
        kind = SYNC_OPS.get(e.name)
        if kind is None:
            continue
        # .item() is counted where it reads; the others where they are dispatched.
        if kind == "item" or not any(_is_aten(a) for a in _ancestors(e)):
            reads[kind] += 1
    return reads


def buckets(events: list[Any], names: Iterable[str], default: str) -> list[tuple[Any, str]]:
    """Each outermost aten:: event with the innermost labelled range around it among `names`
    (else `default`). An op of the autograd backward counts where the forward op that made its
    node ran (matched by sequence number), so a network's backward counts as the network."""
    wanted = set(names)
    forward_label: dict[int, str] = {}
    for e in events:
        if _is_aten(e) and e.sequence_nr >= 0:
            labels = [lab for a in _ancestors(e) if (lab := _label(a)) in wanted]
            if labels:
                forward_label.setdefault(e.sequence_nr, labels[0])
    out: list[tuple[Any, str]] = []
    for e in outermost(events):
        bucket = default
        for a in _ancestors(e):
            if a.name.startswith("autograd::engine::evaluate_function"):
                bucket = forward_label.get(a.sequence_nr, default)
                break
            lab = _label(a)
            if lab in wanted:
                bucket = lab
                break
        out.append((e, bucket))
    return out
