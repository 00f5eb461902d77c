"""Which TensorRT: the two runtimes engines are built and run with, what each needs, and the plugin.

    tensorrt      TensorRT 10.x and 11.x (`pip install 'transnext-deploy[tensorrt]'`, or JetPack's
                  python3-libnvinfer). It builds for the GPU it runs on: building needs that GPU.
    tensorrt-rtx  TensorRT for RTX (`pip install 'transnext-deploy[tensorrt-rtx]'`, `import tensorrt_rtx`).
                  It builds ahead of time, on a machine with no GPU, for the compute capabilities it is
                  given (RTX_COMPUTE_CAPABILITIES); running an engine needs one of those GPUs.

Both have the same nvinfer1 API, ONNX parser and plugin registry, and both build strongly typed
networks here: a layer runs in the precision its tensors have in the graph (export writes fp32 and
fp16 graphs), never by a builder precision flag (TensorRT 11 and TensorRT-RTX have none).

The plugin comes in two libraries (plugins/aggregated_attention/README.md), and which one a runtime
loads is decided here (`plugin_kind`, `plugin_problem`):

- TensorRT 10.x loads `libtransnext_aa_plugin.so`, which registers its creator when it is loaded,
  built against that TensorRT's headers (any 10.x: their plugin registry is the same);
- TensorRT 11.x loads the same library, but built against 11.x headers: 11.x dropped the registry's
  deprecated V2 entries, and a library built against 10.x headers crashes in registerCreator;
- TensorRT-RTX loads `libtransnext_aa_plugin_dynamic.so` through `IPluginRegistry::loadLibrary`
  (its getCreators and setLoggerFinder entry points), which any of the header versions builds.

TensorRT-RTX's ONNX parser, right after it creates a plugin layer, dlopens the unversioned
`libtensorrt_rtx.so`, which the wheel does not ship (only `libtensorrt_rtx.so.1`); without it the
process aborts. `ensure_core_alias` makes that name a symlink to the very file already loaded (a
copy would be a second TensorRT in the process, and the build fails), in the wheel's library
directory, the parser's RPATH; where that directory cannot be written it says, in one line, what to
run.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..artifacts import PLUGIN_DYNAMIC_LIBRARY, PLUGIN_ENV, PLUGIN_LIBRARY
from ..errors import InvalidArgumentError, TransNeXtDeployError
from ..machine import cuda_devices
from .compatibility import version_tuple


class EngineError(TransNeXtDeployError):
    """An engine that cannot be built or run; str() is one line."""


class TensorRTUnavailable(EngineError):
    """A TensorRT runtime, a CUDA GPU or the plugin library is missing; str() says which."""


class TensorRTStatus(NamedTuple):
    available: bool
    reason: str  # what is missing ("; "-separated), or what was found when available


@dataclass(frozen=True)
class Runtime:
    name: str  # as --runtime takes it, and as the backends table names its engines
    title: str  # in messages
    module: str  # the Python module
    extra: str  # the package extra that installs it
    libraries_module: str  # where the pip wheel keeps its shared libraries
    core_library: str  # the wheel's core library (versioned file name, a glob)
    core_alias: str  # the unversioned name the ONNX parser dlopens after creating a plugin layer
    ahead_of_time: bool  # builds with no GPU, for the compute capabilities it is given
    engine_tag: str  # in engine file names: model.aa_plugin.fp16[.rtx].engine
    plugin_kind: str  # the plugin library it loads (artifacts.LIBRARY_FILES key)

    @property
    def install_hint(self) -> str:
        return f"pip install 'transnext-deploy[{self.extra}]'"


RUNTIMES = {r.name: r for r in (
    Runtime("tensorrt", "TensorRT", "tensorrt", "tensorrt", "tensorrt_libs", "libnvinfer.so.*", "libnvinfer.so",
            ahead_of_time=False, engine_tag="", plugin_kind="plugin"),
    Runtime("tensorrt-rtx", "TensorRT-RTX", "tensorrt_rtx", "tensorrt-rtx", "tensorrt_rtx_libs", "libtensorrt_rtx.so.*",
            "libtensorrt_rtx.so", ahead_of_time=True, engine_tag="rtx", plugin_kind="plugin_dynamic"),
)}
DEFAULT_RUNTIME = "tensorrt"
# What TensorRT-RTX 1.7 builds for (trt.ComputeCapability); `compute_capabilities()` asks the
# installed module, this is what --help and the docs name.
RTX_COMPUTE_CAPABILITIES = ("75", "80", "86", "89", "120", "121")


def get_runtime(name: str | Runtime) -> Runtime:
    if isinstance(name, Runtime):
        return name
    if name not in RUNTIMES:
        raise InvalidArgumentError(f"runtime must be one of {', '.join(RUNTIMES)}, got {name!r}")
    return RUNTIMES[name]


def module_problem(runtime: str | Runtime) -> str | None:
    """Why `import <runtime module>` cannot work here, or None."""
    rt = get_runtime(runtime)
    if importlib.util.find_spec(rt.module) is None:
        where = ", or JetPack's python3-libnvinfer" if rt.name == "tensorrt" else ""
        return f"Python package `{rt.module}` not installed ({rt.install_hint}{where})"
    try:
        importlib.import_module(rt.module)
    except Exception as exc:  # noqa: BLE001 - a broken install is reported, whatever it raises
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"`import {rt.module}` fails: {first}"
    return None


def import_runtime(runtime: str | Runtime):
    """The runtime's module; TensorRTUnavailable (one line) where it is missing."""
    rt = get_runtime(runtime)
    problem = module_problem(rt)
    if problem:
        raise TensorRTUnavailable(problem)
    return importlib.import_module(rt.module)


def compute_capabilities(runtime: str | Runtime) -> tuple[str, ...]:
    """The compute capabilities a runtime builds for ahead of time ("86", "120"...), () for one
    that builds for the GPU it runs on."""
    rt = get_runtime(runtime)
    if not rt.ahead_of_time:
        return ()
    if module_problem(rt) is not None:
        return RTX_COMPUTE_CAPABILITIES
    trt = importlib.import_module(rt.module)
    return tuple(name[2:] for name in trt.ComputeCapability.__members__ if name.startswith("SM"))


def check_compute_capabilities(runtime: str | Runtime, values) -> tuple[str, ...]:
    """'86', 86, 'sm_86', '8.6' -> '86', each one a compute capability the runtime builds for."""
    rt = get_runtime(runtime)
    if not values:
        return ()
    if not rt.ahead_of_time:
        raise InvalidArgumentError(f"{rt.name} builds for the GPU it runs on: compute capabilities are for "
                                   "tensorrt-rtx, which builds ahead of time")
    known = compute_capabilities(rt)
    result = []
    for value in values:
        text = str(value).strip().lower().removeprefix("sm_").removeprefix("sm").replace(".", "")
        if text not in known:
            raise InvalidArgumentError(f"{rt.name} builds for compute capabilities {', '.join(known)}, not {value}")
        result.append(text)
    return tuple(dict.fromkeys(result))


# ------------------------------------------------------------------------------------------ the plugin


def plugin_candidates(runtime: str | Runtime, plugin_library: str | os.PathLike | None = None
                      ) -> tuple[Path | None, str]:
    """(path, where it came from) of the plugin library `runtime` loads, or (None, where it was
    looked for): the given library, else $TRANSNEXT_AA_PLUGIN, else the build directory. A given
    path may name either library: the one of the runtime's kind beside it is used."""
    return library_candidates(get_runtime(runtime).plugin_kind, plugin_library)


def library_candidates(kind: str, plugin_library: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """plugin_candidates for a plugin library kind ("plugin" or "plugin_dynamic") rather than a runtime."""
    from ..artifacts import LIBRARY_FILES
    from ..plugin.locations import default_build_dir, find_plugin_library

    wanted = LIBRARY_FILES[kind]
    for given, where in ((plugin_library, "given"), (os.environ.get(PLUGIN_ENV), f"${PLUGIN_ENV}")):
        if given:
            path = Path(given).expanduser()
            if path.name in (PLUGIN_LIBRARY, PLUGIN_DYNAMIC_LIBRARY):
                path = path.with_name(wanted)
            if path.is_file():
                return path.resolve(), where
            return None, f"{path} ({where}) does not exist"
    found = find_plugin_library(dynamic=kind == "plugin_dynamic")
    if found is not None:
        return found.resolve(), "build directory"
    return None, f"{wanted} not in {default_build_dir()} and ${PLUGIN_ENV} is not set"


def plugin_problem(runtime: str | Runtime, version: str, library: str | os.PathLike) -> str | None:
    """Why this runtime (at this version) must not load this plugin library, from what it was built
    with (plugin.locations.read_build_info), or None."""
    from ..plugin.locations import read_build_info

    rt = get_runtime(runtime)
    info = read_build_info(library)
    headers = info.get("tensorrt_headers")
    if not info.get("static_registration") or not headers:
        return None  # loadLibrary works across header versions; a library built elsewhere is trusted
    major = version_tuple(headers)[:1]
    if (rt.name == "tensorrt-rtx" or version_tuple(version)[:1] >= (11,)) and major < (11,):
        return (f"{Path(library).name} was built against TensorRT {headers} headers: {rt.name} {version} registers "
                "it only when built against 11.x headers (`transnext-deploy build-plugin --target plugin` with "
                "TENSORRT_INCLUDE_DIR=<TensorRT 11 include>)")
    return None


_LOADED: dict[tuple[str, Path], object] = {}
_LOCK = threading.Lock()


def _make_core_global(trt, rt: Runtime) -> None:
    """The wheel opens its core library with RTLD_LOCAL; a plugin that registers itself when loaded
    calls getPluginRegistry() from it, so the symbols must be global first (same file: no second copy)."""
    core = _core_library(rt)
    if core is not None:
        ctypes.CDLL(str(core), mode=ctypes.RTLD_GLOBAL)


def _withdraw_others(rt: Runtime, registry) -> None:
    """A registry holds one creator per name, so a plugin library loaded earlier in this process (a
    package built with a fresh plugin after an engine built with another) is withdrawn first: a
    loadLibrary library deregistered, a self-registered one's creator deregistered (its code stays
    loaded: a ctypes library cannot be unloaded safely)."""
    from ..ops.contract import OP_NAME, OP_NAMESPACE, OP_VERSION

    for key in [k for k in _LOADED if k[0] == rt.name]:
        handle = _LOADED.pop(key)
        if key[1].name == PLUGIN_DYNAMIC_LIBRARY:
            registry.deregister_library(handle)
        else:
            creator = registry.get_creator(OP_NAME, OP_VERSION, OP_NAMESPACE)
            if creator is not None:
                registry.deregister_creator(creator)


def load_plugin(runtime: str | Runtime, plugin_library: str | os.PathLike | None = None) -> Path:
    """Load the runtime's plugin library (once per process; another one loaded before is withdrawn)
    and check the creator is registered."""
    from ..ops.contract import OP_NAME, OP_NAMESPACE, OP_VERSION

    rt = get_runtime(runtime)
    trt = import_runtime(rt)
    path, where = plugin_candidates(rt, plugin_library)
    if path is None:
        raise TensorRTUnavailable(f"plugin library not found: {where}")
    problem = plugin_problem(rt, trt.__version__, path)
    if problem:
        raise EngineError(problem)
    registry = trt.get_plugin_registry()
    with _LOCK:
        if (rt.name, path) not in _LOADED:
            _withdraw_others(rt, registry)
            logger(rt)  # before loading: the library's messages go to this process's logger
            if path.name == PLUGIN_DYNAMIC_LIBRARY:  # loadLibrary: getCreators + setLoggerFinder
                handle = registry.load_library(str(path))
                if handle is None:
                    raise EngineError(f"{rt.name} refused to load {path} (IPluginRegistry.load_library): "
                                      + (" | ".join(logger(rt).errors[-2:]) or "see the TensorRT log above"))
            else:  # registers its creator when loaded
                _make_core_global(trt, rt)
                try:
                    handle = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
                except OSError as exc:
                    raise EngineError(f"cannot load plugin library {path}: {exc}") from None
                if hasattr(trt, "init_libnvinfer_plugins"):
                    trt.init_libnvinfer_plugins(logger(rt), "")
            _LOADED[(rt.name, path)] = handle
    if registry.get_creator(OP_NAME, OP_VERSION, OP_NAMESPACE) is None:
        raise EngineError(f"{path} loaded but no {OP_NAME} v{OP_VERSION} creator is registered in {rt.name} "
                          f"{trt.__version__}: was it built against this TensorRT's headers?")
    return path


def _core_library(rt: Runtime) -> Path | None:
    """The wheel's core library file (libtensorrt_rtx.so.1, libnvinfer.so.10), or None (a system install)."""
    spec = importlib.util.find_spec(rt.libraries_module)
    for location in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(location).glob(rt.core_library))
        if found:
            return found[0]
    return None


def ensure_core_alias(runtime: str | Runtime) -> Path | None:
    """Make the unversioned core library name the parser dlopens after creating a plugin layer a
    symlink to the wheel's versioned file (see the module docstring). Returns the alias, or None for
    a system install (whose package provides the name). TensorRTUnavailable, with the command to
    run, where the wheel's directory cannot be written."""
    rt = get_runtime(runtime)
    core = _core_library(rt)
    if core is None:
        return None
    alias = core.with_name(rt.core_alias)
    if alias.exists():
        if alias.resolve() != core.resolve():
            raise TensorRTUnavailable(f"{alias} is not {core.name}: a second copy of {rt.name}'s core library breaks "
                                      f"plugin builds; replace it: ln -sf {core.name} {alias}")
        return alias
    try:
        alias.symlink_to(core.name)
    except OSError as exc:
        raise TensorRTUnavailable(
            f"{rt.name}'s ONNX parser loads {rt.core_alias} after creating a plugin layer, and {core.parent} has only "
            f"{core.name} ({exc.strerror or exc}): run `ln -s {core.name} {alias}` (with the rights to write "
            "there), then build again") from None
    return alias


# ------------------------------------------------------------------------------------------ status


def status(runtime: str | Runtime = DEFAULT_RUNTIME, plugin_library: str | os.PathLike | None = None, *,
           need_plugin: bool = True, need_gpu: bool = True) -> TensorRTStatus:
    """Whether engines can be built (and, with need_gpu, run) here with `runtime`; the reason lists
    every missing piece. A runtime that builds ahead of time needs no GPU to build."""
    rt = get_runtime(runtime)
    missing = []
    problem = module_problem(rt)
    if problem:
        missing.append(problem)
    devices, no_gpu = cuda_devices()
    if no_gpu and (need_gpu or not rt.ahead_of_time):
        missing.append(no_gpu)
    library = None
    if need_plugin:
        library, where = plugin_candidates(rt, plugin_library)
        if library is None:
            missing.append(f"plugin library not built ({where}; run `transnext-deploy build-plugin --target plugin`, "
                           f"or set ${PLUGIN_ENV})")
    if missing:
        return TensorRTStatus(False, "; ".join(missing))
    trt = importlib.import_module(rt.module)
    found = f"{rt.name} {trt.__version__}" + (f", {devices[0].name} (sm_{devices[0].sm})" if devices else "")
    if library is not None:
        found += f", plugin {library}"
    return TensorRTStatus(True, found)


def gpu_problem(runtime: str | Runtime) -> str | None:
    """Why this machine's GPU cannot run `runtime`'s engines (a runtime that builds ahead of time
    runs on the compute capabilities it builds for), or None."""
    rt = get_runtime(runtime)
    devices, no_gpu = cuda_devices()
    if no_gpu:
        return no_gpu
    supported = compute_capabilities(rt)
    if supported and devices[0].sm not in supported:
        version = importlib.import_module(rt.module).__version__ if module_problem(rt) is None else ""
        return (f"this GPU ({devices[0]}) is not among the compute capabilities {rt.name} {version} runs on "
                f"({', '.join(supported)})")
    return None


def require(runtime: str | Runtime = DEFAULT_RUNTIME, plugin_library: str | os.PathLike | None = None, *,
            need_plugin: bool = True, need_gpu: bool = True) -> Path | None:
    """Raise TensorRTUnavailable unless `status` says available; returns the plugin library (None
    when not needed)."""
    rt = get_runtime(runtime)
    found = status(rt, plugin_library, need_plugin=need_plugin, need_gpu=need_gpu)
    if not found.available:
        raise TensorRTUnavailable(f"{rt.title} engines cannot be built here: {found.reason}")
    return plugin_candidates(rt, plugin_library)[0] if need_plugin else None


# ------------------------------------------------------------------------------------------ logging

_LOGGERS: dict[str, object] = {}
# Messages that say nothing about the build: TensorRT-RTX logs the first as an error on a machine
# without a GPU although building ahead of time works; the parser logs the second, a warning, for
# every node of every call of a local function after the first (node names are not scoped per call).
NOISE = ("CUDA driver version is insufficient", "already exists, the output tensors of this new instance")


def logger(runtime: str | Runtime = DEFAULT_RUNTIME, verbose: bool = False):
    """The process's logger for `runtime`: keeps the last errors for the exception messages (which
    say what failed in one line), and prints the whole log only when `verbose`."""
    rt = get_runtime(runtime)
    if rt.name not in _LOGGERS:
        _LOGGERS[rt.name] = _collecting_logger(import_runtime(rt))
    found = _LOGGERS[rt.name]
    found.verbose = verbose
    return found


def _collecting_logger(trt):  # a class built on demand: the runtime is imported lazily
    class CollectingLogger(trt.ILogger):
        """Keeps the last errors for the exception message; prints everything when verbose."""

        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.verbose = False

        def log(self, severity, msg):  # called from C++: must not raise
            try:
                if self.verbose:
                    print(f"[{trt.__name__}] {msg}", file=sys.stderr)
                elif severity in (trt.Logger.INTERNAL_ERROR, trt.Logger.ERROR) and not any(n in msg for n in NOISE):
                    self.errors = (self.errors + [msg])[-5:]
            except Exception:  # noqa: BLE001
                pass

    return CollectingLogger()


__all__ = [
    "DEFAULT_RUNTIME",
    "RTX_COMPUTE_CAPABILITIES",
    "RUNTIMES",
    "EngineError",
    "Runtime",
    "TensorRTStatus",
    "TensorRTUnavailable",
    "check_compute_capabilities",
    "compute_capabilities",
    "ensure_core_alias",
    "get_runtime",
    "gpu_problem",
    "import_runtime",
    "load_plugin",
    "logger",
    "module_problem",
    "library_candidates",
    "plugin_candidates",
    "plugin_problem",
    "require",
    "status",
]
