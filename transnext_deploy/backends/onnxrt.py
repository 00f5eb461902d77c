"""Exported graphs in onnxruntime: CPU sessions (the fused op available as a custom op) and CUDA.

The custom-op graph (one `TransNeXtAggregatedAttention` node per block, no function body) runs in
onnxruntime through onnxruntime-extensions, whose Python custom ops live in the fixed domain
`ai.onnx.contrib`. The session gets a copy of the graph with the op moved to that domain; the
op itself calls the plugin's host library (`plugin_host`): its fast CPU kernel, held by the tests to
the arithmetic the CUDA kernel runs, with as many threads as the session. Graphs whose custom nodes
carry a local function need nothing: onnxruntime inlines the function body.

`OrtCpuBackend` and `OrtCudaBackend` are the backends over `cpu_session` and a CUDA session.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import onnx

from ..artifacts import INPUT_NAME
from ..errors import InvalidArgumentError, TransNeXtDeployError, one_line
from ..machine import available_cpus, cuda_devices
from ..ops.contract import ATTRIBUTE_NAMES, OP_DOMAIN, OP_NAME, PLUGIN_VERSION_ATTRIBUTE, has_custom_nodes
from .base import Backend, DriverProbe, MemoryProbe, cuda_free_bytes

ORT_CONTRIB_DOMAIN = "ai.onnx.contrib"
# Node attribute that cpu_session() adds to its copy of the graph: the session's thread count, so
# that each session's custom op uses as many threads as the session (the op is registered once
# per process).
THREADS_ATTRIBUTE = "num_threads"
_REGISTER_LOCK = threading.Lock()
_registered = False
_OUTPUTS = threading.local()  # per calling thread: an output buffer per shape


def default_threads() -> int:
    """Threads of the custom op in a graph that does not say (the CPUs this process may use, at most 8)."""
    return max(1, min(available_cpus(), 8))


def register_cpu_custom_op(num_threads: int | None = None) -> None:
    """Register the fused op with onnxruntime-extensions (idempotent). Sessions made by
    cpu_session() give the op their own thread count; `num_threads` (default default_threads())
    is for graphs whose nodes do not carry one."""
    global _registered
    with _REGISTER_LOCK:
        if _registered:
            return
        from onnxruntime_extensions import PyCustomOpDef, onnx_op

        from ..ops.host import aggregated_attention_host, load_host_library

        library = load_host_library()  # build or load now, so a missing compiler fails here, not mid-inference
        fallback_threads = num_threads or default_threads()
        attrs = {name: PyCustomOpDef.dt_int64 for name in ATTRIBUTE_NAMES}
        attrs[PLUGIN_VERSION_ATTRIBUTE] = PyCustomOpDef.dt_string
        attrs[THREADS_ATTRIBUTE] = PyCustomOpDef.dt_int64

        def run(inputs, attributes):
            # onnxruntime-extensions hands the attributes over as strings (an absent one as "").
            try:
                sizes = {name: int(attributes[name]) for name in ATTRIBUTE_NAMES}
            except (KeyError, ValueError) as exc:
                raise InvalidArgumentError(f"{OP_NAME}: missing or non-integer attribute ({exc})") from None
            threads = int(attributes.get(THREADS_ATTRIBUTE) or 0) or fallback_threads
            # The inputs arrive as fresh contiguous float32 arrays: used as they are (no copy). The
            # result is copied into onnxruntime's output before this thread calls again, so one
            # buffer per shape and thread serves every call (no fresh pages to fault in each time).
            buffers = _OUTPUTS.__dict__.setdefault("by_shape", {})
            query = inputs[0]
            out = buffers.get(query.shape)
            if out is None or out.dtype != query.dtype:
                out = buffers[query.shape] = np.empty(query.shape, dtype=query.dtype)
            return aggregated_attention_host(*inputs, **sizes, num_threads=threads, library=library, out=out)

        @onnx_op(op_type=OP_NAME, inputs=[PyCustomOpDef.dt_float] * 9, outputs=[PyCustomOpDef.dt_float], attrs=attrs)
        def _aggregated_attention(*inputs, **attributes):  # pragma: no cover - the hook below calls run()
            return run(inputs, {k: str(v) for k, v in attributes.items()})

        _install_invocation_hook(_aggregated_attention._id, run)
        _registered = True


def _install_invocation_hook(op_id: int, run) -> None:
    """Hand the op's result to onnxruntime-extensions as a flat array instead of a Python list.

    onnxruntime-extensions calls one Python hook for every Python op; its default one returns
    `result.flatten().tolist()`, i.e. one Python float per output element (a quarter million per
    call in TransNeXt's first stage: milliseconds, several times the kernel). Its C++ side reads
    the returned object as a sequence of floats or, in recent versions, through the buffer
    protocol; a flat contiguous float32 array serves both. Other Python ops keep the default hook.
    """
    from onnxruntime_extensions import _ocos

    default = getattr(_ocos, "_on_pyop_invocation", None)
    install = getattr(_ocos.PyCustomOpDef, "install_hooker", None)
    if default is None or install is None:  # another layout of onnxruntime-extensions: keep its own path
        return

    def hook(k_id, feed, attributes=None, *rest):
        if k_id != op_id:
            return default(k_id, feed, attributes, *rest) if attributes is not None else default(k_id, feed, *rest)
        result = run(feed, attributes or {})
        return k_id, result.shape, result.reshape(-1)

    install(hook)


def _float16_custom_nodes(model: onnx.ModelProto) -> set[str]:
    """Names of the custom nodes of an fp16 graph (their inputs are float16, as TensorRT's plugin takes them)."""
    fp16 = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    fp16 |= {v.name for v in model.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16}
    return {n.name for n in model.graph.node if n.op_type == OP_NAME and n.domain == OP_DOMAIN and n.input[0] in fp16}


def _run_in_float32(model: onnx.ModelProto, nodes: set[str]) -> None:
    """In the session's copy, each of `nodes` runs the float32 op between Casts. onnxruntime-extensions
    cannot hand float16 to a Python op (its C++ side refuses that type), and the host library's fp16
    path equals its fp32 path on fp16-rounded inputs, so the fp16 graph computes the same."""
    rebuilt = []
    for node in model.graph.node:
        if node.name not in nodes:
            rebuilt.append(node)
            continue
        inputs = []
        for i, name in enumerate(node.input):
            cast = f"{node.name}/input{i}_fp32"
            rebuilt.append(onnx.helper.make_node("Cast", [name], [cast], name=f"{cast}/cast", to=onnx.TensorProto.FLOAT))
            inputs.append(cast)
        output, inner = node.output[0], f"{node.name}/output_fp32"
        node.input[:] = inputs
        node.output[0] = inner
        rebuilt += [node, onnx.helper.make_node("Cast", [inner], [output], name=f"{inner}/cast",
                                                to=onnx.TensorProto.FLOAT16)]
    del model.graph.node[:]
    model.graph.node.extend(rebuilt)


def _to_contrib_domain(model: onnx.ModelProto, threads: int) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    _run_in_float32(copy, _float16_custom_nodes(copy))
    for node in copy.graph.node:
        if node.op_type == OP_NAME and node.domain == OP_DOMAIN:
            node.domain = ORT_CONTRIB_DOMAIN
            kept = [a for a in node.attribute if a.name != THREADS_ATTRIBUTE]
            del node.attribute[:]
            node.attribute.extend(kept)
            node.attribute.append(onnx.helper.make_attribute(THREADS_ATTRIBUTE, int(threads)))
    opsets = {o.domain: o for o in copy.opset_import}
    if ORT_CONTRIB_DOMAIN not in opsets:
        copy.opset_import.append(onnx.helper.make_opsetid(ORT_CONTRIB_DOMAIN, 1))
    return copy


def cpu_session(model: str | os.PathLike | onnx.ModelProto, threads: int = 2, optimize: bool = True,
                spinning: bool | None = None):
    """An onnxruntime CPU session for a standard, function-form or custom-op graph.

    `spinning` sets onnxruntime's `session.intra_op.allow_spinning`, whether its idle worker threads
    spin for a while before they sleep; None keeps onnxruntime's default (on). On this project's
    2-core machine, tiny at 224 with 2 threads, the two settings were within about 10% of each other
    while the machine was otherwise idle (either way round, run to run), and spinning took up to
    twice as long while other processes loaded the CPUs; benchmarks/bench_cpu_kernel.py
    --without-spinning compares."""
    import onnxruntime as ort

    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        proto = onnx.load(str(path), load_external_data=True)
    else:
        proto = model
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    custom = has_custom_nodes(proto)
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if custom:
        from onnxruntime_extensions import get_library_path

        register_cpu_custom_op(threads)
        options.register_custom_ops_library(get_library_path())
        proto = _to_contrib_domain(proto, threads)
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def host_library_problem() -> str | None:
    """Why the custom-op graph cannot run on the CPU here (the host library neither ships with this
    install nor can be built: no compiler, no cmake...), or None when it can."""
    from ..ops import host as plugin_host

    try:
        plugin_host.load_host_library()
    except (TransNeXtDeployError, OSError) as exc:
        return f"the plugin's host library is not available: {exc}"
    return None


def custom_op_problem(threads: int | None = None) -> str | None:
    """Why the fused op cannot be registered with onnxruntime here, or None once it is (the first
    registration in the process fixes the op's default thread count)."""
    try:
        register_cpu_custom_op(threads)
    except Exception as exc:  # noqa: BLE001 - any failure to provide the op is the reason
        return "the CPU custom op cannot be registered: " + one_line(exc)
    return None


def ort_cuda_problem() -> str | None:
    """Why onnxruntime cannot run on a CUDA GPU here (provider missing, no GPU), or None."""
    import onnxruntime as ort

    problems = []
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        problems.append(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (a CPU build; "
                        "install onnxruntime-gpu)")
    _, no_gpu = cuda_devices()
    if no_gpu:
        problems.append(no_gpu)
    return "; ".join(problems) or None


class OrtCudaUnavailable(TransNeXtDeployError):
    """onnxruntime did not put the graph on the GPU."""


class OrtCpuBackend(Backend):
    """An exported graph (standard, function-form or custom-op) in a cpu_session."""

    def __init__(self, path: str | os.PathLike, threads: int = 2, **session_options):
        path = Path(path)
        self.graph = path.name
        self.session = cpu_session(path, threads=threads, **session_options)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, prepared):
        return self.session.run(None, {INPUT_NAME: prepared})


class OrtCudaBackend(Backend):
    """An exported standard graph on onnxruntime's CUDA execution provider, numpy in and out."""

    device = "cuda"
    notes = ("numpy in and out: host<->device copies are inside the timing",)

    def __init__(self, path: str | os.PathLike):
        import onnxruntime as ort

        path = Path(path)
        self.free_before = cuda_free_bytes()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.graph = path.name
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        if "CUDAExecutionProvider" not in self.session.get_providers():
            raise OrtCudaUnavailable("onnxruntime fell back to the CPU: the CUDA execution provider did not load")

    def run(self, prepared):
        return self.session.run(None, {INPUT_NAME: prepared})

    def probe(self) -> MemoryProbe:
        return DriverProbe(self.free_before)


__all__ = [
    "OrtCpuBackend",
    "OrtCudaBackend",
    "OrtCudaUnavailable",
    "cpu_session",
    "custom_op_problem",
    "default_threads",
    "has_custom_nodes",
    "host_library_problem",
    "ort_cuda_problem",
    "register_cpu_custom_op",
]
