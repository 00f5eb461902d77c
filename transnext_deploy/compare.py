"""Numerical comparison of an output against its reference, as every check in the toolkit reports it.

Pass/fail follows `numpy.allclose` and polygraphy: element-wise |out - ref| <= atol + rtol * |ref|,
with `ref` the reference (PyTorch). `allclose_check` also names the element that comes closest to
its bound (or passes it by the most), so a failure says where and by how much.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .errors import InvalidArgumentError


@dataclass(frozen=True)
class ErrorStats:
    max_abs: float  # max |out - ref|
    mean_abs: float  # mean |out - ref|
    relative: float  # max |out - ref| / max |ref|
    cosine: float  # cosine similarity of the flattened tensors
    ref_max_abs: float

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"max-abs {self.max_abs:.3e}, relative {self.relative:.3e} (of max|ref| {self.ref_max_abs:.3e}), "
                f"mean-abs {self.mean_abs:.3e}, cosine {self.cosine:.8f}")


@dataclass(frozen=True)
class Tolerance:
    """|out - ref| <= atol + rtol * |ref|, element-wise (numpy.allclose, polygraphy --atol/--rtol)."""

    atol: float
    rtol: float

    def __post_init__(self) -> None:
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if not (math.isfinite(number) and number >= 0):
                raise InvalidArgumentError(f"{name} must be a finite number >= 0, got {value!r}")
            object.__setattr__(self, name, number)

    def as_dict(self) -> dict:
        return {"atol": self.atol, "rtol": self.rtol}

    def __str__(self) -> str:
        return f"atol {self.atol:g}, rtol {self.rtol:g}"


@dataclass(frozen=True)
class WorstElement:
    """The element with the largest |out - ref| / (atol + rtol * |ref|); ratio <= 1 passes."""

    index: tuple[int, ...]
    abs_diff: float
    ref_abs: float
    allowed: float  # atol + rtol * |ref| at that element
    ratio: float  # abs_diff / allowed (inf when allowed is 0 and abs_diff is not, or not finite)

    def as_dict(self) -> dict:
        return {"index": list(self.index), "abs_diff": self.abs_diff, "ref_abs": self.ref_abs,
                "allowed": self.allowed, "ratio": self.ratio}

    def __str__(self) -> str:
        return (f"|a-b| {self.abs_diff:.3e} at {list(self.index)} where |b| = {self.ref_abs:.3e} "
                f"(allowed {self.allowed:.3e}, {self.ratio:.2f}x the bound)")


# The fp32 default for every exported graph against PyTorch (export's --atol/--rtol, fp32 engines),
# from `benchmarks/measure_export_noise.py` (README, "Tolerances"): over micro and tiny at 224 and
# 384 and small at 224, classifier logits scaled to max |logits| = 30 and backbone features, the
# smallest atol that passes at rtol 1e-4 is 2.2e-5 (worst |a - b| 4.9e-5, small's logits). The
# rtol lets the bound follow the size of each element; atol 1e-4 leaves a margin of 4.5x for the
# elements near zero, whose round-off follows the size of the whole output.
FP32_TOLERANCE = Tolerance(atol=1e-4, rtol=1e-4)
# fp16 engines against PyTorch float32. Not measured on TensorRT (no GPU where it was chosen): taken
# from PyTorch's float16 autocast on the CPU (fp16 matmuls and convolutions, fp32 softmax and
# normalisation) against float32, `benchmarks/measure_export_noise.py --fp16`: micro and tiny at
# 224 and 384 and small at 224, logits scaled to max |logits| = 30 and backbone features (max |b|
# about 5). Worst |a - b| 6.5e-2 (small's logits); the smallest atol that passes at rtol 1e-2 is
# 6.4e-2: the error follows the size of the whole output more than each element's. atol 0.2 leaves
# a margin of 3x for TensorRT's own fp16 kernels; rtol 1e-2 is ten times fp16's own rounding of the
# output (half an ulp, 4.9e-4 relative). README, "Tolerances".
FP16_TOLERANCE = Tolerance(atol=0.2, rtol=1e-2)
ENGINE_TOLERANCES = {"fp32": FP32_TOLERANCE, "fp16": FP16_TOLERANCE}


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=np.float64)


def _pair(reference, output) -> tuple[np.ndarray, np.ndarray]:
    ref = _numpy(reference)
    out = _numpy(output)
    if ref.shape != out.shape:
        raise InvalidArgumentError(f"shape mismatch: reference {ref.shape} vs output {out.shape}")
    return ref, out


def error_stats(reference, output) -> ErrorStats:
    ref, out = _pair(reference, output)
    if not np.all(np.isfinite(out)):
        nan = float("nan")
        return ErrorStats(nan, nan, nan, nan, float(np.abs(ref).max(initial=0.0)))
    diff = np.abs(out - ref)
    ref_max = float(np.abs(ref).max(initial=0.0))
    max_abs = float(diff.max(initial=0.0))
    denom = float(np.linalg.norm(ref) * np.linalg.norm(out))
    cosine = float(np.dot(ref.ravel(), out.ravel()) / denom) if denom > 0 else float(max_abs == 0.0)
    return ErrorStats(
        max_abs=max_abs,
        mean_abs=float(diff.mean()) if diff.size else 0.0,
        relative=max_abs / ref_max if ref_max > 0 else max_abs,
        cosine=cosine,
        ref_max_abs=ref_max,
    )


def allclose_check(reference, output, tolerance: Tolerance) -> WorstElement:
    """The worst element under `tolerance`; the check passes when its ratio is <= 1. A non-finite
    output element is the worst, with ratio inf."""
    ref, out = _pair(reference, output)
    if ref.size == 0:
        return WorstElement((), 0.0, 0.0, tolerance.atol, 0.0)
    diff = np.abs(out - ref)
    allowed = tolerance.atol + tolerance.rtol * np.abs(ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(diff == 0, 0.0, diff / allowed)
    ratio = np.where(np.isfinite(out), ratio, np.inf)
    flat = int(np.argmax(ratio))
    index = tuple(int(i) for i in np.unravel_index(flat, ref.shape))
    return WorstElement(index, float(diff[index]), float(abs(ref[index])), float(allowed[index]), float(ratio[index]))


def smallest_atol(reference, output, rtol: float) -> float:
    """The smallest atol with which `output` passes at this rtol: max(|out - ref| - rtol * |ref|, 0)."""
    ref, out = _pair(reference, output)
    if ref.size == 0:
        return 0.0
    return float(max(np.max(np.abs(out - ref) - rtol * np.abs(ref)), 0.0))


def top1_agreement(reference_logits, logits) -> float:
    ref = _numpy(reference_logits)
    out = _numpy(logits)
    return float(np.mean(ref.argmax(-1) == out.argmax(-1)))
