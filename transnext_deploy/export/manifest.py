"""manifest.json of an artifact directory: what was exported, from what, with which tools, the sha256
of every file, and the `trtexec` / `polygraphy` command lines that load it."""

from __future__ import annotations

import platform
import shlex
from pathlib import Path

from .. import __version__
from ..artifacts import (
    BATCH_PROFILE,
    FUNCTION_FILE,
    INPUT_NAME,
    MANIFEST_FILE,
    PLUGIN_DYNAMIC_LIBRARY,
    PLUGIN_ENV,
    PLUGIN_FILE,
    PLUGIN_LIBRARY,
    STANDARD_FILE,
    engine_file_name,
    graph_file,
    graph_kind,
)
from ..files import sha256sum
from ..compare import Tolerance
from ..engine.tensorrt import RTX_COMPUTE_CAPABILITIES
from ..models.transnext import TransNeXt
from ..ops.contract import OP_DOMAIN, OP_NAME, OP_VERSION
from .options import ExportOptions
from .trace import output_names

# Next to the manifest's command lines: what they assume.
COMMANDS_NOTE = (f"Run these from this artifact directory (the file names are relative to it), with ${PLUGIN_ENV} set "
                 f"to the path of {PLUGIN_LIBRARY} (`transnext-deploy build-plugin --target plugin`); "
                 "trtexec and polygraphy come with TensorRT. Arguments are quoted for sh, bash and zsh.")


def tool_versions() -> dict[str, str]:
    versions = {"transnext_deploy": __version__, "python": platform.python_version()}
    for module in ("torch", "onnx", "onnxruntime", "onnx_graphsurgeon", "polygraphy", "onnxruntime_extensions",
                   "tensorrt", "tensorrt_rtx"):
        try:
            versions[module] = str(__import__(module).__version__)
        except Exception:  # noqa: BLE001
            versions[module] = "not installed"
    return versions


# Which graph each runtime is given, and why (the manifest says it next to the command lines).
RUNTIME_GRAPHS = {
    "tensorrt": f"{graph_file('plugin', 'fp16')} (or {PLUGIN_FILE}) with the plugin library: TensorRT inlines a node's "
                "local function before it asks the plugin registry, so only the custom-op graph uses the fused kernel",
    "tensorrt-rtx": f"the same graphs, with {PLUGIN_DYNAMIC_LIBRARY} loaded through IPluginRegistry::loadLibrary "
                    "(`transnext-deploy build-engine --runtime tensorrt-rtx`)",
    "tensorrt without the plugin": f"{FUNCTION_FILE} or {STANDARD_FILE} (and their fp16 graphs): standard ops only "
                                   "once the function is inlined",
    "onnxruntime": f"{STANDARD_FILE} (CPU, CUDA); {PLUGIN_FILE} on the CPU with the host library (the faster CPU graph, "
                   f"what `predict` picks); {FUNCTION_FILE} runs anywhere (the function is inlined)",
}


def commands(resolution: tuple[int, int], tolerance: Tolerance, precisions=("fp32", "fp16")) -> dict[str, str]:
    """trtexec and polygraphy command lines for this artifact, strongly typed (the precision is the
    graph's: the fp16 graphs where they were written)."""
    h, w = resolution
    lo, opt, hi = BATCH_PROFILE
    precision = "fp16" if "fp16" in precisions else "fp32"
    shapes = (f"--minShapes={INPUT_NAME}:{lo}x3x{h}x{w} --optShapes={INPUT_NAME}:{opt}x3x{h}x{w} "
              f"--maxShapes={INPUT_NAME}:{hi}x3x{h}x{w}")
    plugin = f"\"${PLUGIN_ENV}\""  # path of libtransnext_aa_plugin.so (`transnext-deploy build-plugin`)

    def shape(batch: int) -> str:  # quoted: zsh would expand the brackets as a glob and stop
        return shlex.quote(f"{INPUT_NAME}:[{batch},3,{h},{w}]")

    poly_shapes = (f"--trt-min-shapes {shape(lo)} --trt-opt-shapes {shape(opt)} --trt-max-shapes {shape(hi)} "
                   f"--input-shapes {shape(1)}")

    def trtexec(kind: str, plugins: str = "") -> str:
        graph = graph_file(kind, precision)
        return f"trtexec --onnx={graph} --stronglyTyped{plugins} {shapes} --saveEngine={engine_file_name(graph)}"

    return {
        "trtexec_plugin": trtexec("plugin", f" --staticPlugins={plugin}"),
        "trtexec_standard": trtexec("standard"),
        "trtexec_function": trtexec("function"),
        "polygraphy_compare": f"polygraphy run {FUNCTION_FILE} --trt --onnxrt --strongly-typed {poly_shapes} "
                              f"--atol {tolerance.atol:g} --rtol {tolerance.rtol:g}",
        "polygraphy_plugin": f"polygraphy run {graph_file('plugin', precision)} --trt --strongly-typed --plugins {plugin} "
                             f"{poly_shapes}",
        "build_engine_rtx": f"transnext-deploy build-engine . --runtime tensorrt-rtx --compute-capability "
                            f"{' '.join(RTX_COMPUTE_CAPABILITIES[1:4])}",
    }


def manifest(model: TransNeXt, options: ExportOptions, resolution, weights, matches, directory: Path) -> dict:
    h, w = resolution
    names = output_names(model)
    if model.backbone:
        from ..models.position_bias import stage_grids

        grids = stage_grids(h, w)
        outputs = {n: ["batch", model.config.embed_dims[i], *grids[i]] for i, n in enumerate(names)}
    else:
        outputs = {"logits": ["batch", model.head.out_features]}
    files = {}
    for path in sorted(directory.iterdir()):
        if path.name != MANIFEST_FILE:
            files[path.name] = {"bytes": path.stat().st_size, "sha256": sha256sum(path)}
    return {
        "variant": model.name,
        "resolution": [h, w],
        "pretrain_size": list(model.pretrain_size),
        "mode": options.mode,
        "position_bias": options.position_bias,
        "fixed_pool_size": model.fixed_pool_size,  # null: pool grids (H // sr, W // sr)
        "opset": options.opset,
        "precisions": list(options.precisions),
        "weights": weights,
        "inputs": {INPUT_NAME: ["batch", 3, h, w]},
        "outputs": outputs,
        "custom_op": {
            "name": OP_NAME, "domain": OP_DOMAIN, "version": OP_VERSION, "nodes": len(matches),
            "function": {"domain": OP_DOMAIN, "name": OP_NAME, "overloads": 0,
                         "body": "the decomposition for every attribute set (attribute references)"},
            "blocks": [m.attrs for m in matches],
        },
        "graphs": {name: GRAPH_MEANINGS[graph_kind(name)] for name in files if name.endswith(".onnx")},
        "runtimes": RUNTIME_GRAPHS,
        "files": files,
        "tool_versions": tool_versions(),
        "commands_note": COMMANDS_NOTE,
        "commands": commands(resolution, Tolerance(options.atol, options.rtol), options.precisions),
    }


# What each kind of graph is (every kind in fp32, and in fp16 unless export was told fp32 only).
GRAPH_MEANINGS = {
    "standard": "standard ONNX ops",
    "plugin": "custom nodes only (one per aggregated-attention block): TensorRT with the plugin, onnxruntime on the "
              "CPU with the host library",
    "function": "the custom nodes backed by one local function (the decomposition): any runtime inlines it",
}


__all__ = ["COMMANDS_NOTE", "GRAPH_MEANINGS", "RUNTIME_GRAPHS", "commands", "manifest", "tool_versions"]
