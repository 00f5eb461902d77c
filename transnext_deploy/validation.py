"""Numerical comparison of an output against its reference, as every check in the toolkit reports it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


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


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=np.float64)


def error_stats(reference, output) -> ErrorStats:
    ref = _numpy(reference)
    out = _numpy(output)
    if ref.shape != out.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape} vs output {out.shape}")
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


def top1_agreement(reference_logits, logits) -> float:
    ref = _numpy(reference_logits)
    out = _numpy(logits)
    return float(np.mean(ref.argmax(-1) == out.argmax(-1)))
