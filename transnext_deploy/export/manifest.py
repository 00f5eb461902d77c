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
    PLUGIN_ENV,
    PLUGIN_FILE,
    PLUGIN_LIBRARY,
    STANDARD_FILE,
    engine_file_name,
)
from ..files import sha256sum
from ..compare import Tolerance
from ..models.transnext import TransNeXt
from ..ops.contract import OP_DOMAIN, OP_NAME, OP_VERSION
from .options import ExportOptions
from .rewrite import overload_name
from .trace import output_names

# Next to the manifest's command lines: what they assume.
COMMANDS_NOTE = (f"Run these from this artifact directory (the file names are relative to it), with ${PLUGIN_ENV} set "
                 f"to the path of {PLUGIN_LIBRARY} (`transnext-deploy build-plugin --target plugin`); "
                 "trtexec and polygraphy come with TensorRT. Arguments are quoted for sh, bash and zsh.")


def tool_versions() -> dict[str, str]:
    versions = {"transnext_deploy": __version__, "python": platform.python_version()}
    for module in ("torch", "onnx", "onnxruntime", "onnx_graphsurgeon", "polygraphy", "onnxruntime_extensions",
                   "tensorrt"):
        try:
            versions[module] = str(__import__(module).__version__)
        except Exception:  # noqa: BLE001
            versions[module] = "not installed"
    return versions


def commands(resolution: tuple[int, int], tolerance: Tolerance) -> dict[str, str]:
    h, w = resolution
    lo, opt, hi = BATCH_PROFILE
    shapes = (f"--minShapes={INPUT_NAME}:{lo}x3x{h}x{w} --optShapes={INPUT_NAME}:{opt}x3x{h}x{w} "
              f"--maxShapes={INPUT_NAME}:{hi}x3x{h}x{w}")
    plugin = f"\"${PLUGIN_ENV}\""  # path of libtransnext_aa_plugin.so (`transnext-deploy build-plugin`)

    def shape(batch: int) -> str:  # quoted: zsh would expand the brackets as a glob and stop
        return shlex.quote(f"{INPUT_NAME}:[{batch},3,{h},{w}]")

    poly_shapes = (f"--trt-min-shapes {shape(lo)} --trt-opt-shapes {shape(opt)} --trt-max-shapes {shape(hi)} "
                   f"--input-shapes {shape(1)}")

    def trtexec(graph: str, plugins: str) -> str:
        return (f"trtexec --onnx={graph}{plugins} {shapes} --fp16 "
                f"--saveEngine={engine_file_name(graph, 'fp16')}")

    return {
        "trtexec_standard": trtexec(STANDARD_FILE, ""),
        "trtexec_plugin": trtexec(PLUGIN_FILE, f" --staticPlugins={plugin}"),
        "trtexec_function": trtexec(FUNCTION_FILE, f" --staticPlugins={plugin}"),
        "polygraphy_compare": f"polygraphy run {FUNCTION_FILE} --trt --onnxrt --plugins {plugin} {poly_shapes} "
                              f"--atol {tolerance.atol:g} --rtol {tolerance.rtol:g}",
        "polygraphy_plugin": f"polygraphy run {PLUGIN_FILE} --trt --plugins {plugin} {poly_shapes}",
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
    overloads = sorted({overload_name(m.attrs, m.head_dim) for m in matches})
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
        "weights": weights,
        "inputs": {INPUT_NAME: ["batch", 3, h, w]},
        "outputs": outputs,
        "custom_op": {
            "name": OP_NAME, "domain": OP_DOMAIN, "version": OP_VERSION, "nodes": len(matches),
            "function_overloads": overloads,
            "blocks": [m.attrs for m in matches],
        },
        "artifacts": {
            STANDARD_FILE: "standard ONNX ops (onnxruntime, TensorRT without the plugin)",
            PLUGIN_FILE: "custom nodes only: TensorRT 10.x (JetPack 6 = 10.3) with the plugin library loaded",
            FUNCTION_FILE: "custom nodes with local-function bodies: TensorRT >= 10.7 with the plugin; "
                           "onnxruntime and others inline the body",
        },
        "files": files,
        "tool_versions": tool_versions(),
        "commands_note": COMMANDS_NOTE,
        "commands": commands(resolution, Tolerance(options.atol, options.rtol)),
    }


__all__ = ["COMMANDS_NOTE", "commands", "manifest", "tool_versions"]
