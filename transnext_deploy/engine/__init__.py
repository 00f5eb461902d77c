"""TensorRT engines from exported artifacts, with the aggregated-attention plugin.

`tensorrt.py` says which TensorRT: the two runtimes (TensorRT 10.x / 11.x, and TensorRT for RTX,
which builds ahead of time without a GPU), what each needs, and which plugin library each loads.
`build.py` builds engines from exported graphs, strongly typed (the precision is the graph's),
with the runtime a parameter, and writes each engine's metadata beside it. `compatibility.py`
holds the rules that decide whether an engine runs here. Engines run through
`backends.trt.TensorRTBackend`. Nothing here imports a runtime until it is asked for one: this
package imports, and `status()` answers, on a machine without TensorRT or a GPU.
"""

from .build import (
    DEFAULT_WORKSPACE_MIB,
    EngineBuild,
    EnginePlan,
    build_engine,
    build_engines_for_artifact,
    check_batch_profile,
    check_precisions,
    count_layers,
    dynamic_plugin_for,
    engine_path_for,
    metadata_path_for,
    plan_engines,
    read_engine_metadata,
    uses_custom_op,
)
from .compatibility import HARDWARE_COMPATIBILITY, PRECISION_PREFERENCE, engine_problem
from .tensorrt import (
    DEFAULT_RUNTIME,
    RTX_COMPUTE_CAPABILITIES,
    RUNTIMES,
    EngineError,
    TensorRTStatus,
    TensorRTUnavailable,
    load_plugin,
    status,
)


def tensorrt_status(plugin_library=None, *, need_plugin: bool = True, runtime: str = DEFAULT_RUNTIME,
                    need_gpu: bool = True) -> TensorRTStatus:
    """Whether engines can be built and run here with `runtime` (default TensorRT); see tensorrt.status."""
    return status(runtime, plugin_library, need_plugin=need_plugin, need_gpu=need_gpu)


__all__ = [
    "DEFAULT_RUNTIME",
    "DEFAULT_WORKSPACE_MIB",
    "HARDWARE_COMPATIBILITY",
    "PRECISION_PREFERENCE",
    "RTX_COMPUTE_CAPABILITIES",
    "RUNTIMES",
    "EngineBuild",
    "EngineError",
    "EnginePlan",
    "TensorRTStatus",
    "TensorRTUnavailable",
    "build_engine",
    "build_engines_for_artifact",
    "check_batch_profile",
    "check_precisions",
    "count_layers",
    "dynamic_plugin_for",
    "engine_path_for",
    "engine_problem",
    "load_plugin",
    "metadata_path_for",
    "plan_engines",
    "read_engine_metadata",
    "status",
    "tensorrt_status",
    "uses_custom_op",
]
