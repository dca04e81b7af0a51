"""Which waiting jobs a worker takes together, for both backends.

A worker always claims the head of the fair line, as with one job at a time. When its painter is
a `BatchPainter` with room for more, it then looks a few places further down the line
(`lookahead`: LOOKAHEAD places per batch slot, so a compatible job far back never jumps a whole
queue) and takes, in fair order, the jobs with the head's bucket, up to the painter's `batch`.
The head is thus always in the first batch, and a job is never painted before a compatible job
ahead of it.

A retried job (one whose earlier try died with its worker) is painted alone and never joins a
batch: a photo that kills its worker then takes down no batch-mates on its retries, so the
innocent jobs of its first batch are retried once and painted, while it uses up its own tries.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Hashable, Iterable

from engine.queue.seam import BatchPainter, JobRequest, Painter

log = logging.getLogger(__name__)
LOOKAHEAD = 4  # places down the line looked at per batch slot
KNOWN_MAX = 4096  # buckets remembered (a job's request never changes, so neither does its bucket)


def batch_limit(painter: Painter) -> int:
    """Jobs `painter` paints at once: its `batch` for a BatchPainter, else 1."""
    if isinstance(painter, BatchPainter):
        return max(1, int(painter.batch))
    return 1


class Picker:
    """The batching policy of one worker: bucket keys, remembered per job id, and the choice of
    the head's companions. With a batch of 1 it never looks past the head."""

    def __init__(self, painter: Painter) -> None:
        self.painter = painter
        self.limit = batch_limit(painter)
        self._known: OrderedDict[str, Hashable | None] = OrderedDict()

    @property
    def lookahead(self) -> int:
        """How many places behind the head are looked at (0: one job at a time)."""
        return 0 if self.limit <= 1 else LOOKAHEAD * self.limit

    def known(self, job_id: str) -> bool:
        return job_id in self._known

    def key(self, job_id: str, request: JobRequest | None = None) -> Hashable | None:
        """The job's bucket; `request` is needed the first time. None: paint it alone (the
        painter could not say, e.g. an unreadable photo, which then fails on its own)."""
        if job_id in self._known:
            self._known.move_to_end(job_id)
            return self._known[job_id]
        if request is None or not isinstance(self.painter, BatchPainter):
            return None
        try:
            key = self.painter.bucket(request)
        except Exception as exc:  # the job fails when painted, alone, with the painter's reason
            log.debug("job %s: no bucket (%s); it is painted alone", job_id, exc)
            key = None
        self._known[job_id] = key
        if len(self._known) > KNOWN_MAX:
            self._known.popitem(last=False)
        return key

    def companions(
        self, head: Hashable | None, candidates: Iterable[tuple[str, bool]]
    ) -> list[str]:
        """Ids to paint with a head of bucket `head`, from (job id, first try?) pairs in fair
        order whose keys are known (`key` was called): the same bucket, first tries only, at
        most `limit - 1`. The caller claims them only if they still wait."""
        if head is None or self.limit <= 1:
            return []
        chosen = []
        for job_id, first_try in candidates:
            if first_try and self._known.get(job_id) == head:
                chosen.append(job_id)
                if len(chosen) == self.limit - 1:
                    break
        return chosen
