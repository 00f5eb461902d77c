"""What this machine can do: library versions, GPU, compilers, and whether the plugin is built.

Every probe is guarded: a missing piece is reported with the reason, never raised, so
`transnext-deploy info` works on any machine and exits 0.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass

from .artifacts import CUDA_LIBRARY_ENV, PLUGIN_ENV


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


def _runtimes() -> list[Probe]:
    """TensorRT and TensorRT-RTX: installed or not, and what each builds for (engine.tensorrt)."""
    from .engine.tensorrt import RUNTIMES, compute_capabilities, gpu_problem, module_problem

    probes = []
    for name, rt in RUNTIMES.items():
        problem = module_problem(rt)
        if problem:
            probes.append(Probe(name, False, f"not available: {problem}"))
            continue
        version = importlib.import_module(rt.module).__version__
        targets = (f"builds ahead of time for sm_{', sm_'.join(compute_capabilities(rt))}" if rt.ahead_of_time
                   else "builds for the GPU it runs on")
        runs = gpu_problem(rt)
        probes.append(Probe(name, True, f"{version}: {targets}; " + (f"runs no engine here: {runs}" if runs else
                                                                        "runs engines on this GPU")))
    return probes


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


# target -> (probe name, what building it needs, the variable that points at a library built elsewhere)
_LIBRARIES = {
    "host": ("plugin-host-library", "a C++ compiler and cmake", None),
    # the fused op's CUDA implementation (torch.ops.transnext.aggregated_attention)
    "cuda": ("cuda-kernel-library", "nvcc and cmake", CUDA_LIBRARY_ENV),
    "plugin": ("tensorrt-plugin-library", "nvcc, cmake and the TensorRT headers (NvInfer.h)", PLUGIN_ENV),
}


def _plugin() -> list[Probe]:
    from .plugin import locations
    from .plugin.toolchain import PluginBuildError

    try:
        locations.plugin_source_dir()
        sources = True
    except PluginBuildError:
        sources = False  # an installed package without the plugin sources: build-plugin cannot run
    finders = {"host": locations.find_host_library, "cuda": locations.find_cuda_library,
               "plugin": locations.find_plugin_library}
    probes = []
    for target, (name, needs, env) in _LIBRARIES.items():
        path = finders[target]()
        if path is not None:
            probes.append(Probe(name, True, str(path)))
            continue
        if sources:
            command = f"transnext-deploy build-plugin --target {target}"
            if target == "plugin":
                command += " --tensorrt-root DIR"
            how = f"run `{command}`" + (" (DIR holds include/NvInfer.h)" if target == "plugin" else "")
        else:
            how = ("this installed package carries no plugin sources to build it from: reinstall transnext-deploy "
                   "from its wheel or sdist")
            if env:
                how += f", or set ${env} to a library built elsewhere"
        probes.append(Probe(name, False, f"not built (needs {needs}): {how}"))
    return probes


def _nvcc() -> Probe:
    """nvcc's CUDA release, e.g. `CUDA 13.0 (V13.0.88)`, from `nvcc --version`."""
    probe = _tool_version("nvcc", line=-1)
    if not probe.available:
        return probe
    path = shutil.which("nvcc")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20).stdout
    match = re.search(r"release ([\d.]+), V([\d.]+)", out)
    if match is None:
        return probe
    return Probe("nvcc", True, f"CUDA {match.group(1)} (V{match.group(2)}, {path})")


def collect() -> list[Probe]:
    probes = [
        _module_version("torch"),
        _module_version("onnx"),
        _module_version("onnxruntime"),
        # the custom-op graph's CPU validation registers the op through it
        _module_version("onnxruntime_extensions", "onnxruntime-extensions"),
        _module_version("onnx_graphsurgeon", "onnx-graphsurgeon"),
        _module_version("polygraphy"),
        *_runtimes(),
        _gpu(),
        _onednn(),
    ]
    try:
        import onnxruntime

        providers = onnxruntime.get_available_providers()
        probes.append(Probe("onnxruntime-providers", True, ", ".join(providers)))
    except Exception as exc:  # noqa: BLE001
        probes.append(Probe("onnxruntime-providers", False, f"not available: {exc}"))
    probes += [_nvcc(), _tool_version("cmake"), _tool_version("c++")]
    probes += _plugin()
    return probes


def as_dict(probes: list[Probe]) -> dict:
    return {p.name: asdict(p) for p in probes}
