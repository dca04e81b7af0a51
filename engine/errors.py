"""Typed errors the engine raises, so callers (CLI, queue, bot) can phrase them for people.

Every error carries a short English message that is safe to show to a user: it never contains
file-system paths outside the data dir, tokens, or raw exception dumps.
"""

from __future__ import annotations


class OrsayError(Exception):
    """Base of every error the engine raises on purpose."""


class ImageError(OrsayError):
    """The input is not a usable picture. `code` is a stable key the bot maps to a translation."""

    code = "bad_image"


class NotAnImage(ImageError):
    code = "not_an_image"


class CorruptImage(ImageError):
    code = "corrupt_image"


class ImageTooLarge(ImageError):
    code = "image_too_large"


class ImageTooSmall(ImageError):
    code = "image_too_small"


class StyleNotFound(OrsayError):
    """A gallery slug that is not in the gallery, or a style path that does not exist."""

    code = "style_not_found"


class GalleryError(OrsayError):
    """Gallery download or checksum failure."""

    code = "gallery_error"


class WeightsError(OrsayError):
    """Model weights missing, corrupt, or of the wrong shape."""

    code = "weights_error"


class Cancelled(OrsayError):
    """Raised by the painter between steps when its cancel event is set."""
