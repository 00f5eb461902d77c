"""What this machine can do: library versions, GPU, compilers, and whether the plugin is built.

Every probe is guarded: a missing piece is reported with the reason, never raised, so
`transnext-deploy info` works on any machine and exits 0.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
from dataclasses import asdict, dataclass


@dataclass
class Probe:
    name: str
    available: bool
    detail: str  # version, path or "not available: <reason>"


def _module_version(module: str, label: str | None = None) -> Probe:
    label = label or module
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure is "not available"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Probe(label, False, f"not available: {reason}")
    return Probe(label, True, str(getattr(mod, "__version__", "installed")))


def _tool_version(tool: str, args: tuple[str, ...] = ("--version",), line: int = 0) -> Probe:
    path = shutil.which(tool)
    if path is None:
        return Probe(tool, False, "not available: not on PATH")
    try:
        out = subprocess.run([path, *args], capture_output=True, text=True, timeout=20).stdout.strip().splitlines()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Probe(tool, False, f"not available: {exc}")
    text = out[line] if -len(out) <= line < len(out) else ""
    return Probe(tool, True, f"{text} ({path})")


def _gpu() -> Probe:
    """The CUDA GPUs the NVIDIA driver reports (machine.cuda_devices, as export and bench ask),
    whatever torch was built for."""
    from .machine import cuda_devices

    devices, no_gpu = cuda_devices()
    if no_gpu:
        return Probe("cuda-gpu", False, f"not available: {no_gpu}")
    return Probe("cuda-gpu", True, "; ".join(str(d) for d in devices))


def _onednn() -> Probe:
    """Whether the fast model's eager CPU projections can run through oneDNN (models.transnext.token_linear)."""
    try:
        import torch
    except ImportError:
        return Probe("torch-onednn", False, "not available: torch is not installed")
    if not torch.backends.mkldnn.is_available():
        return Probe("torch-onednn", False, "not available: this torch build has no oneDNN; the fast model's "
                                            "projections use F.linear")
    return Probe("torch-onednn", True, "fast model: token projections on the CPU run through oneDNN")


def _plugin() -> list[Probe]:
    try:
        from . import plugin_build
    except Exception as exc:  # noqa: BLE001
        return [Probe("plugin", False, f"not available: {exc}")]
    probes = []
    for target, finder, command in (
            ("plugin-host-library", plugin_build.find_host_library, "transnext-deploy build-plugin"),
            # the fused op's CUDA implementation (torch.ops.transnext.aggregated_attention)
            ("cuda-kernel-library", plugin_build.find_cuda_library, "transnext-deploy build-plugin --target cuda"),
            ("tensorrt-plugin-library", plugin_build.find_plugin_library, "transnext-deploy build-plugin")):
        path = finder()
        probes.append(Probe(target, path is not None, str(path) if path else f"not built: run `{command}`"))
    return probes


def collect() -> list[Probe]:
    probes = [
        _module_version("torch"),
        _module_version("onnx"),
        _module_version("onnxruntime"),
        _module_version("onnx_graphsurgeon", "onnx-graphsurgeon"),
        _module_version("polygraphy"),
        _module_version("tensorrt"),
        _gpu(),
        _onednn(),
    ]
    try:
        import onnxruntime

        providers = onnxruntime.get_available_providers()
        probes.append(Probe("onnxruntime-providers", True, ", ".join(providers)))
    except Exception as exc:  # noqa: BLE001
        probes.append(Probe("onnxruntime-providers", False, f"not available: {exc}"))
    probes += [_tool_version("nvcc", line=-1), _tool_version("cmake"), _tool_version("c++")]
    probes += _plugin()
    return probes


def as_dict(probes: list[Probe]) -> dict:
    return {p.name: asdict(p) for p in probes}
