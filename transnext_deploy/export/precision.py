"""The fp16 graphs: a float32 ONNX graph -> a strongly typed float16 one.

TensorRT 11 builds every network strongly typed (TensorRT for RTX accepts nothing else): each layer
runs in the precision its tensors have in the ONNX graph, and BuilderFlag.FP16 is gone. An fp16
engine therefore needs an fp16 graph. `to_fp16` writes one from an exported float32 graph -- the
standard `model.onnx` or the custom-op `model.aa_plugin.onnx` (the function form is the fp16
custom-op graph with the function attached: its body follows its inputs' type):

- every float computation runs in float16, except the parts named in `keep_fp32`, which stay float32
  behind explicit `Cast` nodes at their boundaries;
- float initializers become float16 (the cast folded into the stored values) unless they feed a
  kept-fp32 part; one that feeds both kinds of node gets a float16 copy next to the original;
- the user-facing contract is unchanged: the graph input `images` stays float32 (a Cast follows it)
  and every graph output stays float32 (a Cast precedes it);
- every input of a custom-domain node (TransNeXtAggregatedAttention: its nine inputs, constants and
  the position bias included) is float16: TensorRT's plugin takes one type for all of them.

The parts are found by op type and by dataflow, never by node names:

- "layer_norm": LayerNormalization nodes (the exporter requires opset >= 17, so a LayerNorm is one
  node, never a ReduceMean/Pow/Sqrt decomposition);
- "softmax": Softmax nodes;
- "l2_norm": ReduceL2 nodes (the l2 normalisation of queries and keys in the standard graph);
- "position_bias": every float computation whose value depends only on constants. After the
  exporter's constant folding that is exactly the continuous-position-bias pipeline -- the CPB MLP,
  or the (heads, U) table it was folded into, gathered (and resized) into the (heads, N, P) bias --
  which the exporter leaves as a subgraph because its result grows with resolution^4.

RECOMMENDED_KEEP_FP32 is what the measurements (PyTorch on the CPU, micro at 96 and 224, five seeds)
support; see its comment.

A float16 LayerNormalization node gets stash_type=1 written out (ONNX's "statistics in float32",
also the default): TensorRT 10's ONNX parser turns it into the normalization layer's compute
precision. TensorRT for RTX's normalization layer has no such setting, which is one reason to keep
"layer_norm" in float32 explicitly.

Refused (Fp16ConversionError): local functions (attach the function after converting) and control
flow (If/Loop/Scan subgraphs). Initializers must be loaded (onnx.load with external data, the default).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import TransNeXtDeployError

FLOAT = TensorProto.FLOAT
FLOAT16 = TensorProto.FLOAT16
PARTS = ("layer_norm", "softmax", "l2_norm", "position_bias")
# Measured on the PyTorch model on the CPU (its half kernels accumulate in float32, as TensorRT's
# do), micro, random weights moved by noise, logits scaled to max |logits| = 30: LayerNorms in
# float32 lowered the logits' worst relative error in each of six runs (seeds 0-4 at 96, seed 0
# at 224) from 1.8-2.4e-3 to 1.6-2.2e-3; on backbone features the change is within run-to-run
# noise. Rounding gamma/beta to fp16 alone (a systematic per-channel error) is about a third of
# the whole fp16 error. LayerNorm statistics must be float32: with activations past ~256 (a
# stress test scaling the residual branches 300x) fp16 statistics overflow and top-1 agreement
# falls to 0, and TensorRT for RTX offers no compute-precision setting that would ask for them,
# so the Casts make it explicit. Softmax, the l2 norms and the position-bias MLP in float32
# changed nothing measurable: each alone in fp16 contributes <= 1/7 of the total error, the
# position bias < 1/25 even with biases 300x those of the random initialisation.
RECOMMENDED_KEEP_FP32 = frozenset({"layer_norm"})

_OP_PARTS = {"LayerNormalization": "layer_norm", "Softmax": "softmax", "ReduceL2": "l2_norm"}
_STANDARD_DOMAINS = ("", "ai.onnx")
_FLOATS = (FLOAT, FLOAT16)
_FP16_MAX = float(np.finfo(np.float16).max)  # 65504
_FP16_MIN_SUBNORMAL = 2.0**-24
_SUFFIX = {FLOAT: "fp32", FLOAT16: "fp16"}


class Fp16ConversionError(TransNeXtDeployError):
    """The graph holds something this pass does not convert; str() is one line."""


def to_fp16(model: onnx.ModelProto, keep_fp32: Iterable[str] = RECOMMENDED_KEEP_FP32, *,
            report: dict | None = None) -> onnx.ModelProto:
    """A float16 copy of a float32 graph, with the parts in `keep_fp32` (names from PARTS) in float32.

    `report`, when given, is filled with what the pass did: nodes per precision, Casts inserted,
    initializers converted, values clamped to float16's range or kept off zero."""
    keep = set(keep_fp32)
    unknown = keep - set(PARTS)
    if unknown:
        raise Fp16ConversionError(f"unknown part(s) {sorted(unknown)}: choose among {', '.join(PARTS)}")
    if model.functions:
        raise Fp16ConversionError("graphs with local functions are not converted: convert the custom-op graph, "
                                  "then attach the function (export.functions.function_form)")
    for node in model.graph.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise Fp16ConversionError(f"node '{node.name}' ({node.op_type}) has a subgraph: not converted")
    return _Converter(model, keep).run(report)


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """name -> element type of every tensor, by strict inference with type checks (for tests).
    Data propagation is off for a graph with local functions (ONNX's fails on the function body,
    as export.trace.check_model notes)."""
    g = onnx.shape_inference.infer_shapes(model, strict_mode=True, check_type=True,
                                          data_prop=not model.functions).graph
    types = {i.name: i.data_type for i in g.initializer}
    for vi in (*g.value_info, *g.input, *g.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    return types


# ---------------------------------------------------------------------------------------------


def _float16_values(array: np.ndarray, counts: dict) -> np.ndarray:
    """float32 -> float16, round to nearest even. Finite values past float16's range become +-65504
    rather than inf (an inf weight turns 0 * w into NaN); -inf masks stay -inf. A non-zero scalar
    that would flush to zero becomes the smallest subnormal of its sign: scalars are epsilons and
    clip bounds (F.normalize's 1e-12 is a Clip min), whose point is to be non-zero."""
    over = np.isfinite(array) & (np.abs(array) > _FP16_MAX)
    counts["clamped"] += int(over.sum())
    half = np.where(over, np.sign(array) * _FP16_MAX, array).astype(np.float16)
    if array.size == 1 and array.ravel()[0] != 0 and half.ravel()[0] == 0:
        counts["kept_nonzero"] += 1
        half = (np.sign(array) * _FP16_MIN_SUBNORMAL).astype(np.float16)
    return half


def _set_int_attribute(node: onnx.NodeProto, name: str, value: int) -> None:
    for a in node.attribute:
        if a.name == name:
            a.i = value
            return
    node.attribute.append(helper.make_attribute(name, value))


class _Converter:
    def __init__(self, model: onnx.ModelProto, keep: set[str]):
        self.source = model
        self.keep = keep
        self.opsets = {o.domain or "": o.version for o in model.opset_import}
        self.opsets.setdefault("ai.onnx", self.opsets.get("", 1))
        self.schemas: dict = {}
        self.names: set[str] = set()
        # per run: element types, (tensor, type) -> that tensor's name in that type, the source's
        # value_info by name, value_info owed to new tensors, the rewritten nodes
        self.types: dict[str, int] = {}
        self.converted: dict[tuple[str, int], str] = {}
        self.source_info: dict[str, onnx.ValueInfoProto] = {}
        self.new_info: dict[str, tuple[onnx.ValueInfoProto, int]] = {}
        self.nodes_out: list[onnx.NodeProto] = []
        self.counts = dict.fromkeys(("nodes_fp16", "nodes_fp32", "casts", "initializers_fp16", "initializers_fp32",
                                     "initializers_both", "clamped", "kept_nonzero"), 0)

    # -- facts about the float32 graph --------------------------------------------------------

    def elem_types(self, graph: onnx.GraphProto) -> dict[str, int]:
        """Element type of every tensor (strict inference: the exporter's graphs pass it). Custom
        nodes have no schema: their outputs' types come from the graph's own value_info."""
        inferred = onnx.shape_inference.infer_shapes(self.source, strict_mode=True, data_prop=True).graph
        types = {}
        for vi in (*graph.value_info, *inferred.value_info, *graph.input, *graph.output):
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
                types.setdefault(vi.name, vi.type.tensor_type.elem_type)
        types.update({i.name: i.data_type for i in graph.initializer})
        return types

    def typed_slots(self, node: onnx.NodeProto) -> tuple[list[bool], list[bool]]:
        """Which inputs and outputs carry the node's compute type: those whose formal type is a type
        variable found on both sides (T of MatMul, Add, Clip, LayerNormalization...). The others have
        fixed or independent types -- shapes, indices, Resize's float32 scales, Cast's and Shape's
        outputs -- and are left alone. A node without a schema (a custom op) is typed alike throughout."""
        domain = node.domain or ""
        key = (domain, node.op_type)
        if key not in self.schemas:
            try:
                self.schemas[key] = onnx.defs.get_schema(node.op_type, self.opsets.get(domain, 1), domain)
            except onnx.defs.SchemaError:
                self.schemas[key] = None
        schema = self.schemas[key]
        if schema is None:
            return [True] * len(node.input), [True] * len(node.output)

        def formal(params, count):  # a variadic last parameter covers the remaining slots
            return [params[min(i, len(params) - 1)].type_str for i in range(count)] if params else []

        ins, outs = formal(schema.inputs, len(node.input)), formal(schema.outputs, len(node.output))
        shared = {c.type_param_str for c in schema.type_constraints} & set(ins) & set(outs)
        return [t in shared for t in ins], [t in shared for t in outs]

    @staticmethod
    def constant_tensors(graph: onnx.GraphProto) -> set[str]:
        """Tensors whose value depends on no graph input (the graph is topologically sorted)."""
        const = {i.name for i in graph.initializer}
        for node in graph.node:
            inputs = [n for n in node.input if n]
            if (node.op_type == "Constant" and not inputs) or (inputs and all(n in const for n in inputs)):
                const.update(node.output)
        return const

    def precision(self, node: onnx.NodeProto, const: set[str]) -> int:
        if (node.domain or "") not in _STANDARD_DOMAINS:
            return FLOAT16  # the plugin: one type for every input, and that type is float16
        if _OP_PARTS.get(node.op_type) in self.keep:
            return FLOAT
        inputs = [n for n in node.input if n]
        if "position_bias" in self.keep and inputs and all(n in const for n in inputs):
            return FLOAT
        return FLOAT16

    # -- the rewrite -------------------------------------------------------------------------

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def run(self, report: dict | None) -> onnx.ModelProto:
        graph = onnx.GraphProto()
        graph.CopyFrom(self.source.graph)
        _constants_to_initializers(graph)
        self.types = self.elem_types(graph)
        self.source_info = {vi.name: vi for vi in (*graph.value_info, *graph.input, *graph.output)}
        const = self.constant_tensors(graph)
        self.names = {n for node in graph.node for n in (*node.input, *node.output)}
        self.names |= {i.name for i in graph.initializer} | {i.name for i in graph.input}

        # Node messages held in one list and indexed by position: protobuf hands out a new wrapper
        # object on every access, so id(node) is not stable.
        nodes_in = list(graph.node)
        precision = [self.precision(n, const) for n in nodes_in]
        slots = [self.typed_slots(n) for n in nodes_in]
        self.convert_initializers(graph, nodes_in, precision, slots)
        for k, node in enumerate(nodes_in):
            self.retype(node, precision[k], slots[k])
        self.float32_outputs(graph)
        del graph.node[:]
        graph.node.extend(self.nodes_out)
        _drop_unused_initializers(graph)
        self.typed_value_info(graph)
        self.check_custom_inputs(graph)

        result = onnx.ModelProto()
        result.CopyFrom(self.source)
        result.graph.CopyFrom(graph)
        if report is not None:
            report.update(self.counts, keep_fp32=sorted(self.keep))
        return result

    def cast(self, name: str, to: int) -> str:
        """`name` in type `to`: one Cast per tensor and type, placed before its first consumer."""
        if (name, to) not in self.converted:
            out = self.fresh(f"{name}_{_SUFFIX[to]}")
            self.nodes_out.append(helper.make_node("Cast", [name], [out], name=self.fresh(f"{name}/cast_{_SUFFIX[to]}"),
                                                   to=to))
            self.counts["casts"] += 1
            self.converted[(name, to)] = out
            self.types[out] = to
            if name in self.source_info:
                self.new_info[out] = (self.source_info[name], to)
        return self.converted[(name, to)]

    def retype(self, source_node: onnx.NodeProto, p: int, slots: tuple[list[bool], list[bool]]) -> None:
        """A copy of the node computing in type `p`, its typed inputs cast to `p` where they are not."""
        types = self.types
        node = onnx.NodeProto()
        node.CopyFrom(source_node)
        typed_in, typed_out = slots
        has_float_input = False
        for i, (name, typed) in enumerate(zip(node.input, typed_in)):
            if name and typed and types.get(name) in _FLOATS:
                has_float_input = True
                if types[name] != p:
                    node.input[i] = self.cast(name, p)
        if node.op_type == "Cast" and (node.domain or "") in _STANDARD_DOMAINS:
            to = next(a for a in node.attribute if a.name == "to")
            if to.i == FLOAT and types.get(node.input[0]) in _FLOATS:
                to.i = types[node.input[0]]  # a float -> float32 Cast of the source stays an identity
            types[node.output[0]] = to.i
        else:
            for name, typed in zip(node.output, typed_out):
                # an output without a known type (a custom op's, without value_info) follows its inputs
                if name and typed and types.get(name, FLOAT if has_float_input else None) in _FLOATS:
                    types[name] = p
        if node.op_type == "LayerNormalization" and p == FLOAT16:
            _set_int_attribute(node, "stash_type", FLOAT)  # statistics in float32
        if has_float_input:
            self.counts["nodes_fp16" if p == FLOAT16 else "nodes_fp32"] += 1
        self.nodes_out.append(node)

    def float32_outputs(self, graph: onnx.GraphProto) -> None:
        """Graph outputs stay float32: the producer writes <name>_fp16, a final Cast writes <name>."""
        for out in graph.output:
            if self.types.get(out.name) != FLOAT16:
                continue
            inner = self.fresh(f"{out.name}_fp16")
            for node in self.nodes_out:
                for field in (node.input, node.output):
                    for i, n in enumerate(field):
                        if n == out.name:
                            field[i] = inner
            self.types[inner], self.types[out.name] = FLOAT16, FLOAT
            if out.name in self.source_info:
                self.new_info[inner] = (self.source_info[out.name], FLOAT16)
            self.nodes_out.append(helper.make_node("Cast", [inner], [out.name], name=self.fresh(f"{out.name}/cast_fp32"),
                                                   to=FLOAT))
            self.counts["casts"] += 1

    def typed_value_info(self, graph: onnx.GraphProto) -> None:
        """value_info: the source's shapes with the new element types. Strict inference with
        check_type=True then checks every tensor against them -- the custom nodes' outputs
        included, which inference cannot derive."""
        value_info = []
        for vi in graph.value_info:
            if vi.name in self.types and vi.type.HasField("tensor_type"):
                copy = onnx.ValueInfoProto()
                copy.CopyFrom(vi)
                copy.type.tensor_type.elem_type = self.types[vi.name]
                value_info.append(copy)
        for name, (source, to) in self.new_info.items():
            copy = onnx.ValueInfoProto()
            copy.CopyFrom(source)
            copy.name = name
            copy.type.tensor_type.elem_type = to
            value_info.append(copy)
        del graph.value_info[:]
        graph.value_info.extend(value_info)

    def check_custom_inputs(self, graph: onnx.GraphProto) -> None:
        for node in graph.node:
            if (node.domain or "") not in _STANDARD_DOMAINS:
                wrong = [n for n in node.input if n and self.types.get(n) != FLOAT16]
                if wrong:  # cannot happen by construction; the plugin would reject it at build time
                    raise Fp16ConversionError(f"custom node '{node.name}' has non-float16 inputs {wrong}")

    def convert_initializers(self, graph, nodes_in, precision, slots) -> None:
        """Each float32 initializer in the type(s) its consumers compute in: converted in place when
        only float16 consumers read it, a float16 copy beside it when both kinds do."""
        wanted: dict[str, set[int]] = {}
        for k, node in enumerate(nodes_in):
            for name, typed in zip(node.input, slots[k][0]):
                if typed and self.types.get(name) in _FLOATS:
                    wanted.setdefault(name, set()).add(precision[k])
        result = []
        for init in graph.initializer:
            want = wanted.get(init.name, set())
            if init.data_type != FLOAT or FLOAT16 not in want:
                result.append(init)
                self.counts["initializers_fp32"] += int(init.data_type == FLOAT and bool(want))
                continue
            half = numpy_helper.from_array(_float16_values(numpy_helper.to_array(init), self.counts), init.name)
            if FLOAT in want:
                half.name = self.fresh(f"{init.name}_fp16")
                self.converted[(init.name, FLOAT16)] = half.name
                self.types[half.name] = FLOAT16
                result.append(init)
                self.counts["initializers_both"] += 1
            else:
                self.types[init.name] = FLOAT16
            result.append(half)
            self.counts["initializers_fp16"] += 1
        del graph.initializer[:]
        graph.initializer.extend(result)


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {n for node in graph.node for n in node.input} | {o.name for o in graph.output}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _constants_to_initializers(graph: onnx.GraphProto) -> None:
    """Float Constant nodes become initializers, so their casts fold into the stored values too."""
    kept = []
    for node in graph.node:
        array = None
        if node.op_type == "Constant" and (node.domain or "") in _STANDARD_DOMAINS and len(node.attribute) == 1:
            attr = node.attribute[0]
            if attr.name == "value" and attr.t.data_type == FLOAT:
                array = numpy_helper.to_array(attr.t)
            elif attr.name == "value_float":
                array = np.array(attr.f, dtype=np.float32)
            elif attr.name == "value_floats":
                array = np.array(attr.floats, dtype=np.float32)
        if array is None:
            kept.append(node)
        else:
            graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
    del graph.node[:]
    graph.node.extend(kept)


__all__ = ["FLOAT", "FLOAT16", "PARTS", "RECOMMENDED_KEEP_FP32", "Fp16ConversionError", "tensor_types", "to_fp16"]
