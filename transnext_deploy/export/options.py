"""Export's options, their checks, and its result: what every export module shares."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..artifacts import PRECISIONS
from ..compare import FP32_TOLERANCE, Tolerance
from ..errors import InvalidArgumentError, TransNeXtDeployError
from ..models import VARIANTS, resolve_variant
from ..models.checkpoint import check_checkpoint_option
from ..models.config import MODE, POSITION_BIAS, check_fixed_pool_size, check_input_size, check_pretrain_size
from ..resolution import pair

DEFAULT_OPSET = 17
MIN_OPSET = 17
# |onnx - pytorch| <= atol + rtol * |pytorch| per element, fp32 (how they were chosen: compare.py)
DEFAULT_ATOL = FP32_TOLERANCE.atol
DEFAULT_RTOL = FP32_TOLERANCE.rtol


class ExportError(TransNeXtDeployError):
    """An export that cannot be done or did not validate; the message is one line."""


@dataclass
class ExportOptions:
    variant: str
    resolutions: Sequence[int | tuple[int, int]] = ()
    mode: str = "classify"  # or "backbone"
    pretrain_size: int | None = None
    checkpoint: str | None = None  # path, "official", or None for random weights
    opset: int = DEFAULT_OPSET
    output_dir: str | os.PathLike = "artifacts"
    position_bias: str = "extrapolate"
    fixed_pool_size: int | None = None  # linear inference mode: every aggregated-attention stage pools to N x N
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    precisions: Sequence[str] = PRECISIONS  # the graphs written: fp32 always, fp16 unless left out
    seed: int = 0
    threads: int = 2


@dataclass
class ArtifactResult:
    directory: str
    resolution: tuple[int, int]
    files: dict[str, int]  # name -> bytes
    blocks_fused: int
    validation: dict
    seconds: float = 0.0
    engines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_options(options: ExportOptions) -> ExportOptions:
    """Refuse bad options before any work (no model is built); returns them normalised: the variant
    without its prefix, the resolutions as (height, width) pairs (default: the training size)."""
    try:
        variant = resolve_variant(options.variant, "size")
        mode = MODE.parse(options.mode)
        position_bias = POSITION_BIAS.parse(options.position_bias)
        fixed_pool_size = check_fixed_pool_size(options.fixed_pool_size)
        Tolerance(options.atol, options.rtol)
        precisions = check_graph_precisions(options.precisions)
        if options.pretrain_size is not None:
            check_pretrain_size(options.pretrain_size)
    except InvalidArgumentError as exc:
        raise ExportError(str(exc)) from None
    if options.opset < MIN_OPSET:
        raise ExportError(f"opset {options.opset} is too old: LayerNormalization needs opset >= {MIN_OPSET}")
    check_checkpoint_option(options.checkpoint)
    config = VARIANTS[variant]
    resolutions = list(dict.fromkeys(pair(r) for r in options.resolutions)) or [pair(config.train_size)]
    for h, w in resolutions:
        try:
            check_input_size(config, h, w, variant, fixed_pool_size)
        except InvalidArgumentError as exc:
            raise ExportError(f"unsupported resolution {h}x{w}: {exc}") from None
    check_output_dir(Path(options.output_dir))
    return replace(options, variant=variant, mode=mode, position_bias=position_bias, resolutions=resolutions,
                   precisions=precisions)


def check_graph_precisions(precisions) -> tuple[str, ...]:
    """The precisions of the graphs to write, in PRECISIONS order: fp32 always (the fp16 graphs are
    made from the fp32 ones, and fp32 is what every runtime takes), fp16 when asked for."""
    wanted = {str(p).lower() for p in precisions}
    unknown = sorted(wanted - set(PRECISIONS))
    if unknown or "fp32" not in wanted:
        raise InvalidArgumentError(f"graph precisions are fp32, with fp16 optional; got {', '.join(precisions) or 'none'}")
    return tuple(p for p in PRECISIONS if p in wanted)


def check_output_dir(output_dir: Path) -> None:
    """Refuse an output directory that cannot be created or written, creating nothing (export()
    creates it, and removes what it created when the export fails)."""
    if output_dir.exists() and not output_dir.is_dir():
        raise ExportError(f"output directory {output_dir} is a file")
    existing = output_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ExportError(f"cannot create output directory {output_dir}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == output_dir else f"cannot be created: {existing} is not writable"
        raise ExportError(f"output directory {output_dir} {what}")


__all__ = ["DEFAULT_ATOL", "DEFAULT_OPSET", "DEFAULT_RTOL", "MIN_OPSET", "ArtifactResult", "ExportError",
           "ExportOptions", "check_graph_precisions", "check_options", "check_output_dir"]
