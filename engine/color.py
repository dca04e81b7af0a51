"""Colour preservation (Gatys et al. 2016, "Preserving Color in Neural Artistic Style Transfer").

`luminance`: transfer style on the luminance channel only, then put the photo's own chroma (the
I and Q of YIQ) back, so the result keeps every colour of the photo. `histogram`: recolour the
painting so its pixel mean and covariance match the photo's before transfer; strokes stay, the
palette becomes the photo's. Tensors are [B, 3, H, W] RGB in [0, 1].
"""

from __future__ import annotations

import torch

_RGB_TO_YIQ = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [0.595716, -0.274453, -0.321263],
        [0.211456, -0.522591, 0.311135],
    ]
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def _apply(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", matrix.to(image.device, image.dtype), image)


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    return _apply(_RGB_TO_YIQ, image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    return _apply(_YIQ_TO_RGB, image)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """Y as a 3-channel gray image, which is what VGG expects to see."""
    y = rgb_to_yiq(image)[:, :1]
    return y.expand(-1, 3, -1, -1).contiguous()


def match_luminance(style_y: torch.Tensor, content_y: torch.Tensor) -> torch.Tensor:
    """Shift/scale the style luminance to the photo's mean and std, as in the paper (eq. 1)."""
    s_mean, s_std = style_y.mean(), style_y.std().clamp_min(1e-5)
    c_mean, c_std = content_y.mean(), content_y.std()
    return ((style_y - s_mean) * (c_std / s_std) + c_mean).clamp(0, 1)


def with_content_chroma(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Luminance of `stylized` (gray or colour) + I/Q of `content` → RGB."""
    y = rgb_to_yiq(stylized)[:, :1]
    iq = rgb_to_yiq(content)[:, 1:]
    return yiq_to_rgb(torch.cat([y, iq], dim=1)).clamp(0, 1)


def _sqrtm(matrix: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    values = values.clamp_min(1e-6).sqrt()
    if inverse:
        values = 1 / values
    return vectors @ torch.diag(values) @ vectors.T


def match_histogram(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """x' = A (x − μs) + μc with A = Σc^½ Σs^-½: the style's pixel distribution gets the
    photo's mean and covariance (the paper's "image analogies" colour transform)."""
    s = style[0].reshape(3, -1).double()
    c = content[0].reshape(3, -1).double()
    s_mean, c_mean = s.mean(1, keepdim=True), c.mean(1, keepdim=True)
    s_cov = torch.cov(s) + 1e-5 * torch.eye(3, dtype=s.dtype, device=s.device)
    c_cov = torch.cov(c) + 1e-5 * torch.eye(3, dtype=s.dtype, device=s.device)
    transform = _sqrtm(c_cov) @ _sqrtm(s_cov, inverse=True)
    out = transform @ (s - s_mean) + c_mean
    return out.reshape_as(style[0]).unsqueeze(0).to(style.dtype).clamp(0, 1)
