"""`orsay stylize`: repaint one photo from the command line, with a progress bar and a report.

Flags map one-to-one onto StylizeOptions (see `options_from_args`), so anything the engine can
do is reachable here, including the classic Gatys recipe:
`--scales 512 --steps 300 --optimizer lbfgs --init content`. torch is imported only when a run
starts, so `orsay --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, get_args

from engine import gallery, imaging
from engine.errors import GalleryError, OrsayError
from engine.options import (
    ColorMode,
    InitName,
    ModelName,
    OptimizerName,
    ProgressEvent,
    Quality,
    StyleInput,
    StyleLossName,
    StylizeOptions,
)
from engine.presets import STRENGTHS
from engine.settings import Settings, check_device
from engine.tiles import MIN_TILE

DEFAULT_SIZE = 512


def parse_strength(text: str) -> float:
    """A number in [0, 1] or one of the named strengths (low, medium, high, ...)."""
    named = STRENGTHS.get(text.strip().lower())
    if named is not None:
        return named
    try:
        value = float(text)
    except ValueError:
        names = "|".join(STRENGTHS)
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or {names}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("strength must be between 0 and 1")
    return value


def parse_scales(text: str) -> tuple[int, ...]:
    try:
        sides = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise argparse.ArgumentTypeError("expected sizes like 128,256,512") from None
    if not sides or min(sides) < 32:
        raise argparse.ArgumentTypeError("every scale must be at least 32 px")
    return sides


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in _names(text))
    except ValueError:
        raise argparse.ArgumentTypeError("expected numbers like 1,0.8,0.5") from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _tile(text: str) -> int:
    value = int(text)
    if value != 0 and value < MIN_TILE:
        raise argparse.ArgumentTypeError(f"must be 0 (never tile) or at least {MIN_TILE}")
    return value


def _device(text: str) -> str:
    try:
        return check_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def register(subparsers: Any, settings: Settings) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "stylize",
        help="repaint a photo in the style of one or more paintings",
        description="Repaint CONTENT in the style of gallery paintings or image files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_arguments(parser, settings)
    parser.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser, settings: Settings) -> None:
    """The flags; --weights, --device and --gallery-dir default to the settings."""
    parser.add_argument("content", type=Path, metavar="CONTENT", help="the photo to repaint")
    parser.add_argument(
        "--style",
        action="append",
        required=True,
        metavar="SLUG|PATH",
        help="gallery slug (see `orsay gallery list`) or image file; repeat to blend styles",
    )
    parser.add_argument(
        "--style-weight",
        action="append",
        type=_non_negative,
        default=None,
        metavar="W",
        help="blend weight of each --style, in order (default 1 each)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help=".jpg, .png or .webp")
    parser.add_argument(
        "--size", type=_positive_int, default=None, help=f"long side in px (default {DEFAULT_SIZE})"
    )
    parser.add_argument(
        "--strength",
        type=parse_strength,
        default=StylizeOptions.strength,
        help="0..1 or " + "|".join(STRENGTHS),
    )
    parser.add_argument(
        "--preserve-colors",
        nargs="?",
        const="luminance",
        default="off",
        choices=get_args(ColorMode),
        help="keep the photo's colours (bare flag: luminance)",
    )
    parser.add_argument("--quality", choices=get_args(Quality), default=StylizeOptions.quality)
    parser.add_argument(
        "--scales", type=parse_scales, default=None, help="explicit schedule, e.g. 128,256,512"
    )
    parser.add_argument("--steps", type=_positive_int, default=None, help="steps per scale")
    parser.add_argument(
        "--tile",
        type=_tile,
        default=None,
        metavar="N",
        help="largest tile side in px: bigger pictures are painted in overlapping tiles, so "
        "memory is set by the tile (0: never; default: from the device's free memory)",
    )
    parser.add_argument(
        "--optimizer", choices=get_args(OptimizerName), default=StylizeOptions.optimizer
    )
    parser.add_argument("--model", choices=get_args(ModelName), default=StylizeOptions.model)
    parser.add_argument(
        "--weights",
        default=settings.weights,
        help="torchvision | random | PATH to a state_dict (env ORSAY_VGG_WEIGHTS)",
    )
    parser.add_argument(
        "--device",
        type=_device,
        default=settings.device,
        help="auto|cpu|cuda|mps (env ORSAY_DEVICE)",
    )
    parser.add_argument(
        "--precision", choices=("auto", "fp32", "bf16"), default=StylizeOptions.precision
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--init", choices=get_args(InitName), default=StylizeOptions.init)
    parser.add_argument(
        "--style-loss", choices=get_args(StyleLossName), default=StylizeOptions.style_loss
    )
    parser.add_argument(
        "--style-scale",
        type=float,
        default=StylizeOptions.style_scale,
        help="size of the painting's brush strokes relative to the output",
    )
    parser.add_argument("--content-weight", type=_non_negative, default=None)
    parser.add_argument(
        "--style-weight-total",
        type=_non_negative,
        default=None,
        help="overall style loss weight (overrides --strength)",
    )
    parser.add_argument("--tv-weight", type=_non_negative, default=None)
    parser.add_argument("--content-layers", type=_names, default=None, metavar="L1,L2")
    parser.add_argument("--style-layers", type=_names, default=None, metavar="L1,L2,...")
    parser.add_argument("--style-layer-weights", type=_floats, default=None, metavar="W1,W2,...")
    parser.add_argument(
        "--no-style-cache",
        action="store_true",
        help="do not reuse cached style targets of gallery paintings",
    )
    parser.add_argument(
        "--gallery-dir",
        type=Path,
        default=settings.gallery,
        help="use this folder as the gallery (env ORSAY_GALLERY_DIR)",
    )
    parser.add_argument("--report", type=Path, default=None, help="write a JSON run report")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def options_from_args(args: argparse.Namespace) -> StylizeOptions:
    """The StylizeOptions a parsed command line asks for. `--scales` without `--size` paints at
    the largest scale."""
    size = args.size or (max(args.scales) if args.scales else DEFAULT_SIZE)
    return StylizeOptions(
        size=size,
        strength=args.strength,
        style_scale=args.style_scale,
        preserve_colors=args.preserve_colors,
        quality=args.quality,
        scales=args.scales,
        steps=args.steps,
        optimizer=args.optimizer,
        model=args.model,
        weights=args.weights,
        device=args.device,
        seed=args.seed,
        init=args.init,
        style_loss=args.style_loss,
        content_weight=args.content_weight,
        style_weight=args.style_weight_total,
        tv_weight=args.tv_weight,
        content_layers=args.content_layers,
        style_layers=args.style_layers,
        style_layer_weights=args.style_layer_weights,
        precision=args.precision,
        style_cache=not args.no_style_cache,
        tile=args.tile,
    )


def style_weights(args: argparse.Namespace) -> list[float]:
    given = list(args.style_weight or [])
    if len(given) > len(args.style):
        raise OrsayError(f"{len(given)} --style-weight values for {len(args.style)} --style")
    weights = given + [1.0] * (len(args.style) - len(given))
    if sum(weights) <= 0:
        raise OrsayError("at least one --style-weight must be positive")
    return weights


def _check(args: argparse.Namespace, options: StylizeOptions) -> None:
    """Refuse what would only fail after minutes of painting."""
    imaging.output_format(args.output)
    layers = options.style_layers
    if options.style_layer_weights and len(options.style_layer_weights) != len(layers or "12345"):
        raise OrsayError("--style-layer-weights needs one weight per style layer")
    if not args.content.is_file():
        raise OrsayError(f"photo not found: {args.content}")


def fetch_missing_styles(args: argparse.Namespace) -> None:
    """Download each gallery painting named by --style that is not on disk yet (one painting,
    checksummed, with a progress bar), so a fresh install needs no `orsay gallery fetch`."""
    for name in args.style:
        try:
            path = gallery.fetch_missing(name, progress=not args.quiet, folder=args.gallery_dir)
        except GalleryError as error:
            slug = gallery.find(name, args.gallery_dir).slug
            raise GalleryError(
                f"could not download the painting {slug!r} ({error}); offline, put {slug}.jpg "
                "in a folder and point ORSAY_GALLERY_DIR (or --gallery-dir) at it"
            ) from error
        if path is not None and not args.quiet:
            print(f"orsay: downloaded {name} into {path.parent}", file=sys.stderr)


def load_styles(args: argparse.Namespace) -> list[StyleInput]:
    return [
        gallery.load_style(name, weight, folder=args.gallery_dir)
        for name, weight in zip(args.style, style_weights(args), strict=True)
    ]


class ProgressBar:
    """A tqdm bar over the whole run (ProgressEvent.fraction), showing scale, loss and ETA."""

    RESOLUTION = 1000

    def __init__(self, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.RESOLUTION,
                bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}{postfix}",
                dynamic_ncols=True,
                file=sys.stderr,
            )

    def __call__(self, event: ProgressEvent) -> None:
        if self.bar is None:
            return
        if event.message:
            self.bar.write(f"orsay: {event.message}", file=sys.stderr)
        stage = {"loading": "loading model", "style_targets": "style targets", "done": "done"}
        scale = f"{event.size}px"
        if event.scale_count > 1:
            scale = f"scale {event.scale_index}/{event.scale_count} {scale}"
        self.bar.set_description_str(stage.get(event.stage, scale), refresh=False)
        parts = []
        if event.stage == "optimizing":
            parts.append(f"step {event.step}/{event.total_steps}")
        if event.tile_count:
            parts.append(f"tile {event.tile}/{event.tile_count}")
        if event.loss is not None:
            parts.append(f"loss {event.loss:.4g}")
        if event.eta_s is not None and event.stage != "done":
            parts.append(f"ETA {_clock(event.eta_s)}")
        self.bar.set_postfix_str(", ".join(parts), refresh=False)
        self.bar.n = round(min(max(event.fraction, 0.0), 1.0) * self.RESOLUTION)
        self.bar.refresh()

    def close(self, *, keep: bool = True) -> None:
        """Finish the bar; `keep=False` (a failed run) erases it so the error line stands alone."""
        if self.bar is not None:
            self.bar.leave = keep
            self.bar.close()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}"


def _jsonable_args(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in vars(args).items():
        if callable(value):
            continue
        out[key] = str(value) if isinstance(value, Path) else value
    return out


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return paint(args, settings)
    except OrsayError as error:
        print(f"orsay: error: {error}", file=sys.stderr)
        return 2


def paint(args: argparse.Namespace, settings: Settings) -> int:
    options = options_from_args(args)
    options.style_cache_dir = options.style_cache_dir or settings.style_cache_dir
    _check(args, options)
    content = imaging.load_image(args.content)
    fetch_missing_styles(args)
    styles = load_styles(args)

    from engine.style_transfer import stylize  # torch loads here, not at `orsay --help`

    began = time.perf_counter()
    bar = ProgressBar(enabled=not args.quiet)
    try:
        result = stylize(content, styles, options, progress=bar)
    except BaseException:
        bar.close(keep=False)
        raise
    bar.close()
    wall = time.perf_counter() - began
    imaging.save_image(result.image, args.output)
    if args.report is not None:
        report = {
            "args": _jsonable_args(args),
            "output": str(args.output),
            "output_size": list(result.image.size),
            "cli_wall_s": round(wall, 3),
            "report": result.report,
        }
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2, default=str) + "\n")
    if not args.quiet:
        width, height = result.image.size
        print(f"wrote {args.output} ({width}×{height}) in {wall:.1f} s", file=sys.stderr)
    return 0
