"""Which jobs can be painted in one batch: a pure function a worker uses to pick them.

Jobs share a batch when one forward/backward can serve them all: the same network (model,
weights, device, precision), the same layers and style loss, the same optimizer and tuning, and
the same output shape and schedule, so every scale has one tensor shape. Shapes are grouped,
not padded: padding would change a job's Gram statistics and total variation, so a padded job
would no longer paint what it paints alone. Content, paintings, strength, colour mode, init,
seed, step budget and early-stop tolerance may differ per job. No torch here.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from engine.options import StylizeOptions
from engine.presets import PRINT
from engine.schedule import PRINT_FROM, fit, plan


def bucket_key(content_size: tuple[int, int], options: StylizeOptions) -> Hashable:
    """Equal for exactly the jobs that `engine.style_transfer.stylize_batch` accepts together.
    `content_size` is the photo's (width, height) as sent; only its aspect matters."""
    return (
        fit(*content_size, options.size),
        plan(options).sides,
        options.model,
        options.weights,
        options.device,
        options.precision,
        options.optimizer,
        options.style_loss,
        options.content_layers,
        options.style_layers,
        options.style_layer_weights,
        options.tile,
        options.tuning,
    )


def alone(options: StylizeOptions) -> bool:
    """Whether a job is painted by itself: a big print (the print quality, or a size on the
    print ladder, engine.schedule.PRINT_FROM) needs the device's memory for its own tiles, and
    batched with others it would hold their results back for its whole long run."""
    return options.quality == PRINT or options.size >= PRINT_FROM


def group(keys: Sequence[Hashable], limit: int) -> list[list[int]]:
    """Indices of `keys` in batches of at most `limit` equal keys, each batch in first-come
    order and batches ordered by their first member (so a queue's fair order is kept)."""
    batches: list[list[int]] = []
    open_batch: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        current = open_batch.get(key)
        if current is None or len(current) >= limit:
            current = open_batch[key] = []
            batches.append(current)
        current.append(i)
    return batches
