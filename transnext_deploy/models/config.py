"""The variants and the options of a TransNeXt model, checked without building one.

Every layer that takes a variant name or a model option (the CLI, export, bench, `create_model`)
checks it here, once, with the same message: `resolve_variant` strips the `transnext_` prefix and
names the choices, the `Choice` constants check the string options, `check_fixed_pool_size` checks
the linear mode's pool size, and `check_input_size` / `check_pretrain_size` answer from the
configuration alone whether a model can be built for a size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import InvalidArgumentError
from ..resolution import pair
from .position_bias import stage_grids, trained_grids

VARIANT_PREFIX = "transnext_"


@dataclass(frozen=True)
class TransNeXtConfig:
    embed_dims: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    window_sizes: tuple[int | None, ...] = (3, 3, 3, None)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    mlp_ratios: tuple[int, int, int, int] = (8, 8, 4, 4)
    train_size: int = 224  # resolution the published ImageNet-1K weights were trained at
    patch_size: int = 4


VARIANTS: dict[str, TransNeXtConfig] = {
    "micro": TransNeXtConfig((48, 96, 192, 384), (2, 4, 8, 16), (2, 2, 15, 2)),
    "tiny": TransNeXtConfig((72, 144, 288, 576), (3, 6, 12, 24), (2, 2, 15, 2)),
    "small": TransNeXtConfig((72, 144, 288, 576), (3, 6, 12, 24), (5, 5, 22, 5)),
    "base": TransNeXtConfig((96, 192, 384, 768), (4, 8, 16, 32), (5, 5, 23, 5)),
    "micro_AAAA": TransNeXtConfig(
        (48, 96, 192, 384), (2, 4, 8, 16), (2, 2, 15, 2),
        window_sizes=(3, 3, 3, 3), sr_ratios=(16, 8, 4, 2), train_size=256,
    ),
}


def resolve_variant(name: str, what: str = "TransNeXt variant") -> str:
    """'transnext_tiny' or 'tiny' -> 'tiny'; anything else raises InvalidArgumentError naming the
    choices. `what` names the option in the message ("size" on the command line)."""
    key = name.removeprefix(VARIANT_PREFIX) if isinstance(name, str) else name
    if key not in VARIANTS:
        raise InvalidArgumentError(f"unknown {what} {name!r}; choose one of {', '.join(VARIANTS)}")
    return key


@dataclass(frozen=True)
class Choice:
    """The allowed values of a string option; `parse` is its one check."""

    name: str  # the option's name in the Python API, used in messages
    values: tuple[str, ...]

    @property
    def text(self) -> str:
        """'a or b', 'a, b or c'"""
        return " or ".join([", ".join(self.values[:-1]), self.values[-1]]) if len(self.values) > 1 else self.values[0]

    def parse(self, value: object, what: str | None = None) -> str:
        """`value` when it is one of the values, else InvalidArgumentError; `what` replaces the
        option's name in the message (e.g. "--mode" on the command line)."""
        if isinstance(value, str) and value in self.values:
            return value
        raise InvalidArgumentError(f"{what or self.name} must be {self.text}, got {value!r}")


AttentionImpl = Literal["fast", "plain", "fused"]
PositionBiasMode = Literal["extrapolate", "interpolate"]
ExportMode = Literal["classify", "backbone"]
ATTENTION = Choice("attention", ("fast", "plain", "fused"))
POSITION_BIAS = Choice("position_bias", ("extrapolate", "interpolate"))
MODE = Choice("mode", ("classify", "backbone"))  # classifier logits, or the backbone's four feature maps


def check_fixed_pool_size(value: object, what: str = "fixed_pool_size") -> int | None:
    """The linear inference mode's pool size (section 4.1 of the paper): None, or a positive int; else
    InvalidArgumentError. `what` names the option in the message ("--fixed-pool-size" on the command line)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{what} must be a positive integer (the side of every pool grid), got {value!r}")
    return value


def _pool_fits(grid: tuple[int, int], sr: int, fixed_pool_size: int | None) -> bool:
    """Whether an aggregated-attention stage of this token grid can pool. The default grid is
    (H // sr, W // sr) and must be non-empty; a fixed N x N grid must be smaller than the grid's
    shorter side, as the published linear mode asserts."""
    if fixed_pool_size is None:
        return grid[0] // sr >= 1 and grid[1] // sr >= 1
    return fixed_pool_size < min(grid)


def min_input_side(config: TransNeXtConfig, fixed_pool_size: int | None = None) -> int:
    """Smallest image side for which every aggregated-attention stage can pool (see _pool_fits)."""
    side = 1
    while True:
        grids = stage_grids(side, side)
        if all(_pool_fits(g, sr, fixed_pool_size) for g, sr, ws in zip(grids, config.sr_ratios, config.window_sizes)
               if ws):
            return side
        side += 1


def check_input_size(config: TransNeXtConfig, height: int, width: int, name: str = "custom",
                     fixed_pool_size: int | None = None) -> None:
    """Raise InvalidArgumentError naming the stage and reason when a model of `config` (with this
    fixed pool size, if any) cannot take an input of this size (no model is built)."""
    if height < 1 or width < 1:
        raise InvalidArgumentError(f"input size {height}x{width} must be positive")
    grids = stage_grids(height, width)
    for i, (grid, sr, ws) in enumerate(zip(grids, config.sr_ratios, config.window_sizes)):
        if ws and not _pool_fits(grid, sr, fixed_pool_size):
            if fixed_pool_size is None:
                model, reason = "", f"and sr_ratio {sr}, so its pool grid would be empty"
            else:
                model = f" with fixed_pool_size {fixed_pool_size}"
                reason = "and the pool size must be smaller than its shorter side"
            raise InvalidArgumentError(
                f"input {height}x{width} is too small for {VARIANT_PREFIX}{name}{model}: stage {i + 1} has a "
                f"{grid[0]}x{grid[1]} token grid {reason} "
                f"(smallest accepted side: {min_input_side(config, fixed_pool_size)})")


def check_pretrain_size(pretrain_size: int | tuple[int, int]) -> tuple[int, int]:
    """The size the weights were trained at, as (height, width); it scales the relative coordinates
    of the position bias, which divide by the last stage's side - 1."""
    size = pair(pretrain_size)
    if min(trained_grids(*size)[-1]) < 2:
        raise InvalidArgumentError(f"pretrain_size {size} is too small: the last stage grid must be at least "
                                   "2x2 (relative coordinates are divided by side - 1)")
    return size


__all__ = [
    "ATTENTION",
    "MODE",
    "POSITION_BIAS",
    "VARIANTS",
    "AttentionImpl",
    "Choice",
    "ExportMode",
    "PositionBiasMode",
    "TransNeXtConfig",
    "check_fixed_pool_size",
    "check_input_size",
    "check_pretrain_size",
    "min_input_side",
    "resolve_variant",
]
