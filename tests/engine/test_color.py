"""Colour preservation: YIQ luminance transfer and histogram matching."""

from __future__ import annotations

import torch
from PIL import Image

from engine import color
from engine.options import StyleInput, StylizeOptions
from engine.style_transfer import _to_tensor, stylize
from tests.engine.tolerance import worst_case


def _round_trip_error(first: torch.Tensor, second: torch.Tensor) -> float:
    """How far `second @ (first @ x)` may land from x, for |x| <= 1, in fp32: each product is
    3 terms (γ_3 of |second||first|, Higham Lemma 3.1, any order), plus how far the two stored
    fp32 matrices are from inverses (_YIQ_TO_RGB is fp32's inv of fp32 _RGB_TO_YIQ): 1.5e-6
    (RGB -> YIQ -> RGB) and 1.25e-6 (the other way) where the old atol was 1e-5; measured
    1.8e-7 for the first."""
    a, b = first.double(), second.double()
    products = 2 * worst_case(3) * float((b.abs() @ a.abs()).sum(1).max())
    return products + float((b @ a - torch.eye(3, dtype=a.dtype)).abs().sum(1).max())


def test_yiq_round_trip() -> None:
    x = torch.rand(1, 3, 5, 7)
    bound = _round_trip_error(color._RGB_TO_YIQ, color._YIQ_TO_RGB)
    assert torch.allclose(color.yiq_to_rgb(color.rgb_to_yiq(x)), x, rtol=0, atol=bound)


def test_content_chroma_is_put_back() -> None:
    torch.manual_seed(1)
    content = torch.rand(1, 3, 8, 8) * 0.2 + 0.4  # away from the clip range
    stylized = torch.rand(1, 3, 8, 8) * 0.2 + 0.4
    out = color.with_content_chroma(stylized, content)
    yiq_out, yiq_c, yiq_s = (color.rgb_to_yiq(t) for t in (out, content, stylized))
    # the same round trip the other way (YIQ -> RGB -> YIQ) of values at most 1 in size: the
    # YIQ put in is the one rgb_to_yiq gives here, bit for bit (the same kernel on the same data)
    bound = _round_trip_error(color._YIQ_TO_RGB, color._RGB_TO_YIQ)
    assert torch.allclose(yiq_out[:, 1:], yiq_c[:, 1:], rtol=0, atol=bound)
    assert torch.allclose(yiq_out[:, :1], yiq_s[:, :1], rtol=0, atol=bound)


def test_histogram_matching_gives_the_style_the_contents_mean_and_covariance() -> None:
    torch.manual_seed(2)
    content = torch.rand(1, 3, 16, 16) * 0.3 + 0.4
    style = torch.rand(1, 3, 16, 16) ** 3 * 0.6
    matched = color.match_histogram(style, content)
    flat_m, flat_c = matched[0].reshape(3, -1), content[0].reshape(3, -1)
    assert torch.allclose(flat_m.mean(1), flat_c.mean(1), atol=1e-4)
    assert torch.allclose(torch.cov(flat_m), torch.cov(flat_c), atol=1e-4)


def test_luminance_mode_output_keeps_the_photos_chroma(
    photo: Image.Image, painting: Image.Image, tiny_options: StylizeOptions
) -> None:
    tiny_options.preserve_colors = "luminance"
    result = stylize(photo, [StyleInput(painting)], tiny_options)
    out = _to_tensor(result.image, torch.device("cpu"))
    content = _to_tensor(
        photo.resize(result.image.size, Image.Resampling.LANCZOS), torch.device("cpu")
    )
    chroma_out = color.rgb_to_yiq(out)[:, 1:]
    chroma_in = color.rgb_to_yiq(content)[:, 1:]
    # 8-bit rounding and the few clipped pixels allow a small error; luminance did change.
    assert (chroma_out - chroma_in).abs().mean() < 0.01
    assert (color.rgb_to_yiq(out)[:, 0] - color.rgb_to_yiq(content)[:, 0]).abs().mean() > 0.005


def test_histogram_mode_runs_end_to_end(
    photo: Image.Image, painting: Image.Image, tiny_options: StylizeOptions
) -> None:
    tiny_options.preserve_colors = "histogram"
    result = stylize(photo, [StyleInput(painting, cache_key="stripes")], tiny_options)
    assert result.image.size == (64, 43)
    assert result.report["style_cache_hits"] == 0  # photo-dependent targets are never cached
