"""Which format a file is, from its first bytes, never from its name or MIME type.

Three answers: a format Orsay decodes (the Pillow plugin to use, and only that one), a
recognisable picture format Orsay does not take (its name, for an honest refusal), or nothing
(not a picture). Strong signatures (PNG's eight bytes, JPEG's FFD8FF…) make a later decoding
failure "damaged"; weak ones (BMP's "BM", PPM's "P6", ICO's four bytes) also start text files,
so a file with a weak signature that does not decode is "not a picture".
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import NotAnImage, UnsupportedFormat

NOT_AN_IMAGE = "That file is not a picture I can read. Please send a JPEG, PNG, WebP or HEIC image."
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1"}
_HEIF_BRANDS |= {b"msf1", b"MiHE", b"MiHB"}
_AVIF_BRANDS = {b"avif", b"avis"}
_VIDEO_BRANDS = {b"isom", b"iso2", b"mp41", b"mp42", b"qt  ", b"avc1", b"M4V ", b"3gp4", b"3gp5"}
_VIDEO_BRANDS |= {b"dash", b"M4A ", b"mp71"}

# prefix → name shown to the person, for formats Orsay recognises but does not decode
_UNSUPPORTED: tuple[tuple[bytes, str], ...] = (
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"8BPS", "Photoshop PSD"),
    (b"%!PS", "PostScript"),
    (b"\xc5\xd0\xd3\xc6", "PostScript"),
    (b"qoif", "QOI"),
    (b"gimp xcf", "GIMP XCF"),
    (b"icns", "ICNS"),
    (b"DDS ", "DDS"),
    (b"\x00\x00\x02\x00", "CUR"),
    (b"P1", "PBM (P1)"),
    (b"P2", "PGM (P2)"),
    (b"P3", "PPM (P3)"),
    (b"P7", "PAM"),
    (b"Pf", "PFM"),
    (b"PF", "PFM"),
    (b"BPG\xfb", "BPG"),
    (b"FUJIFILMCCD-RAW", "RAW"),
    (b"IIRO", "RAW"),
    (b"IIU\x00", "RAW"),
)


@dataclass(frozen=True)
class Sniffed:
    format: str  # the Pillow plugin id
    strong: bool  # a signature text cannot start with by accident


def sniff(data: bytes) -> Sniffed:
    """The format of `data`; raises UnsupportedFormat or NotAnImage for everything else."""
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed("JPEG", True)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed("PNG", True)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return Sniffed("GIF", True)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniffed("WEBP", True)
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        if head[8:10] == b"CR":
            raise UnsupportedFormat("camera RAW files are not supported", format="RAW")
        return Sniffed("TIFF", True)
    if head[4:8] == b"ftyp":
        return _iso_media(data)
    for prefix, name in _UNSUPPORTED:
        if head.startswith(prefix):
            raise UnsupportedFormat(f"{name} files are not supported", format=name)
    if _looks_like_svg(head, data):
        raise UnsupportedFormat("SVG files are not supported", format="SVG")
    if head[:2] == b"BM":
        return Sniffed("BMP", False)
    if head[:2] in (b"P4", b"P5", b"P6"):
        return Sniffed("PPM", False)
    if head[:4] == b"\x00\x00\x01\x00":
        return Sniffed("ICO", False)
    raise NotAnImage(NOT_AN_IMAGE)


def _iso_media(data: bytes) -> Sniffed:
    """HEIF, AVIF, camera RAW (CR3) or video: read the ftyp box's brands."""
    size = int.from_bytes(data[:4], "big")
    box = data[8 : min(max(size, 16), 256)]
    brands = {box[i : i + 4] for i in range(0, len(box) - 3, 4)}
    if brands & _AVIF_BRANDS:
        return Sniffed("AVIF", True)
    if brands & _HEIF_BRANDS:
        return Sniffed("HEIF", True)
    if b"crx " in brands:
        raise UnsupportedFormat("camera RAW files are not supported", format="RAW")
    if brands & _VIDEO_BRANDS:
        raise NotAnImage("That file is a video, not a picture.")
    raise NotAnImage(NOT_AN_IMAGE)


def _looks_like_svg(head: bytes, data: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return start.startswith((b"<svg", b"<?xml")) and b"<svg" in data[:4096].lower()


def looks_like_text(data: bytes) -> bool:
    """Mostly printable ASCII or UTF-8: a text file that happens to start like a picture."""
    sample = data[:4096]
    if not sample:
        return False
    try:
        text = sample.decode("utf-8", errors="strict")
    except UnicodeDecodeError as error:
        if error.start < len(sample) - 4:  # a cut multibyte character at the end is fine
            return False
        text = sample[: error.start].decode("utf-8")
    printable = sum(ch.isprintable() or ch in "\t\r\n" for ch in text)
    return printable >= 0.95 * len(text)
