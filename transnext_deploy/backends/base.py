"""The backend interface and the memory probes a backend offers.

A backend is loaded once (a model moved to its device, a session, an engine), then called many
times: `prepare(x)` turns a numpy batch into the backend's own input (a device tensor...) outside
any timing, `run(prepared)` is the call that is timed and returns the outputs in the backend's own
form, `to_numpy(outputs)` gives them as float32 numpy arrays in the graph's output order, and
`probe()` the memory probe that fits the backend. `backend(x)` does all three at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ..memory import RssPeakProbe

MIB = 1 << 20
RSS_METHOD = "peak RSS growth during the warm-up passes over the loaded backend (VmHWM)"


class MemoryProbe(Protocol):
    method: str  # what the number is, in words

    def start(self) -> None: ...

    def stop(self) -> float | None: ...  # MiB, or None when not measured


class NoProbe:
    method = "not measured"

    def start(self) -> None:
        pass

    def stop(self) -> None:
        return None


class TorchCudaProbe:
    """torch's CUDA allocator peak over what was allocated at start(), plus `extra_bytes`."""

    method = "torch CUDA allocator peak over the memory allocated before the passes"

    def __init__(self, extra_bytes: int = 0, method: str | None = None):
        self.extra = extra_bytes
        self.base = 0
        if method:
            self.method = method

    def start(self) -> None:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self.base = torch.cuda.memory_allocated()

    def stop(self) -> float | None:
        import torch

        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - self.base + self.extra) / MIB


def cuda_free_bytes() -> int | None:
    """Free GPU memory as the driver reports it (through torch, when it has CUDA), else None."""
    try:
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.mem_get_info()[0])
    except Exception:  # noqa: BLE001 - a probe that cannot answer is "not measured"
        pass
    return None


class DriverProbe:
    """Growth of the GPU memory in use since `free_before_load` was read (before loading the backend)."""

    method = "growth of the GPU memory in use (cudaMemGetInfo) from before loading the backend"

    def __init__(self, free_before_load: int | None):
        self.before = free_before_load

    def start(self) -> None:
        pass

    def stop(self) -> float | None:
        free = cuda_free_bytes()
        if free is None or self.before is None:
            return None
        return max(0.0, (self.before - free) / MIB)


class Backend:
    """A loaded model on one runtime; see the module docstring for the calling sequence."""

    graph = "eager"  # what runs: "eager", "torch.compile (inductor)", a graph or engine file name
    device = "cpu"
    notes: tuple[str, ...] = ()  # facts a report should show next to the numbers
    max_batch: int | None = None  # the largest batch one call takes (an engine's profile); None: any

    def prepare(self, x: np.ndarray):
        return x

    def run(self, prepared):
        raise NotImplementedError

    def to_numpy(self, outputs) -> list[np.ndarray]:
        if isinstance(outputs, Sequence) and not isinstance(outputs, np.ndarray):
            return [np.asarray(o, dtype=np.float32) for o in outputs]
        return [np.asarray(outputs, dtype=np.float32)]

    def probe(self) -> MemoryProbe:
        return RssPeakProbe(RSS_METHOD)

    def close(self) -> None:
        pass

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        return self.to_numpy(self.run(self.prepare(x)))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["Backend", "DriverProbe", "MemoryProbe", "NoProbe", "TorchCudaProbe", "cuda_free_bytes"]
