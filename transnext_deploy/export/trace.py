"""PyTorch -> standard ONNX: trace the fast model, fold constants, check and save a graph."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from .. import __version__
from ..artifacts import INPUT_NAME
from ..models.transnext import TransNeXt
from .options import ExportError

# Largest model a single protobuf can hold; past it the weights go to an external data file.
PROTOBUF_LIMIT = 2**31 - 1


def output_names(model: TransNeXt) -> list[str]:
    return [f"stage{i + 1}" for i in range(4)] if model.backbone else ["logits"]


def export_standard(model: TransNeXt, resolution: tuple[int, int], opset: int) -> onnx.ModelProto:
    """Trace the fast model into standard ONNX ops, fold small constants, check it."""
    import onnx_graphsurgeon as gs

    h, w = resolution
    model.geometry(h, w)  # build the per-resolution tables outside the trace
    names = output_names(model)
    dynamic = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, h, w),), buffer, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=names, dynamic_axes=dynamic)
    graph = gs.import_onnx(onnx.load_from_string(buffer.getvalue()))
    # Fold constants up to 1 MiB: shape arithmetic and reshaped parameters disappear, while the
    # position-bias MLPs, whose (heads, N, P) outputs grow with resolution^4, stay small subgraphs.
    graph.fold_constants(size_threshold=1 << 20).cleanup()
    fold_weight_views(graph)
    graph.cleanup().toposort()
    proto = gs.export_onnx(graph)
    proto.producer_name = "transnext-deploy"
    proto.producer_version = __version__
    return proto


def fold_weight_views(graph) -> int:
    """Fold Identity/Transpose of a constant whatever its size. A Linear applied twice (the `kv`
    projection of tokens and of pooled tokens) is traced as one weight plus an Identity or
    Transpose of it; past the general folding threshold that view would stay an op in front of
    its MatMul and hide the weight from TensorRT's and the rewrite's view of a Linear layer."""
    import onnx_graphsurgeon as gs

    folded = 0
    for node in graph.nodes:
        if node.op in ("Transpose", "Identity") and node.outputs and isinstance(node.inputs[0], gs.Constant):
            values = node.inputs[0].values
            if node.op == "Transpose":
                values = np.transpose(values, node.attrs.get("perm"))
            out = node.outputs[0]
            constant = gs.Constant(out.name, np.ascontiguousarray(values))
            for consumer in list(out.outputs):
                for i, t in enumerate(consumer.inputs):
                    if t is out:
                        consumer.inputs[i] = constant
            graph.outputs = [constant if t is out else t for t in graph.outputs]
            node.outputs.clear()
            folded += 1
    return folded


def check_model(proto: onnx.ModelProto, what: str) -> None:
    """The ONNX checker and strict shape inference with type checks, in one line when they refuse.
    Data propagation is off for a graph with local functions: ONNX's propagates the int64 index
    arithmetic of the function body (a Range, then Unsqueeze) as if Unsqueeze kept the rank, and
    refuses a correct graph (onnxruntime and TensorRT run it; tests/test_export_functions.py checks it)."""
    try:
        if proto.ByteSize() < PROTOBUF_LIMIT:
            onnx.checker.check_model(proto, full_check=True)
        onnx.shape_inference.infer_shapes(proto, strict_mode=True, check_type=True, data_prop=not proto.functions)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{what} fails the ONNX checker: {str(exc).splitlines()[0]}") from None


def save(proto: onnx.ModelProto, path: Path) -> None:
    if proto.ByteSize() >= PROTOBUF_LIMIT:
        onnx.save(proto, str(path), save_as_external_data=True, location=path.name + ".data")
    else:
        onnx.save(proto, str(path))


__all__ = ["PROTOBUF_LIMIT", "check_model", "export_standard", "fold_weight_views", "output_names", "save"]
