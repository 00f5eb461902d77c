"""The backends by name: one table for every layer that names a backend.

Each entry says what the backend runs, which file of an exported artifact it reads (None: the
PyTorch model), and on which device; `problem(name)` is its availability probe (why it cannot run
here, in one line, or None) and `open_backend(name, source)` loads it. The same names serve
`bench --backend`, `predict --backend`, `serve --backend` and `runtime.load(backend=...)`, and
`--device` means the same everywhere: where the model runs, `auto`, `cpu` or `cuda`.

    torch-plain             eager PyTorch, the published attention
    torch-fast              eager PyTorch, the fused op's decomposition (what export traces)
    torch-fused             eager PyTorch calling the fused op (CUDA kernel on a GPU, host library on the CPU)
    torch-compile           the fast model under torch.compile (inductor)
    onnxruntime-cpu         the standard graph on onnxruntime's CPU provider
    onnxruntime-cpu-custom  the custom-op graph on the CPU: aggregated attention in the plugin's host library
    onnxruntime-cuda        the standard graph on onnxruntime's CUDA provider
    tensorrt                a TensorRT engine of the custom-op graph with the plugin
    tensorrt-rtx            a TensorRT-RTX engine of the custom-op graph with the plugin (built ahead of time)

The torch backends need the PyTorch model, so only bench has them; a bundle carries graphs and
engines, and `BUNDLE_BACKENDS` is the order in which `runtime.load` tries them. Nothing here
imports torch, onnxruntime or TensorRT until a probe or a load asks for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..artifacts import PLUGIN_FILE, STANDARD_FILE
from ..errors import InvalidArgumentError, TransNeXtDeployError, one_line
from .base import Backend

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class BackendSpec:
    name: str
    runs: str  # what it runs, in words
    graph: str | None  # the artifact file it runs (an engine is built from it); None: the PyTorch model
    device: str  # "cpu" or "cuda"; "torch" where the torch backends run (wherever --device says)
    attention: str | None = None  # the PyTorch model's attention (torch backends)

    @property
    def engine(self) -> bool:
        """Runs an engine, whose runtime (engine.tensorrt.RUNTIMES) has the backend's name."""
        return self.name in ("tensorrt", "tensorrt-rtx")


BACKENDS: dict[str, BackendSpec] = {spec.name: spec for spec in (
    BackendSpec("torch-plain", "eager PyTorch, published attention", None, "torch", "plain"),
    BackendSpec("torch-fast", "eager PyTorch, the fused op's decomposition", None, "torch", "fast"),
    BackendSpec("torch-fused", "eager PyTorch calling the fused op", None, "torch", "fused"),
    BackendSpec("torch-compile", "the fast model under torch.compile (inductor)", None, "torch", "fast"),
    BackendSpec("onnxruntime-cpu", "onnxruntime CPU, standard ONNX ops", STANDARD_FILE, "cpu"),
    BackendSpec("onnxruntime-cpu-custom", "onnxruntime CPU, the custom-op graph (aggregated attention in the "
                "plugin's host library)", PLUGIN_FILE, "cpu"),
    BackendSpec("onnxruntime-cuda", "onnxruntime CUDA, standard ONNX ops", STANDARD_FILE, "cuda"),
    BackendSpec("tensorrt", "TensorRT engine of the custom-op graph with the plugin", PLUGIN_FILE, "cuda"),
    BackendSpec("tensorrt-rtx", "TensorRT-RTX engine of the custom-op graph with the plugin", PLUGIN_FILE, "cuda"),
)}
TORCH_BACKENDS = tuple(name for name, spec in BACKENDS.items() if spec.graph is None)
# What runtime.load tries for a bundle, best first: the engine, then the GPU, then the faster CPU graph.
BUNDLE_BACKENDS = ("tensorrt", "tensorrt-rtx", "onnxruntime-cuda", "onnxruntime-cpu-custom", "onnxruntime-cpu")


class BackendUnavailable(TransNeXtDeployError):
    """A backend cannot run here; str() says why, in one line."""


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise InvalidArgumentError(f"device must be one of {', '.join(DEVICES)}, got {device!r}"
                                   + (f" ({device} is a backend: ask for it by name)" if device in BACKENDS else ""))
    return device


def check_backends(names: Iterable[str], allowed: Sequence[str] = tuple(BACKENDS)) -> list[str]:
    """The backends asked for, in table order, without repeats; "all" stands for every allowed one."""
    wanted: set[str] = set()
    for name in names:
        if name == "all":
            wanted.update(allowed)
        elif name not in allowed:
            raise InvalidArgumentError(f"unknown backend {name!r}; choose from {', '.join(allowed)} (or all)")
        else:
            wanted.add(name)
    if not wanted:
        raise InvalidArgumentError("no backend given")
    return [name for name in allowed if name in wanted]


def on_device(names: Iterable[str], device: str) -> list[str]:
    """The backends of `names` that run on `device` (auto: all of them)."""
    check_device(device)
    return [n for n in names if device == "auto" or BACKENDS[n].device in (device, "torch")]


# ------------------------------------------------------------------------------------------ probes


def _torch_problem(device: str) -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed (pip install torch)"
    if device == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        return f"no CUDA device: torch {torch.__version__} ({build}) sees no CUDA GPU"
    return None


def problem(name: str, *, device: str = "cpu", threads: int | None = None,
            plugin_library: str | os.PathLike | None = None, need_plugin: bool = False) -> str | None:
    """Why backend `name` cannot run here (one line), or None. `device`: where the torch backends
    run; `threads`: the CPU custom op's; `plugin_library`: TensorRT's plugin (default: found), which
    an engine backend needs here when `need_plugin` (to build engines, not only to run a bundle's)."""
    spec = BACKENDS[name]
    if spec.device == "torch":
        reason = _torch_problem(device)
        if reason is None and name == "torch-fused":
            from ..ops.fused_op import implementation

            description = implementation(device)
            if description.startswith("not available"):
                reason = description.removeprefix("not available: ")
        return reason
    if name == "onnxruntime-cpu":
        return None
    if name == "onnxruntime-cpu-custom":
        from .onnxrt import custom_op_problem, host_library_problem

        return host_library_problem() or custom_op_problem(threads)
    if name == "onnxruntime-cuda":
        from .onnxrt import ort_cuda_problem

        return ort_cuda_problem()
    from ..engine.tensorrt import gpu_problem, status

    found = status(name, plugin_library, need_plugin=need_plugin)
    return gpu_problem(name) if found.available else found.reason


# ------------------------------------------------------------------------------------------ loading


@dataclass(frozen=True)
class EngineCandidate:
    """One engine a source offers: the file, the plugin library it needs, and how to describe it."""

    path: Path
    plugin_library: str | None
    host_code_allowed: bool = False  # version-compatible engines carry TensorRT's lean runtime
    max_batch: int | None = None
    description: str = ""


class Source(Protocol):
    """What a backend is loaded from: an exported artifact (bench) or one model of a bundle (runtime)."""

    def graph(self, file: str) -> Path:
        """The path of one of the artifact's graphs (STANDARD_FILE, PLUGIN_FILE...)."""

    def engines(self, runtime: str, precision: str | None = None) -> Iterator[EngineCandidate | str]:
        """The engines of `runtime` to try (of `precision`, or any), best first; a string is one
        passed over, and why."""

    def model(self, attention: str):
        """The PyTorch model with this attention (torch backends)."""


def open_backend(name: str, source: Source, *, device: str = "cpu", threads: int = 2,
                 precision: str | None = None) -> Backend:
    """Load backend `name` from `source`; raises BackendUnavailable with the reason when it cannot.
    `device` is where the torch backends run; `threads` the CPU threads of onnxruntime; `precision`
    the engine's (None: the source's best)."""
    spec = BACKENDS[name]
    if spec.device == "torch":
        from .pytorch import TorchBackend

        return TorchBackend(source.model(spec.attention), device, compile_model=name == "torch-compile")
    if name in ("onnxruntime-cpu", "onnxruntime-cpu-custom"):
        from .onnxrt import OrtCpuBackend

        return OrtCpuBackend(source.graph(spec.graph), threads=threads)
    if name == "onnxruntime-cuda":
        from .onnxrt import OrtCudaBackend, OrtCudaUnavailable

        try:
            return OrtCudaBackend(source.graph(spec.graph))
        except OrtCudaUnavailable as exc:
            raise BackendUnavailable(str(exc)) from None
    from ..engine import EngineError
    from .trt import TensorRTBackend

    passed_over = []
    for candidate in source.engines(name, precision):
        if isinstance(candidate, str):
            passed_over.append(candidate)
            continue
        try:
            backend = TensorRTBackend(candidate.path, candidate.plugin_library,
                                      host_code_allowed=candidate.host_code_allowed, runtime=name)
        except EngineError as exc:  # the facts matched but TensorRT refused it: the next engine
            passed_over.append(f"{candidate.path.name}: {one_line(exc)}")
            continue
        backend.max_batch = candidate.max_batch
        if candidate.description:
            backend.notes = (candidate.description, *backend.notes)
        return backend
    raise BackendUnavailable("; ".join(passed_over) or "no TensorRT engine")


__all__ = [
    "BACKENDS",
    "BUNDLE_BACKENDS",
    "DEVICES",
    "TORCH_BACKENDS",
    "BackendSpec",
    "BackendUnavailable",
    "EngineCandidate",
    "Source",
    "check_backends",
    "check_device",
    "on_device",
    "open_backend",
    "problem",
]
