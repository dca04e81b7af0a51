"""Where a scale's optimization starts, and the image <-> tensor conversions around it.

The first scale starts from the photo recoloured with the main painting's palette (`palette`,
the default), the photo itself (`content`), uniform noise or flat gray; a later scale starts
from the previous scale's result, upsampled, with the photo's missing detail added back. One
job at a time: start images are cheap, and a batch is the concatenation of its jobs' starts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor, to_pil_image

from engine import color
from engine.options import ColorMode, InitName
from engine.schedule import fit


def to_tensor(image: Image.Image, device: torch.device) -> torch.Tensor:
    return pil_to_tensor(image.convert("RGB")).float().div(255).unsqueeze(0).to(device)


def to_image(tensor: torch.Tensor) -> Image.Image:
    """Round (not truncate, as to_pil_image does) to 8 bits: truncation darkens by half a level."""
    rgb = tensor[0].detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    return to_pil_image(rgb)


def resize(image: Image.Image, long_side: int) -> Image.Image:
    size = fit(image.width, image.height, long_side)
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


def upsample(image: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(image, size=like.shape[-2:], mode="bicubic", align_corners=False)


def downsample(image: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(image, size=like.shape[-2:], mode="bilinear", antialias=True)


def start_image(
    content: torch.Tensor,
    *,
    init: InitName,
    preserve_colors: ColorMode,
    palette: Image.Image | None,
    generator: torch.Generator,
    previous: torch.Tensor | None = None,
    detail_transfer: bool = True,
) -> torch.Tensor:
    """The (1, 3, H, W) start of one job's scale. `content` is the photo at this scale,
    `palette` the main painting (used by the palette init), `previous` the last scale's result."""
    if preserve_colors == "luminance":
        content = color.luminance(content)
    if previous is not None:
        up = upsample(previous, content)
        if detail_transfer:
            # Laplacian-pyramid step: add back the photo's detail that the coarse scale could
            # not hold, so the new scale starts sharp rather than blurred.
            up = up + content - upsample(downsample(content, previous), content)
        return up.clamp(0, 1)
    if init == "noise":
        return torch.rand(content.shape, generator=generator).to(content.device)
    if init == "gray":
        return torch.full_like(content, 0.5)
    if init == "palette" and preserve_colors == "off" and palette is not None:
        # The painting's colours cost the optimizer nothing to find but many steps to reach:
        # from the recoloured photo the bench's 384 px run was 38% lower after 20 steps and
        # 1.8% lower after 145 than from the photo itself.
        target = to_tensor(resize(palette, max(content.shape[-2:])), content.device)
        return color.match_histogram(content, target).clamp(0, 1)
    return content.clone()
