"""The PyTorch model as a backend: eager (plain, fast or fused attention) or torch.compile, on any
device and in any dtype."""

from __future__ import annotations

import warnings

import numpy as np

from .base import Backend, MemoryProbe, TorchCudaProbe


class TorchBackend(Backend):
    """Runs `model` (moved to `device` and, when given, `dtype`) under inference mode. The input is
    copied to the device and dtype in prepare(); run() waits for the device, so a timer around it
    measures the work. With `compile_model`, the model runs under torch.compile (inductor)."""

    def __init__(self, model, device: str = "cpu", dtype=None, compile_model: bool = False):
        import torch

        self.torch = torch
        self.device = str(device)
        self.dtype = dtype
        self.model = model.to(device) if dtype is None else model.to(device, dtype)
        if compile_model:
            self.model = torch.compile(self.model, dynamic=False)
            self.graph = "torch.compile (inductor)"

    def prepare(self, x: np.ndarray):
        tensor = self.torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
        return tensor if self.dtype is None else tensor.to(self.dtype)

    def run(self, prepared):
        if self.graph != "eager":  # torch.compile: keep dynamo's warnings out of the progress display
            with warnings.catch_warnings(), self.torch.inference_mode():
                warnings.simplefilter("ignore")
                out = self.model(prepared)
        else:
            with self.torch.inference_mode():
                out = self.model(prepared)
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()
        return out

    def to_numpy(self, outputs) -> list[np.ndarray]:
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return [o.float().cpu().numpy() for o in outputs]

    def probe(self) -> MemoryProbe:
        return TorchCudaProbe() if self.device.startswith("cuda") else super().probe()


__all__ = ["TorchBackend"]
