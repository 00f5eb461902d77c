"""Running exported artifacts: onnxruntime sessions, with the fused op available on the CPU.

The custom-op graph (one `TransNeXtAggregatedAttention` node per block, no function body) runs in
onnxruntime through onnxruntime-extensions, whose Python custom ops live in the fixed domain
`ai.onnx.contrib`. The session gets a copy of the graph with the op moved to that domain; the
op itself calls the plugin's host library (`plugin_host`), i.e. the same C++ arithmetic the CUDA
kernel is compiled from. Graphs whose custom nodes carry a local function need nothing: onnxruntime
inlines the function body.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import onnx

from .ops.aggregated_attention import ATTRIBUTE_NAMES, OP_DOMAIN, OP_NAME, PLUGIN_VERSION_ATTRIBUTE

ORT_CONTRIB_DOMAIN = "ai.onnx.contrib"
_REGISTER_LOCK = threading.Lock()
_registered = False


def register_cpu_custom_op(num_threads: int | None = None) -> None:
    """Register the fused op with onnxruntime-extensions (idempotent)."""
    global _registered
    with _REGISTER_LOCK:
        if _registered:
            return
        from onnxruntime_extensions import PyCustomOpDef, onnx_op

        from .plugin_host import aggregated_attention_host, load_host_library

        load_host_library()  # build or load now, so a missing compiler fails here, not mid-inference
        threads = num_threads or max(1, min(os.cpu_count() or 1, 8))
        attrs = {name: PyCustomOpDef.dt_int64 for name in ATTRIBUTE_NAMES}
        attrs[PLUGIN_VERSION_ATTRIBUTE] = PyCustomOpDef.dt_string

        @onnx_op(op_type=OP_NAME, inputs=[PyCustomOpDef.dt_float] * 9, outputs=[PyCustomOpDef.dt_float], attrs=attrs)
        def _aggregated_attention(*inputs, **kwargs):  # pragma: no cover - called from C++
            sizes = {name: int(kwargs[name]) for name in ATTRIBUTE_NAMES}
            arrays = [np.ascontiguousarray(x, dtype=np.float32) for x in inputs]
            return aggregated_attention_host(*arrays, **sizes, num_threads=threads)

        _registered = True


def has_custom_nodes(model: onnx.ModelProto) -> bool:
    """True when the graph has fused nodes that no local function backs."""
    functions = {(f.domain, f.name) for f in model.functions}
    return any(n.op_type == OP_NAME and n.domain == OP_DOMAIN and (n.domain, n.op_type) not in functions
               for n in model.graph.node)


def _to_contrib_domain(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        if node.op_type == OP_NAME and node.domain == OP_DOMAIN:
            node.domain = ORT_CONTRIB_DOMAIN
    opsets = {o.domain: o for o in copy.opset_import}
    if ORT_CONTRIB_DOMAIN not in opsets:
        copy.opset_import.append(onnx.helper.make_opsetid(ORT_CONTRIB_DOMAIN, 1))
    return copy


def cpu_session(model: str | os.PathLike | onnx.ModelProto, threads: int = 2, optimize: bool = True):
    """An onnxruntime CPU session for a standard, function-form or custom-op graph."""
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
    if has_custom_nodes(proto):
        from onnxruntime_extensions import get_library_path

        register_cpu_custom_op(threads)
        options.register_custom_ops_library(get_library_path())
        proto = _to_contrib_domain(proto)
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
