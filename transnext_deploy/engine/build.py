"""Building engines from exported graphs, with TensorRT or TensorRT-RTX (the runtime a parameter).

`build_engine(graph)` writes the engine and `<engine>.json`, its metadata: runtime and version, the
compute capabilities it was built for (TensorRT-RTX, ahead of time) or the GPU (TensorRT), the
precision, resolution and batch profile, and the sha256 of the graph and of the plugin library it
was built against. An engine whose metadata still matches is reused. Networks are strongly typed:
the precision is the graph's (`model.aa_plugin.fp16.onnx` makes an fp16 engine); no builder
precision flag is set, and fp32 engines are built with TF32 off (TF32 rounds matmul inputs to 10
mantissa bits, far past the tolerance the fp32 graphs are held to).

`build_engines_for_artifact(dir)` builds one engine per precision next to an artifact's graphs
(default: the custom-op graph, which needs the plugin; `graph="standard"` or `"function"` for the
others). Tactic timings go to a timing cache per runtime version and GPU in the user cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import (
    BATCH_PROFILE,
    GRAPHS,
    PRECISIONS,
    engine_file_name,
    engine_metadata_name,
    engine_step,
    graph_file,
    graph_precision,
)
from ..cache import cache_dir
from ..errors import one_line
from ..files import sha256sum, write_bytes_atomically
from ..machine import cuda_devices
from ..progress import Progress, no_progress
from ..ops.contract import OP_NAME, has_custom_nodes
from .compatibility import check_hardware_compatibility
from .tensorrt import (
    DEFAULT_RUNTIME,
    EngineError,
    check_compute_capabilities,
    ensure_core_alias,
    get_runtime,
    import_runtime,
    load_plugin,
    logger,
    library_candidates,
    require,
    status,
)

DEFAULT_WORKSPACE_MIB = 4096
METADATA_FORMAT = 2  # 2: runtime, compute capabilities, strongly typed graphs of one precision each


@dataclass
class EngineBuild:
    path: Path
    metadata: dict
    reused: bool


@dataclass(frozen=True)
class EnginePlan:
    """The engines an export builds: `precisions`, or none and `skipped`, the one-line reason."""

    precisions: tuple[str, ...] = ()
    skipped: str | None = None


# ------------------------------------------------------------------------------------------ option checks


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


def check_batch_profile(profile: Sequence[int]) -> tuple[int, int, int]:
    if len(profile) != 3:
        raise EngineError(f"batch profile must be (min, opt, max), got {tuple(profile)}")
    lo, opt, hi = (int(v) for v in profile)
    if not 1 <= lo <= opt <= hi:
        raise EngineError(f"batch profile must satisfy 1 <= min <= opt <= max, got {lo}/{opt}/{hi}")
    return lo, opt, hi


def check_hardware_level(runtime: str, level: str) -> str:
    """A hardware compatibility level the runtime offers. TensorRT-RTX has none (it ignores the
    setting, with a warning): its engines run on the compute capabilities they are built for."""
    check_hardware_compatibility(level)
    rt = get_runtime(runtime)
    if level != "none" and rt.ahead_of_time:
        raise EngineError(f"{rt.name} has no hardware compatibility levels: its engines run on the compute "
                          f"capabilities they are built for (--compute-capability), got {level!r}")
    return level


def dynamic_plugin_for(plugin_library: str | os.PathLike | None) -> Path:
    """The loadLibrary variant of the plugin that a version-compatible engine carries: next to the
    given plugin library, else in the build directory."""
    path, where = library_candidates("plugin_dynamic", plugin_library)
    if path is None:
        raise EngineError(f"version-compatible engines carry the loadLibrary plugin library: {where} (build it with "
                          "`transnext-deploy build-plugin --target plugin`)")
    return path


# ------------------------------------------------------------------------------------------ the graph


def engine_path_for(graph_path: str | os.PathLike, runtime: str = DEFAULT_RUNTIME) -> Path:
    """model.aa_plugin.fp16.onnx -> model.aa_plugin.fp16.engine (TensorRT), .fp16.rtx.engine (TensorRT-RTX)."""
    graph_path = Path(graph_path)
    return graph_path.with_name(engine_file_name(graph_path.name, get_runtime(runtime).engine_tag))


def metadata_path_for(engine_path: str | os.PathLike) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_metadata_name(engine_path.name))


def read_engine_metadata(engine_path: str | os.PathLike) -> dict:
    path = metadata_path_for(engine_path)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EngineError(f"engine metadata {path} unreadable: {exc}") from None


def uses_custom_op(graph_path: str | os.PathLike) -> bool:
    """Whether the main graph has aggregated-attention nodes without a local-function body: TensorRT
    then needs the plugin. (A node backed by a local function is inlined by the parser, which never
    asks the plugin registry for it: the function-form graph builds without the plugin.)"""
    import onnx

    return has_custom_nodes(onnx.load(str(graph_path), load_external_data=False))


def _graph_facts(graph_path: Path) -> tuple[bool, str, tuple[int, int]]:
    """(uses_custom_op, input name, (H, W)) of a graph, read in one load."""
    import onnx

    model = onnx.load(str(graph_path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise EngineError(f"{graph_path.name}: expected one image input, found {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not all(d.HasField("dim_value") for d in dims[1:]):
        raise EngineError(f"{graph_path.name}: input {inputs[0].name} is not (batch, 3, H, W) with static H, W")
    return has_custom_nodes(model), inputs[0].name, (dims[2].dim_value, dims[3].dim_value)


# ------------------------------------------------------------------------------------------ building


def _metadata_key(meta: dict) -> dict:
    keys = ("format", "runtime", "runtime_version", "precision", "batch_profile", "graph", "plugin_library",
            "compute_capabilities", "version_compatible", "hardware_compatibility", "serialized_plugin")
    return {k: meta.get(k) for k in keys} | {"gpu_sm": (meta.get("gpu") or {}).get("sm")}


def _target(rt, compute_capabilities: Sequence[str]) -> tuple[dict | None, tuple[str, ...]]:
    """(the GPU it is built on, the compute capabilities it is built for): a runtime that builds
    ahead of time is given them (else the GPU here); the other builds for the GPU here."""
    devices, no_gpu = cuda_devices()
    device = devices[0].as_dict() if devices else None
    if compute_capabilities:
        return device, tuple(compute_capabilities)
    if device is None:
        raise EngineError(f"{rt.name} builds ahead of time without a GPU only for the compute capabilities it is given "
                          f"(--compute-capability): {no_gpu}")
    return device, (device["sm"],)


def _network(trt, rt, graph_path: Path, needs_plugin: bool, verbose: bool):
    """The strongly typed network of the graph (builder, network, its log)."""
    log = logger(rt, verbose)
    log.errors = []
    if needs_plugin and rt.ahead_of_time:
        ensure_core_alias(rt)
    builder = trt.Builder(log)
    flags = getattr(trt, "NetworkDefinitionCreationFlag", None)
    strongly_typed = getattr(flags, "STRONGLY_TYPED", None)
    # TensorRT 10.x builds weakly typed networks unless asked; 11.x and TensorRT-RTX only strongly typed ones.
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    parser = trt.OnnxParser(network, log)
    if not parser.parse_from_file(str(graph_path)):
        errors = [one_line(str(parser.get_error(i))).split(" cudaError ")[0] for i in range(parser.num_errors)]
        # The plugin says why it refused a node (a bad attribute...) in the log; the parser only that it did.
        reasons = [one_line(e) for e in log.errors if e.startswith(f"{OP_NAME}:")]
        raise EngineError(f"{rt.name}'s ONNX parser rejects {graph_path.name}: " + " | ".join(errors[:3])
                          + (f" ({reasons[-1]})" if reasons else ""))
    return builder, network, log


def count_layers(trt, network) -> tuple[int, int]:
    """(layers, plugin layers) of a parsed network."""
    plugin_type = getattr(trt.LayerType, "PLUGIN_V3", None)
    plugins = sum(network.get_layer(i).type == plugin_type for i in range(network.num_layers))
    return network.num_layers, plugins


def build_engine(
    graph_path: str | os.PathLike,
    *,
    runtime: str = DEFAULT_RUNTIME,
    compute_capabilities: Sequence[str | int] = (),
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
    """Build (or reuse) one engine from an exported graph; writes the engine and `<engine>.json`.

    `runtime`: "tensorrt" (builds for the GPU here) or "tensorrt-rtx" (for `compute_capabilities`,
    with no GPU needed). `version_compatible`: the engine also runs on later TensorRT versions of the
    same major version (it carries TensorRT's lean runtime and `serialize_plugin`, the loadLibrary
    plugin library). `hardware_compatibility`: "none", "ampere_plus" or "same_compute_capability".
    Each raises EngineError where the runtime does not offer it."""
    rt = get_runtime(runtime)
    check_hardware_level(rt, hardware_compatibility)
    compute_capabilities = check_compute_capabilities(rt, compute_capabilities)
    graph_path = Path(graph_path)
    if not graph_path.is_file():
        raise EngineError(f"ONNX graph not found: {graph_path}")
    needs_plugin, input_name, (h, w) = _graph_facts(graph_path)
    library = require(rt, plugin_library, need_plugin=needs_plugin, need_gpu=not compute_capabilities)
    trt = import_runtime(rt)
    lo, opt, hi = check_batch_profile(batch_profile)
    device, targets = _target(rt, compute_capabilities)
    engine_path = Path(engine_path) if engine_path is not None else engine_path_for(graph_path, rt.name)
    meta_path = metadata_path_for(engine_path)
    metadata = _planned_metadata(rt, trt, graph_path, library, input_name, (h, w), (lo, opt, hi), device, targets,
                                 bool(compute_capabilities), version_compatible, hardware_compatibility,
                                 serialize_plugin)
    reused = None if rebuild else _reusable(engine_path, meta_path, metadata)
    if reused is not None:
        return EngineBuild(engine_path, reused, True)

    if library is not None:
        load_plugin(rt, library)
    start = time.perf_counter()
    builder, network, log = _network(trt, rt, graph_path, needs_plugin, verbose)
    metadata["layers"], metadata["plugin_layers"] = count_layers(trt, network)
    config = _config(trt, rt, builder, input_name, (lo, opt, hi), (h, w), workspace_mib, compute_capabilities,
                     version_compatible, hardware_compatibility, serialize_plugin)
    cache = _timing_cache(trt, rt, config, timing_cache, targets)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        detail = " | ".join(one_line(e) for e in log.errors) or "see the log above"
        raise EngineError(f"{rt.name} could not build an engine from {graph_path.name}: {detail}")
    if cache is not None:
        metadata["timing_cache"] = _save_timing_cache(config, cache)
    metadata["build_seconds"] = round(time.perf_counter() - start, 1)
    _write_engine(engine_path, meta_path, serialized, metadata, workspace_mib)
    return EngineBuild(engine_path, metadata, False)


def _planned_metadata(rt, trt, graph_path: Path, library: Path | None, input_name: str, size: tuple[int, int],
                      profile: tuple[int, int, int], device, targets, ahead_of_time: bool, version_compatible: bool,
                      hardware_compatibility: str, serialize_plugin) -> dict:
    """What the engine will be, known before building it: the key an existing engine is reused by."""
    (h, w), (lo, opt, hi) = size, profile
    return {
        "format": METADATA_FORMAT, "runtime": rt.name, "runtime_version": trt.__version__,
        "precision": graph_precision(graph_path.name), "tf32": False,
        "compute_capabilities": list(targets), "built_ahead_of_time": ahead_of_time, "gpu": device,
        "resolution": [h, w], "input": {"name": input_name, "shape": ["batch", 3, h, w]},
        "batch_profile": {"min": lo, "opt": opt, "max": hi},
        "graph": {"file": graph_path.name, "sha256": sha256sum(graph_path)},
        "plugin_library": ({"file": library.name, "path": str(library), "sha256": sha256sum(library)}
                           if library else None),
        "version_compatible": version_compatible, "hardware_compatibility": hardware_compatibility,
        "serialized_plugin": ({"file": Path(serialize_plugin).name, "sha256": sha256sum(serialize_plugin)}
                              if serialize_plugin else None),
    }


def _reusable(engine_path: Path, meta_path: Path, metadata: dict) -> dict | None:
    """The metadata of an engine already built from the same inputs, unchanged since; else None."""
    if not (engine_path.is_file() and meta_path.is_file()):
        return None
    try:
        old = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if _metadata_key(old) == _metadata_key(metadata) and old.get("engine_sha256") == sha256sum(engine_path):
        return old
    return None


def _write_engine(engine_path: Path, meta_path: Path, serialized, metadata: dict, workspace_mib: int) -> None:
    """The engine through a temporary file (never half-written under its name), then its metadata."""
    from .. import __version__

    data = bytes(memoryview(serialized))
    write_bytes_atomically(engine_path, data)
    metadata.update({
        "engine_file": engine_path.name, "engine_bytes": len(data),
        "engine_sha256": hashlib.sha256(data).hexdigest(), "workspace_mib": workspace_mib,
        "built_by": f"transnext-deploy {__version__}", "host": platform.node(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    meta_path.write_text(json.dumps(metadata, indent=2))


def _config(trt, rt, builder, input_name: str, profile: tuple[int, int, int], size: tuple[int, int],
            workspace_mib: int, compute_capabilities: Sequence[str], version_compatible: bool,
            hardware_compatibility: str, serialize_plugin):
    """The builder config: workspace, TF32 off, the batch profile, the targets, the compatibility."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    (lo, opt, hi), (h, w) = profile, size
    shapes = builder.create_optimization_profile()
    shapes.set_shape(input_name, (lo, 3, h, w), (opt, 3, h, w), (hi, 3, h, w))
    config.add_optimization_profile(shapes)
    if compute_capabilities:
        config.num_compute_capabilities = len(compute_capabilities)
        for i, cc in enumerate(compute_capabilities):
            config.set_compute_capability(getattr(trt.ComputeCapability, f"SM{cc}"), i)
    if version_compatible:
        if not hasattr(trt.BuilderFlag, "VERSION_COMPATIBLE"):
            raise EngineError(f"{rt.name} {trt.__version__} cannot build version-compatible engines")
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        if serialize_plugin is not None:
            config.plugins_to_serialize = [str(serialize_plugin)]
    if hardware_compatibility != "none":
        level = getattr(getattr(trt, "HardwareCompatibilityLevel", None), hardware_compatibility.upper(), None)
        if level is None:
            raise EngineError(f"{rt.name} {trt.__version__} does not offer hardware compatibility "
                              f"{hardware_compatibility!r}")
        config.hardware_compatibility_level = level
    return config


def default_timing_cache(runtime: str, version: str, targets: Sequence[str]) -> Path:
    return cache_dir() / "tensorrt" / f"timing_{runtime}{version}_sm{'-'.join(targets)}.cache"


def _timing_cache(trt, rt, config, path: str | os.PathLike | None, targets: Sequence[str]):
    """The timing cache the build reads and extends, as (config's cache, file), or None where the
    runtime keeps none (TensorRT-RTX times nothing ahead of time)."""
    if rt.ahead_of_time or not hasattr(config, "create_timing_cache"):
        return None
    path = Path(path) if path is not None else default_timing_cache(rt.name, trt.__version__, targets)
    cache = config.create_timing_cache(path.read_bytes() if path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return path


def _save_timing_cache(config, path: Path) -> str:
    try:
        write_bytes_atomically(path, bytes(memoryview(config.get_timing_cache().serialize())))
        return str(path)
    except OSError as exc:  # a cache that cannot be written only makes the next build slower
        return f"not written: {exc}"


def build_engines_for_artifact(
    artifact_dir: str | os.PathLike,
    precisions: Sequence[str] | None = None,
    *,
    graph: str = "plugin",
    runtime: str = DEFAULT_RUNTIME,
    compute_capabilities: Sequence[str | int] = (),
    batch_profile: Sequence[int] = BATCH_PROFILE,
    plugin_library: str | os.PathLike | None = None,
    timing_cache: str | os.PathLike | None = None,
    rebuild: bool = False,
    progress: Progress = no_progress,
    version_compatible: bool = False,
    hardware_compatibility: str = "none",
    serialize_plugin: str | os.PathLike | None = None,
    verbose: bool = False,
) -> list[Path]:
    """Build one engine per precision next to the artifact's graph of kind `graph` (artifacts.GRAPHS:
    "plugin", the default and the TensorRT graph, "standard" or "function"); returns the engine
    paths. Every option is checked before anything is built. A version-compatible engine carries
    the loadLibrary plugin library (`serialize_plugin`, default: dynamic_plugin_for(plugin_library)).
    Raises TensorRTUnavailable with the missing pieces, EngineError otherwise."""
    rt = get_runtime(runtime)
    directory = Path(artifact_dir)
    if graph not in GRAPHS:
        raise EngineError(f"graph must be one of {', '.join(GRAPHS)}, got {graph!r}")
    precisions = check_precisions(precisions)
    paths = [directory / graph_file(graph, p) for p in precisions]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise EngineError(f"{directory} is not an export artifact directory with {', '.join(missing)}")
    batch_profile = check_batch_profile(batch_profile)
    check_hardware_level(rt, hardware_compatibility)
    compute_capabilities = check_compute_capabilities(rt, compute_capabilities)
    if version_compatible and serialize_plugin is None:
        serialize_plugin = dynamic_plugin_for(plugin_library)
    require(rt, plugin_library, need_plugin=uses_custom_op(paths[0]), need_gpu=not compute_capabilities)
    built = []
    for precision, path in zip(precisions, paths):
        progress(engine_step(precision, path.name, rt.name), advance=1)
        built.append(build_engine(path, runtime=rt.name, compute_capabilities=compute_capabilities,
                                  batch_profile=batch_profile, plugin_library=plugin_library, timing_cache=timing_cache,
                                  rebuild=rebuild, version_compatible=version_compatible,
                                  hardware_compatibility=hardware_compatibility,
                                  serialize_plugin=serialize_plugin, verbose=verbose).path)
    return built


def plan_engines(precisions: Sequence[str] = PRECISIONS, plugin_library: str | os.PathLike | None = None
                 ) -> EnginePlan:
    """The export hook: every precision when TensorRT, a GPU and the plugin are here, otherwise none
    and why. Export then builds them with build_engines_for_artifact; a build that fails where
    everything is present raises EngineError (a real failure, not a skip)."""
    found = status(DEFAULT_RUNTIME, plugin_library)
    if not found.available:
        return EnginePlan((), f"TensorRT engines skipped: {found.reason}")
    return EnginePlan(tuple(precisions))


__all__ = [
    "DEFAULT_WORKSPACE_MIB",
    "EngineBuild",
    "EnginePlan",
    "build_engine",
    "build_engines_for_artifact",
    "check_batch_profile",
    "check_hardware_level",
    "check_precisions",
    "count_layers",
    "default_timing_cache",
    "dynamic_plugin_for",
    "engine_path_for",
    "metadata_path_for",
    "plan_engines",
    "read_engine_metadata",
    "uses_custom_op",
]
