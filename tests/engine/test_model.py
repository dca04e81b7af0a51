"""VGG feature extractor: layer names, weights loading (round trip and refusals), truncation."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.errors import WeightsError
from engine.model import build_features, load_features


def test_layer_names_map_to_torchvision_indices(random_weights_vgg16: Path) -> None:
    vgg16 = build_features("vgg16", str(random_weights_vgg16))
    assert {n: vgg16.names[n] for n in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")} == {
        "relu1_1": 1,
        "relu2_1": 6,
        "relu3_1": 11,
        "relu4_1": 18,
        "relu5_1": 25,
    }
    assert vgg16.names["relu4_2"] == 20


def test_vgg19_layer_names(random_weights: Path) -> None:
    vgg19 = build_features("vgg19", str(random_weights))
    assert [vgg19.names[n] for n in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2")] == [
        1,
        6,
        11,
        20,
        22,
    ]
    assert vgg19.names["relu5_1"] == 29


def test_state_dict_round_trip_through_the_loader(tmp_path: Path) -> None:
    """Seeded random init saved with full-model keys and with features-only keys loads back to
    the same network (same activations)."""
    source = build_features("vgg16", "random")
    state = source.layers.state_dict()
    full, bare = tmp_path / "full.pth", tmp_path / "bare.pth"
    torch.save(
        {f"features.{k}": v for k, v in state.items()} | {"classifier.0.weight": torch.ones(2)},
        full,
    )
    torch.save(state, bare)
    x = torch.rand(1, 3, 40, 40)
    expected = source(x, ["relu3_1"])["relu3_1"]
    for path in (full, bare):
        loaded = load_features("vgg16", str(path), "cpu")
        assert not any(p.requires_grad for p in loaded.parameters())
        assert not loaded.training
        # the same weights in the same layers run the same kernels: equal on any path
        assert torch.equal(loaded(x, ["relu3_1"])["relu3_1"], expected)


def test_shape_mismatch_is_a_clear_error(tmp_path: Path, random_weights: Path) -> None:
    state = torch.load(random_weights, weights_only=True)
    state["2.weight"] = torch.zeros(64, 32, 3, 3)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(WeightsError, match=r"2\.weight has shape \(64, 32, 3, 3\)"):
        load_features("vgg19", str(bad), "cpu")


def test_other_architecture_is_refused(random_weights: Path) -> None:
    with pytest.raises(WeightsError, match="does not fit vgg16"):
        load_features("vgg16", str(random_weights), "cpu")


@pytest.mark.parametrize(
    "content", [b"", b"definitely not a pickle", b"PK\x03\x04truncated zip"], ids=str
)
def test_corrupt_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "corrupt.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="corrupt"):
        load_features("vgg19", str(path), "cpu")


def test_missing_file_and_non_state_dict(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        load_features("vgg19", str(tmp_path / "nope.pth"), "cpu")
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(WeightsError, match="not a VGG state_dict"):
        load_features("vgg19", str(path), "cpu")


def test_loader_caches_per_process(random_weights_vgg16: Path) -> None:
    first = load_features("vgg16", str(random_weights_vgg16), "cpu")
    assert load_features("vgg16", str(random_weights_vgg16), torch.device("cpu")) is first


def test_random_weights_warn_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="engine.model"):
        a = build_features("vgg16", "random")
    assert "NOT artistic" in caplog.text
    b = build_features("vgg16", "random")
    assert torch.equal(a.layers[0].weight, b.layers[0].weight)  # seeded: same network each time


def test_forward_stops_after_the_deepest_requested_layer(random_weights_vgg16: Path) -> None:
    net = load_features("vgg16", str(random_weights_vgg16), "cpu")
    ran: list[int] = []
    hooks = [
        layer.register_forward_hook(lambda *_, i=i: ran.append(i))
        for i, layer in enumerate(net.layers)
    ]
    try:
        out = net(torch.rand(1, 3, 32, 32), ["relu2_1", "relu1_1"])
    finally:
        for hook in hooks:
            hook.remove()
    assert set(out) == {"relu1_1", "relu2_1"}
    assert max(ran) == 6


def test_import_touches_no_network() -> None:
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise RuntimeError('network at import')\n"
        "socket.socket.connect = refuse; socket.getaddrinfo = refuse\n"
        "import engine.model, engine.style_transfer, engine.style_cache\n"
        "print('ok')\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_bf16_runs_the_network_cast_once_with_autocasts_numbers() -> None:
    """The bf16 network is a copy with bf16 weights made once, not autocast re-casting every
    frozen weight at every forward (27 casts per forward to relu5_1 before): same features as
    autocast, one cast per forward (the input's)."""
    from torch.profiler import ProfilerActivity, profile

    from engine.context import Context

    net = build_features("vgg19", "random")
    ctx = Context(net, torch.device("cpu"), "bf16", one_forward=True)
    x = torch.rand((1, 3, 40, 32), generator=torch.Generator().manual_seed(0))
    layers = ("relu1_1", "relu3_1", "relu5_1")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = net(x, layers)
    got = ctx.features(x, layers)
    for name in layers:
        assert got[name].dtype == torch.bfloat16
        assert torch.equal(got[name], expected[name]), name
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        ctx.features(x, layers)
    assert sum(e.name == "aten::_to_copy" for e in prof.events()) == 1
    assert ctx.net.cast(torch.bfloat16) is ctx.net.cast(torch.bfloat16)  # made once
