"""TensorRT engines from exported artifacts, with the aggregated-attention plugin (Python API).

`tensorrt` is imported lazily: this module imports, and `tensorrt_status()` answers, on a machine
without TensorRT or a GPU. Three things are needed to build an engine, and the status names each
one that is missing:

- the `tensorrt` Python package (the wheel from pip, or JetPack's python3-libnvinfer);
- a CUDA GPU, asked of the NVIDIA driver itself (`machine.cuda_devices`), so a CPU-only torch build
  does not matter;
- the plugin library `libtransnext_aa_plugin.so` (`transnext-deploy build-plugin --target plugin`),
  found from an explicit path, `$TRANSNEXT_AA_PLUGIN`, or `plugin_build.find_plugin_library()`.

`build_engines_for_artifact(dir)` writes, next to the artifact's ONNX graphs, one engine per
precision (`model.aa_plugin.fp16.engine`, the names the manifest's `trtexec` lines use) and its
metadata `model.aa_plugin.fp16.engine.json`: TensorRT version, GPU name and compute capability,
precision, resolution, batch profile, sha256 of the source ONNX graph and of the plugin library.
An engine whose metadata still matches (same graph, plugin, TensorRT, GPU, precision, profile) is
reused. Tactic timings go to a timing cache per TensorRT version and GPU, shared by every build.

fp32 engines are built with TF32 disabled: TF32 rounds matmul inputs to 10 mantissa bits, which
alone is far past the tolerance the fp32 artifacts are held to.

`ENGINE_TOLERANCES` is what an engine's outputs are held to against PyTorch float32, per precision,
in the allclose convention |engine - pytorch| <= atol + rtol * |pytorch| (polygraphy's --atol and
--rtol): fp32 engines to the fp32 export default, fp16 engines to their own, wider, default.

Engines run through `backends.trt.TensorRTRunner` (the backend export checks, bench and the tests use).
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..cache import cache_dir
from ..artifacts import (
    BATCH_PROFILE,
    ENGINE_SOURCE,
    PLUGIN_DYNAMIC_LIBRARY,
    PLUGIN_ENV,
    PLUGIN_LIBRARY,
    PRECISIONS,
    engine_file_name,
    engine_metadata_name,
    engine_step,
)
from ..files import sha256sum
from ..errors import TransNeXtDeployError, one_line
from ..machine import CudaDevice, cuda_devices
from ..progress import Progress, no_progress
from ..compare import ENGINE_TOLERANCES, FP16_TOLERANCE
from .compatibility import HARDWARE_COMPATIBILITY, check_hardware_compatibility

DEFAULT_WORKSPACE_MIB = 4096
METADATA_FORMAT = 1


class EngineError(TransNeXtDeployError):
    """An engine that cannot be built or run; str() is one line."""


class TensorRTUnavailable(EngineError):
    """TensorRT, a CUDA GPU or the plugin library is missing; str() says which."""


class TensorRTStatus(NamedTuple):
    available: bool
    reason: str  # what is missing ("; "-separated), or what was found when available


# ---------------------------------------------------------------------------------------------
# what this machine has


def _tensorrt_module_problem() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return ("Python package `tensorrt` not installed (pip install 'transnext-deploy[tensorrt]', or JetPack's "
                "python3-libnvinfer)")
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a broken install is reported, whatever it raises
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"`import tensorrt` fails: {first}"
    return None


def resolve_plugin_library(plugin_library: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """(path, where it came from) for the plugin library, or (None, where it was looked for)."""
    from ..plugin.locations import default_build_dir, find_plugin_library

    if plugin_library is not None:
        path = Path(plugin_library).expanduser()
        return (path.resolve(), "given") if path.is_file() else (None, f"{path} (given) does not exist")
    env = os.environ.get(PLUGIN_ENV)
    if env:
        path = Path(env).expanduser()
        return (path.resolve(), f"${PLUGIN_ENV}") if path.is_file() else (None, f"${PLUGIN_ENV}={env} does not exist")
    found = find_plugin_library()
    if found is not None:
        return found.resolve(), "build directory"
    return None, f"not in {default_build_dir()} and ${PLUGIN_ENV} is not set"


def tensorrt_status(plugin_library: str | os.PathLike | None = None, *, need_plugin: bool = True) -> TensorRTStatus:
    """Whether engines can be built and run here; the reason lists every missing piece."""
    missing = []
    module_problem = _tensorrt_module_problem()
    if module_problem:
        missing.append(module_problem)
    devices, no_gpu = cuda_devices()
    if no_gpu:
        missing.append(no_gpu)
    library = None
    if need_plugin:
        library, where = resolve_plugin_library(plugin_library)
        if library is None:
            missing.append(f"plugin library {PLUGIN_LIBRARY} not built ({where}; run "
                           "`transnext-deploy build-plugin --target plugin`, or set $TRANSNEXT_AA_PLUGIN)")
    if missing:
        return TensorRTStatus(False, "; ".join(missing))
    import tensorrt as trt

    found = f"TensorRT {trt.__version__}, {devices[0].name} (sm_{devices[0].sm})"
    if library is not None:
        found += f", plugin {library}"
    return TensorRTStatus(True, found)


def require_tensorrt(plugin_library: str | os.PathLike | None = None, *, need_plugin: bool = True) -> Path | None:
    """Raise TensorRTUnavailable unless TensorRT, a GPU (and the plugin library) are here; returns the
    plugin library path (None when not needed)."""
    status = tensorrt_status(plugin_library, need_plugin=need_plugin)
    if not status.available:
        raise TensorRTUnavailable(f"TensorRT engines cannot be built here: {status.reason}")
    return resolve_plugin_library(plugin_library)[0] if need_plugin else None


# ---------------------------------------------------------------------------------------------
# plugin and logger

_LOADED_PLUGINS: dict[Path, ctypes.CDLL] = {}
_PLUGIN_LOCK = threading.Lock()


def load_plugin(plugin_library: str | os.PathLike | None = None) -> Path:
    """Load the plugin library once per process (its creator registers itself) and check the
    creator is in TensorRT's registry."""
    import tensorrt as trt

    from ..ops.contract import OP_NAME, OP_NAMESPACE, OP_VERSION

    path, where = resolve_plugin_library(plugin_library)
    if path is None:
        raise TensorRTUnavailable(f"plugin library {PLUGIN_LIBRARY} not found: {where}")
    with _PLUGIN_LOCK:
        if path not in _LOADED_PLUGINS:
            try:
                _LOADED_PLUGINS[path] = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            except OSError as exc:
                raise EngineError(f"cannot load plugin library {path}: {exc}") from None
            trt.init_libnvinfer_plugins(trt_logger(), "")
    if trt.get_plugin_registry().get_creator(OP_NAME, OP_VERSION, OP_NAMESPACE) is None:
        raise EngineError(f"{path} loaded but no {OP_NAME} v{OP_VERSION} creator is registered: is it "
                          f"{PLUGIN_LIBRARY} (not {PLUGIN_DYNAMIC_LIBRARY}) built against this TensorRT?")
    return path


_TRT_LOGGER = None


def trt_logger(verbose: bool = False):
    """The process's TensorRT logger: prints warnings and errors, keeps the last errors for messages."""
    import tensorrt as trt

    global _TRT_LOGGER
    if _TRT_LOGGER is None:
        _TRT_LOGGER = _CollectingLogger(trt)
    _TRT_LOGGER.verbose = verbose
    return _TRT_LOGGER


def _CollectingLogger(trt):  # a class built on demand: tensorrt is imported lazily
    class CollectingLogger(trt.ILogger):
        """Prints warnings and errors, keeps the last errors for the exception message."""

        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.verbose = False

        def log(self, severity, msg):  # called from C++: must not raise
            try:
                if severity in (trt.Logger.INTERNAL_ERROR, trt.Logger.ERROR):
                    self.errors = (self.errors + [msg])[-5:]
                if severity in (trt.Logger.INTERNAL_ERROR, trt.Logger.ERROR, trt.Logger.WARNING) or self.verbose:
                    print(f"[TensorRT] {msg}", file=sys.stderr)
            except Exception:  # noqa: BLE001
                pass

    return CollectingLogger()


# ---------------------------------------------------------------------------------------------
# building


def engine_path_for(onnx_path: str | os.PathLike, precision: str) -> Path:
    """model.aa_plugin.onnx + fp16 -> model.aa_plugin.fp16.engine (the manifest's trtexec naming)."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(engine_file_name(onnx_path.name, precision))


def metadata_path_for(engine_path: str | os.PathLike) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_metadata_name(engine_path.name))


def default_timing_cache(tensorrt_version: str, device: CudaDevice) -> Path:
    return cache_dir() / "tensorrt" / f"timing_trt{tensorrt_version}_sm{device.sm}.cache"


def check_precisions(precisions: Sequence[str] | None) -> tuple[str, ...]:
    """The precisions asked for, lower case, in order, without repeats (None: every one); a one-line
    EngineError for an unknown one or none at all."""
    if precisions is None:
        return PRECISIONS
    wanted = tuple(dict.fromkeys(str(p).lower() for p in precisions))
    unknown = [p for p in wanted if p not in PRECISIONS]
    if unknown or not wanted:
        raise EngineError(f"precisions must be among {', '.join(PRECISIONS)}, got {', '.join(precisions) or 'none'}")
    return wanted


def dynamic_plugin_for(plugin_library: str | os.PathLike | None) -> Path:
    """The loadLibrary variant of the plugin that a version-compatible engine carries: next to the
    given plugin library, else in the build directory."""
    from ..plugin.locations import find_plugin_library

    path = (Path(plugin_library).with_name(PLUGIN_DYNAMIC_LIBRARY) if plugin_library is not None
            else find_plugin_library(dynamic=True))
    if path is None or not path.is_file():
        raise EngineError(f"version-compatible engines carry {PLUGIN_DYNAMIC_LIBRARY}: build it with `transnext-deploy "
                          f"build-plugin --target plugin` (or place it next to {PLUGIN_LIBRARY})")
    return path


def check_batch_profile(profile: Sequence[int]) -> tuple[int, int, int]:
    if len(profile) != 3:
        raise EngineError(f"batch profile must be (min, opt, max), got {tuple(profile)}")
    lo, opt, hi = (int(v) for v in profile)
    if not 1 <= lo <= opt <= hi:
        raise EngineError(f"batch profile must satisfy 1 <= min <= opt <= max, got {lo}/{opt}/{hi}")
    return lo, opt, hi


def uses_custom_op(onnx_path: str | os.PathLike) -> bool:
    """Whether a graph has aggregated-attention nodes (with or without a local-function body):
    TensorRT then wants the plugin loaded."""
    import onnx

    from ..ops.contract import OP_NAME

    model = onnx.load(str(onnx_path), load_external_data=False)
    return any(n.op_type == OP_NAME for n in model.graph.node)


def _onnx_input(onnx_path: Path) -> tuple[str, tuple[int, int]]:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise EngineError(f"{onnx_path.name}: expected one image input, found {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not all(d.HasField("dim_value") for d in dims[1:]):
        raise EngineError(f"{onnx_path.name}: input {inputs[0].name} is not (batch, 3, H, W) with static H, W")
    return inputs[0].name, (dims[2].dim_value, dims[3].dim_value)


@dataclass
class EngineBuild:
    path: Path
    metadata: dict
    reused: bool


def _metadata_key(meta: dict) -> dict:
    keys = ("format", "tensorrt_version", "precision", "tf32", "batch_profile", "source_onnx", "plugin_library",
            "version_compatible", "hardware_compatibility", "serialized_plugin")
    key = {k: meta.get(k) for k in keys}
    key["gpu_sm"] = (meta.get("gpu") or {}).get("sm")
    return key


def build_engine(
    onnx_path: str | os.PathLike,
    precision: str = "fp32",
    *,
    engine_path: str | os.PathLike | None = None,
    batch_profile: Sequence[int] = BATCH_PROFILE,
    plugin_library: str | os.PathLike | None = None,
    timing_cache: str | os.PathLike | None = None,
    workspace_mib: int = DEFAULT_WORKSPACE_MIB,
    rebuild: bool = False,
    verbose: bool = False,
    version_compatible: bool = False,
    hardware_compatibility: str = "none",
    serialize_plugin: str | os.PathLike | None = None,
) -> EngineBuild:
    """Build (or reuse) one engine from an ONNX graph; writes the engine and `<engine>.json`.

    `version_compatible`: the engine also runs on later TensorRT versions of the same major version
    (it carries TensorRT's lean runtime: deserialize it with host code allowed). `serialize_plugin`:
    a loadLibrary plugin library (libtransnext_aa_plugin_dynamic.so) stored inside such an engine.
    `hardware_compatibility`: "none" (the GPU's compute capability), "ampere_plus" (any Ampere or
    later GPU) or "same_compute_capability" (TensorRT >= 10.13). Each raises EngineError where this
    TensorRT does not offer it."""
    (precision,) = check_precisions([precision])
    check_hardware_compatibility(hardware_compatibility)
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise EngineError(f"ONNX graph not found: {onnx_path}")
    needs_plugin = uses_custom_op(onnx_path)
    library = require_tensorrt(plugin_library, need_plugin=needs_plugin)
    import tensorrt as trt

    lo, opt, hi = check_batch_profile(batch_profile)
    input_name, (h, w) = _onnx_input(onnx_path)
    devices, _ = cuda_devices()
    device = devices[0]
    engine_path = Path(engine_path) if engine_path is not None else engine_path_for(onnx_path, precision)
    meta_path = metadata_path_for(engine_path)
    metadata = {
        "format": METADATA_FORMAT,
        "tensorrt_version": trt.__version__,
        "gpu": device.as_dict(),
        "precision": precision,
        "tf32": False,
        "resolution": [h, w],
        "input": {"name": input_name, "shape": ["batch", 3, h, w]},
        "batch_profile": {"min": lo, "opt": opt, "max": hi},
        "source_onnx": {"file": onnx_path.name, "sha256": sha256sum(onnx_path)},
        "plugin_library": ({"path": str(library), "sha256": sha256sum(library)} if library else None),
        "version_compatible": version_compatible,
        "hardware_compatibility": hardware_compatibility,
        "serialized_plugin": ({"file": Path(serialize_plugin).name, "sha256": sha256sum(serialize_plugin)}
                              if serialize_plugin else None),
    }
    if not rebuild and engine_path.is_file() and meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            old = {}
        if _metadata_key(old) == _metadata_key(metadata) and old.get("engine_sha256") == sha256sum(engine_path):
            return EngineBuild(engine_path, old, True)

    if library is not None:
        load_plugin(library)
    logger = trt_logger(verbose)
    logger.errors = []
    start = time.perf_counter()
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineError(f"TensorRT's ONNX parser rejects {onnx_path.name}: " + " | ".join(
            one_line(e) for e in errors[:3]))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    config.clear_flag(trt.BuilderFlag.TF32)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)  # layers TensorRT keeps in fp32 stay true fp32 (no TF32)
    _set_compatibility(trt, config, version_compatible, hardware_compatibility, serialize_plugin)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, (lo, 3, h, w), (opt, 3, h, w), (hi, 3, h, w))
    config.add_optimization_profile(profile)

    cache_path = Path(timing_cache) if timing_cache is not None else default_timing_cache(trt.__version__, device)
    cache_bytes = b""
    if cache_path.is_file():
        cache_bytes = cache_path.read_bytes()
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        detail = " | ".join(one_line(e) for e in logger.errors) or "see the TensorRT log above"
        raise EngineError(f"TensorRT could not build a {precision} engine from {onnx_path.name}: {detail}")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_name(f".{engine_path.name}.tmp")
    tmp.write_bytes(bytes(memoryview(serialized)))
    os.replace(tmp, engine_path)
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp_cache = cache_path.with_name(f".{cache_path.name}.{os.getpid()}.tmp")
        tmp_cache.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
        os.replace(tmp_cache, cache_path)
        metadata["timing_cache"] = str(cache_path)
    except OSError as exc:  # a cache that cannot be written only makes the next build slower
        metadata["timing_cache"] = f"not written: {exc}"
    from .. import __version__

    metadata.update({
        "engine_file": engine_path.name,
        "engine_bytes": engine_path.stat().st_size,
        "engine_sha256": sha256sum(engine_path),
        "build_seconds": round(time.perf_counter() - start, 1),
        "workspace_mib": workspace_mib,
        "built_by": f"transnext-deploy {__version__}",
        "host": platform.node(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    meta_path.write_text(json.dumps(metadata, indent=2))
    return EngineBuild(engine_path, metadata, False)


def _set_compatibility(trt, config, version_compatible: bool, hardware_compatibility: str,
                       serialize_plugin: str | os.PathLike | None) -> None:
    """Version and hardware compatibility where this TensorRT offers them, else EngineError."""
    if version_compatible:
        if not hasattr(trt.BuilderFlag, "VERSION_COMPATIBLE"):
            raise EngineError(f"TensorRT {trt.__version__} cannot build version-compatible engines")
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        if serialize_plugin is not None:
            config.plugins_to_serialize = [str(serialize_plugin)]
    if hardware_compatibility != "none":
        level = getattr(getattr(trt, "HardwareCompatibilityLevel", None), hardware_compatibility.upper(), None)
        if level is None:
            raise EngineError(f"TensorRT {trt.__version__} does not offer hardware compatibility "
                              f"{hardware_compatibility!r}")
        config.hardware_compatibility_level = level


def build_engines_for_artifact(
    artifact_dir: str | os.PathLike,
    precisions: Sequence[str] = PRECISIONS,
    *,
    source: str = ENGINE_SOURCE,
    batch_profile: Sequence[int] = BATCH_PROFILE,
    plugin_library: str | os.PathLike | None = None,
    timing_cache: str | os.PathLike | None = None,
    rebuild: bool = False,
    progress: Progress = no_progress,
    version_compatible: bool = False,
    hardware_compatibility: str = "none",
    serialize_plugin: str | os.PathLike | None = None,
) -> list[Path]:
    """Build one engine per precision next to the artifact's ONNX graph (default: the custom-op
    graph, which needs the plugin); returns the engine paths. Every option is checked before
    anything is built. A version-compatible engine carries the loadLibrary plugin library
    (`serialize_plugin`, default: dynamic_plugin_for(plugin_library)). Raises TensorRTUnavailable
    with the missing pieces when TensorRT, a GPU or the plugin library is absent, EngineError otherwise."""
    directory = Path(artifact_dir)
    onnx_path = directory / source
    if not onnx_path.is_file():
        raise EngineError(f"{directory} is not an export artifact directory: {source} not found there")
    precisions = check_precisions(precisions)
    batch_profile = check_batch_profile(batch_profile)
    check_hardware_compatibility(hardware_compatibility)
    if version_compatible and serialize_plugin is None:
        serialize_plugin = dynamic_plugin_for(plugin_library)
    require_tensorrt(plugin_library, need_plugin=uses_custom_op(onnx_path))
    paths = []
    for precision in precisions:
        progress(engine_step(precision, source), advance=1)
        result = build_engine(onnx_path, precision, batch_profile=batch_profile, plugin_library=plugin_library,
                              timing_cache=timing_cache, rebuild=rebuild, version_compatible=version_compatible,
                              hardware_compatibility=hardware_compatibility, serialize_plugin=serialize_plugin)
        paths.append(result.path)
    return paths


@dataclass(frozen=True)
class EnginePlan:
    """The engines an export builds: `precisions`, or none and `skipped`, the one-line reason."""

    precisions: tuple[str, ...] = ()
    skipped: str | None = None


def plan_engines(precisions: Sequence[str] = PRECISIONS, plugin_library: str | os.PathLike | None = None
                 ) -> EnginePlan:
    """The export hook: every precision when TensorRT, a GPU and the plugin are here, otherwise none
    and why. Export then builds them with build_engines_for_artifact; a build that fails where
    everything is present raises EngineError (a real failure, not a skip)."""
    status = tensorrt_status(plugin_library)
    if not status.available:
        return EnginePlan((), f"TensorRT engines skipped: {status.reason}")
    return EnginePlan(tuple(precisions))


def read_engine_metadata(engine_path: str | os.PathLike) -> dict:
    path = metadata_path_for(engine_path)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EngineError(f"engine metadata {path} unreadable: {exc}") from None


__all__ = [
    "ENGINE_TOLERANCES",
    "FP16_TOLERANCE",
    "HARDWARE_COMPATIBILITY",
    "PRECISIONS",
    "EngineBuild",
    "EngineError",
    "EnginePlan",
    "TensorRTStatus",
    "TensorRTUnavailable",
    "build_engine",
    "build_engines_for_artifact",
    "check_batch_profile",
    "check_precisions",
    "dynamic_plugin_for",
    "engine_path_for",
    "load_plugin",
    "plan_engines",
    "read_engine_metadata",
    "resolve_plugin_library",
    "tensorrt_status",
]
