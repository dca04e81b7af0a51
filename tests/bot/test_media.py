"""bot.media: the bot validates and normalises a picture once; the queue gets the result."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot import media
from engine.errors import FileTooLarge, ImageTooSmall
from tests.engine.imaging.samples import encode, gradient, jpeg_exif


def test_validate_returns_the_normalised_upright_picture() -> None:
    stored = gradient((80, 40))
    data = encode(stored, "JPEG", quality=95, exif=jpeg_exif(6))
    normal = media.validate(data)
    with Image.open(io.BytesIO(normal)) as opened:
        assert opened.format == "JPEG" and opened.size == (40, 80)  # turned, once, here


def test_validate_refuses_with_params_the_texts_need() -> None:
    with pytest.raises(FileTooLarge) as too_big:
        media.validate(b"\xff\xd8\xff" + b"\0" * media.MAX_DOWNLOAD_BYTES)
    assert media.refusal("en", too_big.value).startswith("That file is too large: 21 MB")
    with pytest.raises(ImageTooSmall) as small:
        media.validate(encode(Image.new("RGB", (500, 8)), "PNG"))
    assert "500×8" in media.refusal("ru", small.value) and "16" in media.refusal("ru", small.value)
