"""`Context`: what every piece of one batch shares (the network, device, precision, memory
format), and the one way the painter runs the network on a picture.

A low room of its own: it imports only engine.device and engine.model, so the objective, the
losses, tiling and the optimizers all take a `Context` without importing one another for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from engine import device as devices
from engine.model import VGGFeatures


class Context:
    """What every piece of one batch shares: the network, device, precision, memory format.

    `one_forward`: run the network once for the whole batch (the point of batching on a GPU),
    or once per image. Per image is the CPU default: oneDNN picks different convolution kernels
    for a batch than for one image at small sizes (features differ by ~1e-6 relative at
    48-128 px), and L-BFGS amplifies that to 1e-3 within ten steps, so only per-image passes
    keep a job's picture independent of the batch it was in; on 2 CPU cores a batched pass
    gained nothing measurable per job anyway (bench/gpu_throughput.py)."""

    def __init__(
        self,
        net: VGGFeatures,
        device: torch.device,
        precision: str,
        one_forward: bool | None = None,
    ) -> None:
        self.net, self.device, self.precision = net, device, precision
        self.fmt = devices.memory_format(device, precision)
        net.prepare(self.fmt)
        self.one_forward = device.type != "cpu" if one_forward is None else one_forward

    def features(
        self, image: torch.Tensor, layers: Sequence[str], precision: str | None = None
    ) -> dict[str, torch.Tensor]:
        net = self.net
        if (precision or self.precision) == "bf16" and self.device.type in ("cuda", "cpu"):
            net = net.cast(torch.bfloat16)  # what autocast ran, without re-casting the weights
        if self.one_forward or image.shape[0] == 1:
            return net(image, layers)
        rows = [net(x, layers) for x in image.split(1)]
        return {name: torch.cat([r[name] for r in rows]) for name in rows[0]}
