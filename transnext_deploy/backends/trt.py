"""TensorRT engines as a backend.

`TensorRTBackend` runs an engine: where torch has CUDA, on torch CUDA tensors (`prepare` puts the
input on the GPU outside the timing; `infer_device` is the call bench times, no host copies);
elsewhere through polygraphy's `TrtRunner`, numpy in and out. Building engines and loading the
plugin stay in `engine/`, below this module; bench builds (or reuses) an engine there, the runtime
takes one from a bundle, and both run it here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..engine import EngineError, load_plugin, read_engine_metadata, require_tensorrt, trt_logger
from .base import Backend, MemoryProbe, NoProbe, TorchCudaProbe


class TensorRTBackend(Backend):
    """An engine file, deserialized once (see the module docstring). The plugin library is the
    given one, else the one its metadata names, else the usual places (engine.resolve_plugin_library)."""

    device = "cuda"

    def __init__(self, engine_path: str | os.PathLike, plugin_library: str | os.PathLike | None = None,
                 host_code_allowed: bool = False):
        """`host_code_allowed`: let TensorRT deserialize an engine that carries host code, as a
        version-compatible engine does (its lean runtime, plugin libraries serialized into it)."""
        self.path = Path(engine_path)
        self.graph = self.path.name
        if not self.path.is_file():
            raise EngineError(f"engine not found: {self.path}")
        try:
            self.metadata = read_engine_metadata(self.path)
        except EngineError:
            self.metadata = {}
        needs_plugin = bool(self.metadata.get("plugin_library", True))
        library = plugin_library or ((self.metadata.get("plugin_library") or {}).get("path") if needs_plugin
                                     else None)
        if library and not Path(library).is_file():
            library = None  # metadata from another machine: fall back to the usual places
        require_tensorrt(library, need_plugin=needs_plugin)
        import tensorrt as trt

        if needs_plugin:
            load_plugin(library)
        self._trt = trt
        self._torch = None
        self._poly = None
        try:
            import torch

            if torch.cuda.is_available():
                self._torch = torch
        except ImportError:
            pass
        data = self.path.read_bytes()
        runtime = trt.Runtime(trt_logger())
        runtime.engine_host_code_allowed = host_code_allowed
        if self._torch is None:
            from polygraphy.backend.trt import EngineFromBytes, TrtRunner

            self._poly = TrtRunner(EngineFromBytes(data, runtime=runtime))
            self._poly.activate()
            self.engine = self._poly.engine
            self.context = self._poly.context
        else:
            self._runtime = runtime  # outlives the engine it deserialized
            self.engine = runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise EngineError(f"cannot deserialize {self.path.name}: built by another TensorRT version or GPU? "
                                  f"(metadata: TensorRT {self.metadata.get('tensorrt_version')}, "
                                  f"sm_{(self.metadata.get('gpu') or {}).get('sm')})")
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    @property
    def device_memory_bytes(self) -> int | None:
        """Activation (scratch) memory the execution context holds."""
        for attr in ("device_memory_size_v2", "device_memory_size"):
            value = getattr(self.engine, attr, None)
            if value is not None:
                return int(value)
        return None

    def _torch_dtype(self, name: str):
        trt, torch = self._trt, self._torch
        mapping = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
                   trt.int64: torch.int64, trt.int8: torch.int8, trt.bool: torch.bool}
        return mapping[self.engine.get_tensor_dtype(name)]

    def infer_device(self, x) -> list:
        """Run on a torch CUDA tensor; returns torch CUDA tensors (synchronised)."""
        if self._torch is None:
            raise EngineError("infer_device needs torch with CUDA; use runner(numpy_array)")
        torch = self._torch
        x = x.to(device="cuda", dtype=self._torch_dtype(self.input_names[0])).contiguous()
        if not self.context.set_input_shape(self.input_names[0], tuple(x.shape)):
            profile = self.metadata.get("batch_profile")
            raise EngineError(f"input shape {tuple(x.shape)} is outside the engine's profile {profile}")
        self.context.set_tensor_address(self.input_names[0], x.data_ptr())
        outputs = []
        for name in self.output_names:
            out = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=self._torch_dtype(name), device="cuda")
            self.context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise EngineError(f"{self.path.name}: execute_async_v3 failed")
        stream.synchronize()
        return outputs

    @property
    def on_torch(self) -> bool:
        """Whether inputs and outputs can be torch CUDA tensors (infer_device)."""
        return self._torch is not None

    def prepare(self, x: np.ndarray):
        if self.on_torch:
            return self._torch.from_numpy(np.ascontiguousarray(x)).cuda()
        return np.ascontiguousarray(x, dtype=np.float32)

    def run(self, prepared):
        if self._poly is not None:
            result = self._poly.infer({self.input_names[0]: prepared})
            return [result[n] for n in self.output_names]
        return self.infer_device(prepared)

    def to_numpy(self, outputs) -> list[np.ndarray]:
        return [o.float().cpu().numpy() for o in outputs] if self.on_torch else super().to_numpy(outputs)

    def probe(self) -> MemoryProbe:
        if self.on_torch:
            return TorchCudaProbe(self.device_memory_bytes or 0, "execution-context scratch "
                                  "(engine.device_memory_size) + I/O tensors (torch allocator peak)")
        return NoProbe()

    def close(self) -> None:
        if self._poly is not None:
            self._poly.deactivate()
            self._poly = None
        self.context = None
        self.engine = None


__all__ = ["TensorRTBackend"]
