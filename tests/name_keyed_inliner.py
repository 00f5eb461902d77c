"""Inline ONNX local functions the way TensorRT's ONNX parser finds them: by bare name.

Why this exists: onnxruntime resolves a node to a local function by (domain, op_type, overload),
but TensorRT's parser (onnx-tensorrt, ModelImporter.cpp) does not. `importLocalFunctions` stores
every model function with `localFunctions().insert({function.name(), function})` -- a map keyed by
the name alone, where `insert` keeps the FIRST function of a name -- and a node whose op_type has
no built-in importer is imported as a call when `localFunctions().count(node.op_type())`, whatever
its domain and IR-10 `overload`. Inside the body an attribute with `ref_attr_name` takes the
calling node's value and is dropped when the call does not set it (OnnxAttrs.cpp; ONNX's own
inliner does the same), and body tensors get a name scope per call.

A model whose functions are only told apart by domain or overload (one fixed body per attribute
set) runs correctly in onnxruntime and wrongly in TensorRT. `inline_functions_by_name` reproduces
TensorRT's lookup as a plain ONNX graph with no functions left, so onnxruntime on a CPU shows what
TensorRT would compute, and a test can hold the function form to it without a GPU.

Not handled (the op's function needs none of it): subgraph attributes in a body (If/Loop/Scan),
and TensorRT's preference for a registered plugin of the same name (the plugin is absent here).
"""

from __future__ import annotations

import itertools

import onnx


def _resolve_attributes(body_node: onnx.NodeProto, call_attrs: dict[str, onnx.AttributeProto]
                        ) -> list[onnx.AttributeProto]:
    """The body node's attributes with every reference replaced by the caller's value (or dropped)."""
    out = []
    for attr in body_node.attribute:
        if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise NotImplementedError(f"{body_node.op_type} {body_node.name!r}: subgraph attributes are not inlined")
        if not attr.ref_attr_name:
            out.append(attr)
            continue
        source = call_attrs.get(attr.ref_attr_name)
        if source is None:
            continue  # neither the call nor a default sets it: the attribute is absent
        resolved = onnx.AttributeProto()
        resolved.CopyFrom(source)
        resolved.name = attr.name  # e.g. Constant.value_int <- the call's num_heads
        out.append(resolved)
    return out


def inline_functions_by_name(model: onnx.ModelProto, max_depth: int = 16) -> onnx.ModelProto:
    """A copy of `model` with every call of a local function replaced by its body; no functions left.

    A node is a call when its op_type is the name of a model function; the body is the FIRST
    function of that name, whatever the node's domain and overload (TensorRT's lookup). Body
    tensors and node names are prefixed per call site; nested calls are expanded too (up to
    `max_depth`). Opset imports of domains no node uses any more are dropped.
    """
    functions: dict[str, onnx.FunctionProto] = {}
    for function in model.functions:
        functions.setdefault(function.name, function)  # std::map::insert keeps the first
    call_ids = itertools.count()

    def expand(node: onnx.NodeProto, depth: int) -> list[onnx.NodeProto]:
        function = functions.get(node.op_type)
        if function is None:
            return [node]
        if depth >= max_depth:
            raise RecursionError(f"local functions nested deeper than {max_depth} at {node.name!r}")
        if len(node.input) > len(function.input) or len(node.output) > len(function.output):
            raise ValueError(f"{node.name!r}: {len(node.input)} inputs / {len(node.output)} outputs, function "
                             f"{function.name} has {len(function.input)} / {len(function.output)}")
        prefix = f"{node.name or node.op_type}#{next(call_ids)}/"
        rename = {formal: "" for formal in function.input}  # an input the call leaves out is absent ...
        rename.update(zip(function.input, node.input))  # ... the others are the call's tensors
        rename.update(zip(function.output, node.output))
        rename[""] = ""  # an absent optional input stays absent
        call_attrs = {a.name: a for a in function.attribute_proto}  # defaults (ONNX IR 9) ...
        call_attrs.update({a.name: a for a in node.attribute})  # ... overridden by the call's values
        expanded = []
        for index, body_node in enumerate(function.node):
            new = onnx.NodeProto()
            new.CopyFrom(body_node)
            new.name = prefix + (body_node.name or f"{body_node.op_type}_{index}")
            new.input[:] = [rename.setdefault(t, prefix + t) for t in body_node.input]
            new.output[:] = [rename.setdefault(t, prefix + t) for t in body_node.output]
            del new.attribute[:]
            new.attribute.extend(_resolve_attributes(body_node, call_attrs))
            expanded.extend(expand(new, depth + 1))
        return expanded

    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = [n for node in model.graph.node for n in expand(node, 0)]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    del out.functions[:]
    used = {n.domain for n in out.graph.node}
    kept = [o for o in out.opset_import if o.domain in ("", "ai.onnx") or o.domain in used]
    del out.opset_import[:]
    out.opset_import.extend(kept)
    return out


__all__ = ["inline_functions_by_name"]
