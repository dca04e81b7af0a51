"""engine.batching: which jobs share a batch, and in what order batches form."""

from __future__ import annotations

import dataclasses

from engine.batching import alone, bucket_key, group
from engine.options import StylizeOptions, Tuning
from engine.schedule import PRINT_FROM


def test_jobs_differing_only_per_job_share_a_bucket() -> None:
    base = StylizeOptions(size=384)
    varied = dataclasses.replace(
        base, strength=0.9, preserve_colors="luminance", init="noise", seed=4, quality="high"
    )
    assert bucket_key((960, 640), base) == bucket_key((1500, 1000), varied)  # same 3:2 output


def test_shape_network_and_schedule_split_buckets() -> None:
    base = StylizeOptions(size=384)
    key = bucket_key((960, 640), base)
    assert bucket_key((640, 960), base) != key  # portrait
    assert bucket_key((1000, 640), base) != key  # another aspect
    assert bucket_key((960, 640), dataclasses.replace(base, size=512)) != key
    assert bucket_key((960, 640), dataclasses.replace(base, model="vgg16")) != key
    assert bucket_key((960, 640), dataclasses.replace(base, scales=(192, 384))) != key
    tuned = dataclasses.replace(base, tuning=Tuning(lbfgs_history=10))
    assert bucket_key((960, 640), tuned) != key
    assert bucket_key((960, 640), dataclasses.replace(base, tile=256)) != key


def test_big_prints_are_painted_alone() -> None:
    assert not alone(StylizeOptions(size=1024))
    assert alone(StylizeOptions(size=PRINT_FROM))  # the print ladder: hours on a CPU
    assert alone(StylizeOptions(size=1024, quality="print"))  # a print, whatever its size


def test_group_keeps_first_come_order_and_the_limit() -> None:
    keys = ["a", "b", "a", "a", "b", "c", "a"]
    assert group(keys, 2) == [[0, 2], [1, 4], [3, 6], [5]]
    assert group(keys, 1) == [[i] for i in range(len(keys))]
