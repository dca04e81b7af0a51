"""Typed errors the engine raises, so callers (CLI, queue, bot) can phrase them for people.

Every error carries a short English message that is safe to show to a user: it never contains
file-system paths outside the data dir, tokens, or raw exception dumps.
"""

from __future__ import annotations


class OrsayError(Exception):
    """Base of every error the engine raises on purpose."""


class ImageError(OrsayError):
    """The input is not a usable picture. `code` is a stable key the bot maps to a translation;
    `params` holds the numbers (or format names) that translation needs, so no language has to
    parse the English message."""

    code = "bad_image"

    def __init__(self, message: str = "", **params: int | str) -> None:
        super().__init__(message)
        self.params: dict[str, int | str] = params


class NotAnImage(ImageError):
    """Not a picture at all (text, HTML, a video, random bytes)."""

    code = "not_an_image"


class UnsupportedFormat(NotAnImage):
    """A recognisable picture format Orsay does not take; params: format."""

    code = "unsupported_format"


class CorruptImage(ImageError):
    """A file of a format Orsay takes whose data is damaged or cut short."""

    code = "corrupt_image"


class ImageTooLarge(ImageError):
    """More pixels than the decode budget; params: width, height, megapixels, limit_megapixels."""

    code = "image_too_large"


class FileTooLarge(ImageTooLarge):
    """More bytes than may be downloaded; params: megabytes, limit_megabytes."""

    code = "file_too_large"


class ImageTooSmall(ImageError):
    """A side shorter than the painter can use; params: width, height, min_side."""

    code = "image_too_small"


class ImageTooCostly(ImageError):
    """Decoding would exceed the time or memory budget (a hostile or oddly saved file)."""

    code = "image_too_costly"


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
