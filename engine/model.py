"""VGG feature extractor: torchvision's VGG19/VGG16 `features`, frozen, with ImageNet
normalization inside so callers feed plain RGB in [0, 1].

Weights come from torchvision's weights API (downloaded once into the torch cache), a local
state_dict, or a seeded random init for tests. `load_features` caches per process so a queue
worker pays for loading once. Nothing here touches the network at import time.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn
from torchvision import models
from torchvision.models import vgg

from engine.errors import WeightsError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_SEED = 0  # `random` weights are always the same network, so tests are reproducible
DEFAULT_CONTENT_LAYERS = ("relu4_2",)
DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


_CONFIGS = {"vgg19": "E", "vgg16": "D"}


def _architecture(model: str) -> nn.Sequential:
    """torchvision's `vggNN().features`, built without the 120M-parameter classifier we would
    throw away (that init alone costs seconds), and initialised like `VGG.__init__`."""
    if model not in _CONFIGS:
        raise WeightsError(f"unknown model {model!r} (choose vgg19 or vgg16)")
    features = vgg.make_layers(vgg.cfgs[_CONFIGS[model]])
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return features


def layer_indices(features: Iterable[nn.Module]) -> dict[str, int]:
    """Name every ReLU `reluB_I` (block B, conv I) by walking the layers, so the same code maps
    both architectures: vgg19 relu4_2=22, vgg16 relu4_1=18, relu4_2=20, relu5_1=25."""
    names: dict[str, int] = {}
    block, conv = 1, 0
    for index, layer in enumerate(features):
        if isinstance(layer, nn.Conv2d):
            conv += 1
        elif isinstance(layer, nn.ReLU):
            names[f"relu{block}_{conv}"] = index
        elif isinstance(layer, nn.MaxPool2d | nn.AvgPool2d):
            block, conv = block + 1, 0
    return names


class VGGFeatures(nn.Module):
    """Returns the activations of the named layers; stops after the deepest one requested, so
    layers past it cost nothing.

    The input is normalised in its own precision (fp32), then converted once to the weights'
    dtype and memory format, as autocast would convert it for the first convolution. `cast`
    gives the same network with its weights in another dtype, made once: running bf16 under
    autocast re-cast every frozen conv weight and bias at every forward (27 casts per
    evaluation to relu5_1, bench/step_profile.py), for the same numbers."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, features: nn.Sequential, model: str, weights: str) -> None:
        super().__init__()
        self.model_name, self.weights_name = model, weights
        self.layers = features
        self.names = layer_indices(features)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        for layer in self.layers:
            if isinstance(layer, nn.ReLU):
                layer.inplace = False  # captured activations must not be overwritten
        self.requires_grad_(False)
        self.eval()
        self.input_format = torch.contiguous_format
        self._casts: dict[torch.dtype, VGGFeatures] = {}
        self._lock = threading.Lock()

    @property
    def dtype(self) -> torch.dtype:
        return next(self.layers.parameters()).dtype

    def prepare(self, memory_format: torch.memory_format) -> None:
        """Keep the weights (and take inputs) in `memory_format`: channels_last is what makes
        oneDNN/cuDNN bf16 convolutions fast. Idempotent; casts follow."""
        with self._lock:
            if self.input_format != memory_format:
                self.layers.to(memory_format=memory_format)
                self.input_format = memory_format
                self._casts.clear()

    def cast(self, dtype: torch.dtype) -> VGGFeatures:
        """This network with its conv weights in `dtype` (made once, then shared; the input
        normalisation stays fp32)."""
        if dtype == self.dtype:
            return self
        with self._lock:
            if dtype not in self._casts:
                twin = copy.copy(self)
                twin._modules = dict(self._modules)
                # the new weights stand in for the old in the copy, so no fp32 copy is made
                memo: dict[int, object] = {
                    id(p): nn.Parameter(p.detach().to(dtype), requires_grad=False)
                    for p in self.layers.parameters()
                }
                twin.layers = copy.deepcopy(self.layers, memo)
                twin._casts, twin._lock = {}, threading.Lock()
                self._casts[dtype] = twin
            return self._casts[dtype]

    def index(self, name: str) -> int:
        if name not in self.names:
            known = ", ".join(sorted(self.names))
            raise ValueError(f"unknown layer {name!r} for {self.model_name}; known: {known}")
        return self.names[name]

    def forward(self, image: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        wanted = {self.index(name): name for name in layers}
        out: dict[str, torch.Tensor] = {}
        x = ((image - self.mean) / self.std).to(self.dtype, memory_format=self.input_format)
        last = max(wanted)
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index in wanted:
                out[wanted[index]] = x
            if index == last:
                break
        return out


def _conv_keys(features: nn.Sequential) -> dict[str, torch.Size]:
    return {k: v.shape for k, v in features.state_dict().items()}


def _features_state(raw: object, source: str) -> dict[str, torch.Tensor]:
    """Accept full-model keys (`features.N.weight`) or features-only keys (`N.weight`)."""
    if isinstance(raw, Mapping) and "state_dict" in raw and isinstance(raw["state_dict"], Mapping):
        raw = raw["state_dict"]
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise WeightsError(f"{source} is not a VGG state_dict")
    prefixed = {k[len("features.") :]: v for k, v in raw.items() if k.startswith("features.")}
    return prefixed or dict(raw)


def _validated(state: dict[str, torch.Tensor], features: nn.Sequential, source: str, model: str):
    expected = _conv_keys(features)
    missing = [k for k in expected if k not in state]
    if missing:
        raise WeightsError(f"{source} does not fit {model}: missing {', '.join(missing[:4])}")
    for key, shape in expected.items():
        if state[key].shape != shape:
            raise WeightsError(
                f"{source} does not fit {model}: {key} has shape {tuple(state[key].shape)}, "
                f"expected {tuple(shape)}"
            )
    return {k: state[k].float() for k in expected}


def _load_state(model: str, weights: str, features: nn.Sequential) -> dict[str, torch.Tensor]:
    if weights == "torchvision":
        enum = models.VGG19_Weights if model == "vgg19" else models.VGG16_Weights
        try:  # downloads once into the torch hub cache, with torchvision's progress bar
            raw = enum.IMAGENET1K_V1.get_state_dict(progress=True)
        except Exception as error:  # network, disk or hash failures all mean "no weights"
            raise WeightsError(
                f"could not download torchvision {model} weights ({type(error).__name__}); "
                "pass a local state_dict with --weights PATH"
            ) from error
        return _validated(_features_state(raw, "torchvision weights"), features, "weights", model)
    path = Path(weights).expanduser()
    source = f"weights file {path.name!r}"
    if not path.is_file():
        raise WeightsError(f"{source} not found")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"{source} is corrupt or not a torch state_dict") from error
    return _validated(_features_state(raw, source), features, source, model)


def build_features(model: str, weights: str) -> VGGFeatures:
    """Construct and load one extractor (uncached; see `load_features`)."""
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            features = _architecture(model)
        log.warning(
            "USING RANDOM %s WEIGHTS: output only moves colors and noise, it is NOT artistic. "
            "Use --weights torchvision or a trained state_dict for real results.",
            model.upper(),
        )
    else:
        features = _architecture(model)
        features.load_state_dict(_load_state(model, weights, features))
    return VGGFeatures(features, model, weights)


_cache: dict[tuple[str, str, str, int], VGGFeatures] = {}
_cache_lock = threading.Lock()


def weights_identity(weights: str) -> str:
    """A string that changes when a weights file changes, for this cache and the style cache."""
    if weights in ("torchvision", "random"):
        return weights
    try:
        stat = os.stat(weights)
    except OSError:
        return weights
    return f"{os.path.abspath(weights)}@{stat.st_size}:{stat.st_mtime_ns}"


def load_features(model: str, weights: str, device: torch.device | str) -> VGGFeatures:
    """The process-wide extractor for (model, weights, device); loaded once, then shared.

    The module is frozen and used read-only, so concurrent painters can share it."""
    device = torch.device(device)
    key = (model, weights_identity(weights), device.type, device.index or 0)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = build_features(model, weights).to(device)
        return _cache[key]


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
