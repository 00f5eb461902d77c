"""Graph passes (onnx-graphsurgeon) that fuse each aggregated-attention core into one custom node.

`fuse_aggregated_attention` finds blocks by dataflow, not by node names:

1. anchor: a Softmax whose input is a two-way Concat (window scores | pooled scores); TransNeXt's
   full attention has a Softmax without one;
2. output: the first downstream MatMul/Gemm against a constant 2-D weight is `proj`; its data
   input is the core's output;
3. region: walk back from that output until the walk reaches constants (initializers, or
   subgraphs that only depend on constants, such as the position-bias MLP) or the outputs of
   Linear layers (MatMul against a constant 2-D weight, plus an optional constant bias);
4. roles: exactly three Linear outputs must be reached -- `q` (C -> C), `kv` (C -> 2C) on the same
   input, and `kv` on another input (the pooled tokens); the float constants are told apart by
   shape and by whether they act before or after the softmax.

Anything that does not fit -- another number of Linear inputs, a constant with no role, a
tensor of the region that is used outside it -- raises `UnrecognizedGraphError` naming the block
and the reason, and the graph is left untouched: the pass plans every block before it edits any.

`export.functions.function_form` then attaches the standard-op decomposition as one ONNX local
function, for runtimes without the plugin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..errors import TransNeXtDeployError
from ..ops.contract import (
    INPUT_NAMES,
    OP_DOMAIN,
    OP_NAME,
    OP_VERSION,
    PLUGIN_VERSION_ATTRIBUTE,
    input_shapes,
)

MAX_REGION_NODES = 5000
MAX_FORWARD_SEARCH = 2000


class UnrecognizedGraphError(TransNeXtDeployError):
    """The graph does not have the structure the pass fuses; nothing was changed."""


@dataclass
class AttentionMatch:
    """One aggregated-attention core found in the graph."""

    index: int
    anchor: gs.Node
    proj: gs.Node
    output: gs.Variable
    region: list[gs.Node]
    inputs: dict[str, gs.Tensor]  # contract input name -> tensor in the graph (before reshaping)
    attrs: dict[str, int] = field(default_factory=dict)

    @property
    def head_dim(self) -> int:
        return self.inputs["learnable_tokens"].shape[-2]

    def describe(self) -> str:
        a = self.attrs
        return (f"block {self.index}: {a['height']}x{a['width']} grid, {a['num_heads']} heads, "
                f"{a['pool_height']}x{a['pool_width']} pool, window {a['window_size']}")


# ---------------------------------------------------------------------------------------------
# graph facts


def _constant_tensors(graph: gs.Graph) -> set[int]:
    """ids of tensors whose value does not depend on any graph input."""
    const: set[int] = set()
    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Constant):
            const.add(id(tensor))
    for node in graph.nodes:  # graph is topologically sorted
        if node.inputs and all(id(t) in const or _is_empty(t) for t in node.inputs):
            const.update(id(t) for t in node.outputs)
        elif not node.inputs and node.op == "Constant":
            const.update(id(t) for t in node.outputs)
    return const


def _is_empty(tensor: gs.Tensor) -> bool:
    return isinstance(tensor, gs.Variable) and tensor.name == ""


def _linear(tensor: gs.Tensor, const: set[int]):
    """(input, weight) when `tensor` is a Linear layer's output, else None."""
    if not tensor.inputs:
        return None
    node = tensor.inputs[0]
    if node.op == "Add" and len(node.inputs) == 2:
        a, b = node.inputs
        bias, data = (a, b) if id(a) in const else (b, a) if id(b) in const else (None, None)
        if bias is None or len(bias.shape or ()) != 1 or not data.inputs:
            return None
        node = data.inputs[0]
    if node.op in ("MatMul", "Gemm") and len(node.inputs) >= 2:
        data, weight = node.inputs[0], node.inputs[1]
        if isinstance(weight, gs.Constant) and weight.values.ndim == 2 and id(data) not in const:
            return data, weight
    return None


def _shape(tensor: gs.Tensor) -> tuple | None:
    shape = tensor.shape
    return None if shape is None else tuple(shape)


def _squeeze_leading(shape: tuple) -> tuple:
    shape = tuple(shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


# ---------------------------------------------------------------------------------------------
# matching


def _anchors(graph: gs.Graph) -> list[gs.Node]:
    out = []
    for node in graph.nodes:
        if node.op != "Softmax" or not node.inputs[0].inputs:
            continue
        producer = node.inputs[0].inputs[0]
        if producer.op == "Concat" and len(producer.inputs) == 2:
            out.append(node)
    return out


def _find_proj(anchor: gs.Node) -> gs.Node | None:
    seen = {id(anchor)}
    frontier = [anchor]
    steps = 0
    while frontier and steps < MAX_FORWARD_SEARCH:
        nxt = []
        for node in frontier:
            for out in node.outputs:
                for consumer in out.outputs:
                    if id(consumer) in seen:
                        continue
                    seen.add(id(consumer))
                    steps += 1
                    if (consumer.op in ("MatMul", "Gemm") and len(consumer.inputs) >= 2
                            and isinstance(consumer.inputs[1], gs.Constant) and consumer.inputs[1].values.ndim == 2):
                        return consumer
                    nxt.append(consumer)
        frontier = nxt
    return None


def _match(anchor: gs.Node, index: int, const: set[int], graph_inputs: set[int],
           graph_outputs: set[int]) -> AttentionMatch:
    where = f"aggregated-attention block {index} (softmax node '{anchor.name}')"
    proj = _find_proj(anchor)
    if proj is None:
        raise UnrecognizedGraphError(f"{where}: no output projection (MatMul with a constant weight) after the softmax")
    core_out = proj.inputs[0]

    region: dict[int, gs.Node] = {}
    dynamic_entries: dict[int, gs.Tensor] = {}
    const_entries: dict[int, gs.Tensor] = {}
    stack = [core_out]
    visited: set[int] = set()
    while stack:
        tensor = stack.pop()
        if id(tensor) in visited or _is_empty(tensor):
            continue
        visited.add(id(tensor))
        if id(tensor) in const:
            const_entries[id(tensor)] = tensor
            continue
        if _linear(tensor, const) is not None:
            dynamic_entries[id(tensor)] = tensor
            continue
        if id(tensor) in graph_inputs or not tensor.inputs:
            raise UnrecognizedGraphError(f"{where}: the core reaches graph input '{tensor.name}' without a Linear layer")
        node = tensor.inputs[0]
        if id(node) not in region:
            region[id(node)] = node
            if len(region) > MAX_REGION_NODES:
                raise UnrecognizedGraphError(f"{where}: the core spans more than {MAX_REGION_NODES} nodes")
            stack.extend(node.inputs)
    if id(anchor) not in region:
        raise UnrecognizedGraphError(f"{where}: the softmax does not feed the output projection")

    for node in region.values():
        for out in node.outputs:
            if out is core_out:
                continue
            outside = [c.name for c in out.outputs if id(c) not in region]
            if id(out) in graph_outputs:
                outside.append("a graph output")
            if outside:
                raise UnrecognizedGraphError(f"{where}: tensor '{out.name}' inside the core is also used by {outside[0]}")

    inputs = _assign_dynamic(where, list(dynamic_entries.values()), const)
    roles, attrs = _assign_constants(where, anchor, region, list(const_entries.values()), inputs, const)
    inputs.update(roles)
    return AttentionMatch(index, anchor, proj, core_out, list(region.values()), inputs, attrs)


def _assign_dynamic(where: str, entries: list[gs.Tensor], const: set[int]) -> dict[str, gs.Tensor]:
    if len(entries) != 3:
        raise UnrecognizedGraphError(f"{where}: expected 3 Linear inputs (q, kv, pooled kv), found {len(entries)}")
    info = {id(t): _linear(t, const) for t in entries}
    widths = {id(t): info[id(t)][1].values.shape for t in entries}
    square = [t for t in entries if widths[id(t)][0] == widths[id(t)][1]]
    double = [t for t in entries if widths[id(t)][1] == 2 * widths[id(t)][0]]
    if len(square) != 1 or len(double) != 2:
        raise UnrecognizedGraphError(
            f"{where}: Linear inputs have weights {[widths[id(t)] for t in entries]}, expected one C->C and two C->2C")
    query = square[0]
    q_input = info[id(query)][0]
    local = [t for t in double if info[id(t)][0] is q_input]
    pooled = [t for t in double if info[id(t)][0] is not q_input]
    if len(local) != 1 or len(pooled) != 1:
        raise UnrecognizedGraphError(f"{where}: cannot tell the token kv projection from the pooled one")
    if info[id(local[0])][1] is not info[id(pooled[0])][1] and not np.array_equal(
            info[id(local[0])][1].values, info[id(pooled[0])][1].values):
        raise UnrecognizedGraphError(f"{where}: the two kv projections do not share their weight")
    return {"query": query, "key_value": local[0], "pooled_key_value": pooled[0]}


def _ancestors(node: gs.Node, region: dict[int, gs.Node]) -> set[int]:
    seen: set[int] = set()
    stack = list(node.inputs)
    tensors: set[int] = set()
    while stack:
        t = stack.pop()
        if id(t) in tensors:
            continue
        tensors.add(id(t))
        for producer in t.inputs:
            if id(producer) in region and id(producer) not in seen:
                seen.add(id(producer))
                stack.extend(producer.inputs)
    return tensors


def _assign_constants(where, anchor, region, entries, dynamic, const):
    """Roles of the float constants the core reads, and the op's attributes.

    Sizes come from constants and weights, which are static even where shape inference loses
    the token count: C from the `q` weight, (H, W) from the decomposition's per-pixel constants
    (border mask / length scale, shaped (H, W, 1, L) and (H, W, 1, 1)), P from the pooled grid.
    """
    before_softmax = _ancestors(anchor, region)
    C = _linear(dynamic["query"], const)[1].values.shape[1]
    floats = []
    for t in entries:
        dtype = getattr(t, "dtype", None)
        shape = _shape(t)
        if shape is None or not all(isinstance(s, int) for s in shape):
            raise UnrecognizedGraphError(f"{where}: constant '{t.name}' has no static inferred shape")
        if dtype is None or np.dtype(dtype).kind != "f" or len(shape) == 0 or math.prod(shape) == 1:
            continue  # shapes, indices, pads and scalars (eps, clip bounds) belong to the decomposition
        floats.append((t, _squeeze_leading(shape), id(t) in before_softmax))
    post3 = [f for f in floats if not f[2] and len(f[1]) == 3 and f[1][1] > 1]
    if len(post3) != 1:
        raise UnrecognizedGraphError(f"{where}: expected one (heads, head_dim, L) learnable-token constant after "
                                     f"the softmax, found {len(post3)}")
    nh, d, L = post3[0][1]
    w = math.isqrt(L)
    if nh * d != C or w * w != L or w % 2 == 0:
        raise UnrecognizedGraphError(f"{where}: learnable tokens {post3[0][1]} do not fit {C} channels")
    grids = {(shape[0], shape[1]) for _, shape, pre in floats
             if pre and len(shape) == 4 and shape[2] == 1 and shape[3] in (1, L)}
    if len(grids) != 1:
        raise UnrecognizedGraphError(f"{where}: cannot determine the token grid (found {sorted(grids) or 'none'})")
    H, W = grids.pop()
    N = H * W
    pool = _pool_grid(where, dynamic["pooled_key_value"], const)
    P = pool["pool_height"] * pool["pool_width"]
    roles: dict[str, gs.Tensor] = {"learnable_tokens": post3[0][0]}
    for t, shape, pre in floats:
        if t is post3[0][0]:
            continue
        if pre and len(shape) == 4 and shape[:3] == (H, W, 1) and shape[3] in (1, L):
            continue  # border mask / length scale of the decomposition: the op recomputes them
        if pre and shape == (nh, d) and d != L:
            role = "query_embedding"
        elif pre and shape in ((nh,), (nh, 1), (nh, 1, 1)):
            role = "temperature_scale"
        elif pre and shape == (nh, L):
            role = "local_bias"
        elif pre and shape == (nh, N, P):
            role = "pool_bias"
        elif not pre and shape in ((nh, L), (nh, 1, L)):
            role = "learnable_bias"
        else:
            raise UnrecognizedGraphError(f"{where}: constant '{t.name}' of shape {_shape(t)} has no role "
                                         f"({'before' if pre else 'after'} the softmax)")
        if role in roles:
            raise UnrecognizedGraphError(f"{where}: two constants could be the {role}")
        roles[role] = t
    missing = [n for n in INPUT_NAMES[3:] if n not in roles]
    if missing:
        raise UnrecognizedGraphError(f"{where}: no constant found for {', '.join(missing)}")
    attrs = {"num_heads": nh, "height": H, "width": W, "window_size": w, **pool}
    return roles, attrs


def _pool_grid(where, pooled_kv, const) -> dict[str, int]:
    """(pool_height, pool_width): the spatial dims of the 4-D tensor the pooled tokens are flattened from."""
    tensor = _linear(pooled_kv, const)[0]
    for _ in range(16):
        shape = _shape(tensor)
        if shape is not None and len(shape) == 4 and all(isinstance(s, int) for s in shape[1:]):
            return {"pool_height": shape[2], "pool_width": shape[3]}
        if not tensor.inputs:
            break
        tensor = next((t for t in tensor.inputs[0].inputs if id(t) not in const), None)
        if tensor is None:
            break
    raise UnrecognizedGraphError(f"{where}: cannot find the pooled grid feeding the pooled kv projection")


def find_aggregated_attention(graph: gs.Graph) -> list[AttentionMatch]:
    """Every aggregated-attention core in the graph, in topological order; raises if any is unrecognised."""
    graph.toposort()
    const = _constant_tensors(graph)
    graph_inputs = {id(t) for t in graph.inputs}
    graph_outputs = {id(t) for t in graph.outputs}
    return [_match(a, i, const, graph_inputs, graph_outputs) for i, a in enumerate(_anchors(graph))]


# ---------------------------------------------------------------------------------------------
# rewriting


def _contract_shape(name: str, m: AttentionMatch, d: int) -> tuple[int, ...]:
    return input_shapes(1, d, **m.attrs)[name]


def _as_contract_input(graph: gs.Graph, tensor: gs.Tensor, shape: tuple[int, ...], name: str) -> gs.Tensor:
    if isinstance(tensor, gs.Constant):
        return gs.Constant(name, np.ascontiguousarray(tensor.values.reshape(shape)))
    if _shape(tensor) == shape:
        return tensor
    out = gs.Variable(name, dtype=tensor.dtype, shape=list(shape))
    graph.nodes.append(gs.Node("Reshape", f"{name}/reshape", inputs=[tensor, gs.Constant(
        f"{name}/shape", np.array(shape, dtype=np.int64))], outputs=[out]))
    return out


def fuse_aggregated_attention(graph: gs.Graph, expected: int | None = None) -> list[AttentionMatch]:
    """Replace every aggregated-attention core with one `TransNeXtAggregatedAttention` node.

    `expected` (the number of aggregated-attention blocks of the model) makes a graph with a
    different count an error. Returns the matches, whose attrs describe the new nodes.
    """
    matches = find_aggregated_attention(graph)
    if not matches:
        raise UnrecognizedGraphError("no aggregated-attention block found (no softmax over concatenated scores)")
    if expected is not None and len(matches) != expected:
        raise UnrecognizedGraphError(f"found {len(matches)} aggregated-attention blocks, the model has {expected}")
    for m in matches:
        d = m.head_dim
        prefix = f"aggregated_attention_{m.index}"
        inputs = [m.inputs[n] for n in INPUT_NAMES[:3]]
        inputs += [_as_contract_input(graph, m.inputs[n], _contract_shape(n, m, d), f"{prefix}/{n}")
                   for n in INPUT_NAMES[3:]]
        out = gs.Variable(f"{prefix}/output", dtype=m.output.dtype or np.float32)
        attrs = dict(m.attrs)
        attrs[PLUGIN_VERSION_ATTRIBUTE] = OP_VERSION
        graph.nodes.append(gs.Node(OP_NAME, prefix, attrs=attrs, inputs=inputs, outputs=[out], domain=OP_DOMAIN))
        m.proj.inputs[0] = out
    graph.cleanup().toposort()
    leftover = _anchors(graph)
    if leftover:
        raise UnrecognizedGraphError(f"{len(leftover)} softmax-over-concat nodes remain after the rewrite")
    return matches


def fused_model(model: onnx.ModelProto, expected: int | None = None) -> tuple[onnx.ModelProto, list[AttentionMatch]]:
    """Plain custom-node form: what TensorRT's parser (any 10.x, JetPack 6's 10.3 included) maps to the plugin."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    graph = gs.import_onnx(inferred)
    matches = fuse_aggregated_attention(graph, expected)
    out = gs.export_onnx(graph)
    if not any(o.domain == OP_DOMAIN for o in out.opset_import):
        out.opset_import.append(onnx.helper.make_opsetid(OP_DOMAIN, 1))
    out.ir_version = model.ir_version
    return out, matches
