"""TensorRT engines as a backend.

`TensorRTBackend` runs an engine: where torch has CUDA, on torch CUDA tensors (`prepare` puts the
input on the GPU outside the timing; `infer_device` is the call bench times, no host copies);
elsewhere through polygraphy's `TrtRunner`, numpy in and out. Building engines and loading the
plugin stay in `engine/`, below this module; bench builds (or reuses) an engine there, the runtime
takes one from a bundle, and both run it here.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..cache import cache_dir
from ..engine.build import read_engine_metadata
from ..files import write_bytes_atomically
from ..engine.tensorrt import DEFAULT_RUNTIME, EngineError, get_runtime, import_runtime, load_plugin, logger, require
from .base import Backend, MemoryProbe, NoProbe, TorchCudaProbe


class TensorRTBackend(Backend):
    """An engine file, deserialized once (see the module docstring). The plugin library is the
    given one, else the one its metadata names, else the usual places (engine.tensorrt.plugin_candidates)."""

    device = "cuda"

    def __init__(self, engine_path: str | os.PathLike, plugin_library: str | os.PathLike | None = None,
                 host_code_allowed: bool = False, runtime: str | None = None):
        """`host_code_allowed`: let TensorRT deserialize an engine that carries host code, as a
        version-compatible engine does (its lean runtime, plugin libraries serialized into it).
        `runtime`: tensorrt or tensorrt-rtx (default: the one its metadata names, else tensorrt)."""
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
        rt = get_runtime(runtime or self.metadata.get("runtime", DEFAULT_RUNTIME))
        self.runtime = rt.name
        require(rt, library, need_plugin=needs_plugin)
        trt = import_runtime(rt)
        if needs_plugin:
            load_plugin(rt, library)
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
        runtime = trt.Runtime(logger(rt))
        runtime.engine_host_code_allowed = host_code_allowed
        self._runtime_cache: tuple[object, Path] | None = None
        if self._torch is None:
            self._poly = _polygraphy_runner(rt, data, runtime)
            self._poly.activate()
            self.engine = self._poly.engine
            self.context = self._poly.context
        else:
            self._runtime = runtime  # outlives the engine it deserialized
            self.engine = runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise EngineError(f"cannot deserialize {self.path.name}: built by another {rt.name} version or GPU? "
                                  f"(metadata: {rt.name} {self.metadata.get('runtime_version')}, compute capabilities "
                                  f"{', '.join(self.metadata.get('compute_capabilities') or ['?'])})")
            self.context = self._execution_context(rt, data)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def _execution_context(self, rt, data: bytes):
        """The execution context; TensorRT-RTX's with its runtime cache (the kernels it compiles for
        this GPU on first use), read from and kept in the user cache, so a later load starts warm. The
        cache is keyed by the engine's sha256 (`data`, the engine's bytes, when no metadata names it)."""
        if rt.name != "tensorrt-rtx" or not hasattr(self.engine, "create_runtime_config"):
            return self.engine.create_execution_context()
        config = self.engine.create_runtime_config()
        cache = config.create_runtime_cache()
        path = runtime_cache_path(self.metadata.get("engine_sha256") or hashlib.sha256(data).hexdigest())
        if path.is_file():
            cache.deserialize(path.read_bytes())
        config.set_runtime_cache(cache)
        self._runtime_cache = (cache, path)
        return self.engine.create_execution_context(config)

    def _save_runtime_cache(self) -> None:
        if self._runtime_cache is None:
            return
        cache, path = self._runtime_cache
        try:
            write_bytes_atomically(path, bytes(memoryview(cache.serialize())))
        except OSError:  # a cache that cannot be written only makes the next load slower
            pass
        self._runtime_cache = None

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
        if getattr(self, "_runtime_cache", None) is not None:
            self._save_runtime_cache()
        if self._poly is not None:
            self._poly.deactivate()
            self._poly = None
        self.context = None
        self.engine = None


def runtime_cache_path(engine_sha256: str) -> Path:
    """Where TensorRT-RTX's runtime cache of one engine is kept: the user cache's tensorrt part (`cache
    --clear tensorrt`), by the engine's sha256."""
    return cache_dir() / "tensorrt" / f"rtx_runtime_{engine_sha256[:16]}.cache"


def _polygraphy_runner(rt, data: bytes, runtime):
    """polygraphy's TrtRunner (numpy in and out) for a process without torch's CUDA. polygraphy serves
    one runtime per process, chosen when its TensorRT backend is first imported."""
    import sys as _sys

    from polygraphy import config

    wanted = rt.name == "tensorrt-rtx"
    if config.USE_TENSORRT_RTX != wanted:
        if "polygraphy.backend.trt" in _sys.modules:
            raise EngineError(f"polygraphy already runs {'tensorrt-rtx' if config.USE_TENSORRT_RTX else 'tensorrt'} in "
                              f"this process; {rt.name} engines need torch with CUDA here")
        config.USE_TENSORRT_RTX = wanted
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    return TrtRunner(EngineFromBytes(data, runtime=runtime))


__all__ = ["TensorRTBackend", "runtime_cache_path"]
