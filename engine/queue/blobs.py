"""Gallery paintings travel with their jobs, stored once by content; one code path for both queues.

The bot sends a gallery painting's bytes with the job (`StyleChoice(slug=..., image=...)`), so a
worker on any machine paints it without a gallery of its own. Fifty jobs of the same painting
must not store it fifty times: on submit `split()` takes the bytes out of the request, keyed by
their sha256, and leaves `StyleChoice.sha256` in their place; the backend stores each blob once
with the set of jobs that need it (Redis: keys.blob_key / blob_refs_key; embedded: the blobs
table) and deletes it when the last of those jobs' data is deleted (acknowledged without
retention, past retention, or forgotten). On claim `join()` puts the bytes back.

Uploaded style pictures (no slug) stay inline in their job: they are the user's data, deleted
with the job, and never shared between users.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace

from engine.queue.seam import JobRequest, StyleChoice


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_key(sha256: str) -> str:
    """The style-target cache key of a painting that travelled with its job."""
    return f"sha256:{sha256}"


def _shared(style: StyleChoice) -> bool:
    return style.slug is not None and style.image is not None


def split(request: JobRequest) -> tuple[JobRequest, dict[str, bytes]]:
    """The request as stored (gallery bytes replaced by their sha256) and those bytes by sha256."""
    blobs: dict[str, bytes] = {}
    styles: list[StyleChoice] = []
    for style in request.styles:
        if _shared(style):
            assert style.image is not None
            sha = digest(style.image)
            blobs[sha] = style.image
            style = replace(style, image=None, sha256=sha)
        styles.append(style)
    return replace(request, styles=styles), blobs


def needed(request: JobRequest) -> list[str]:
    """The blobs a stored request refers to, each once."""
    return list(dict.fromkeys(s.sha256 for s in request.styles if s.sha256 and s.image is None))


def join(request: JobRequest, blobs: Mapping[str, bytes | None]) -> JobRequest:
    """The request a painter gets: each referenced blob back in its style. A blob that is gone
    leaves the style as a bare slug, which the worker's own gallery may still serve."""
    styles = [
        replace(s, image=blobs.get(s.sha256)) if s.sha256 and s.image is None else s
        for s in request.styles
    ]
    return replace(request, styles=styles)
