"""Names only: what the package writes and reads by name, each written once.

The input name and the files of an exported artifact (graphs, engines, manifests), the batch
profile of engines, the libraries built from `plugins/`, the environment variables the package
reads, the names of the Triton models and tensors it serves, the preprocessing constants, and the
steps an export reports (so that a progress display plans exactly the steps an export takes).
Export, the engine builder, the backends, bench, the bundle, serving, the manifests' command lines
and the CLI import them from here.

This module is at the bottom of the package: it imports nothing from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

# ------------------------------------------------------------------------------------------ graphs

INPUT_NAME = "images"  # every exported graph: (batch, 3, H, W) float32, ImageNet-normalised
PRECISIONS = ("fp32", "fp16")  # of the graphs, and of the engines built from them (strongly typed)
# The graphs of an artifact, by kind -> file stem; each in every precision (graph_file).
GRAPHS = {
    "standard": "model",  # standard ONNX ops only
    "plugin": "model.aa_plugin",  # custom nodes only: TensorRT with the plugin loaded; onnxruntime with the host library
    "function": "model.aa_function",  # custom nodes backed by one local function: any runtime inlines it
}


def graph_file(kind: str, precision: str = "fp32") -> str:
    """("plugin", "fp16") -> model.aa_plugin.fp16.onnx; fp32 graphs keep the plain names (model.onnx)."""
    return f"{GRAPHS[kind]}{'' if precision == 'fp32' else '.' + precision}.onnx"


def graph_kind(name: str) -> str:
    """model.aa_plugin.fp16.onnx -> plugin; model.fp16.onnx -> standard."""
    return next((kind for kind, stem in GRAPHS.items() if kind != "standard" and name.startswith(stem + ".")),
                "standard")


def graph_precision(name: str) -> str:
    """model.aa_plugin.fp16.onnx -> fp16; model.onnx -> fp32."""
    return next((p for p in PRECISIONS if f".{p}." in name), "fp32")


STANDARD_FILE = graph_file("standard")
PLUGIN_FILE = graph_file("plugin")
FUNCTION_FILE = graph_file("function")
GRAPH_FILES = tuple(graph_file(kind, p) for p in PRECISIONS for kind in GRAPHS)
VALIDATION_FILE = "validation.json"
MANIFEST_FILE = "manifest.json"

# ------------------------------------------------------------------------------------------ engines

ENGINE_GRAPH = "plugin"  # engines are built from the custom-op graph: TensorRT inlines functions, never fusing them
ENGINE_SUFFIX = ".engine"
ENGINE_METADATA_SUFFIX = ".json"
BATCH_PROFILE = (1, 8, 32)  # min / opt / max batch of engines and of the manifest's trtexec lines


def engine_file_name(graph_name: str, runtime_tag: str = "") -> str:
    """model.aa_plugin.fp16.onnx -> model.aa_plugin.fp16.engine; model.aa_plugin.onnx ->
    model.aa_plugin.fp32.engine; a runtime tag goes before the suffix: model.aa_plugin.fp16.rtx.engine."""
    precision = graph_precision(graph_name)
    stem = Path(graph_name).name.removesuffix(".onnx").removesuffix(f".{precision}")
    return f"{stem}.{precision}{'.' + runtime_tag if runtime_tag else ''}{ENGINE_SUFFIX}"


def engine_metadata_name(engine_name: str) -> str:
    """model.aa_plugin.fp16.engine -> model.aa_plugin.fp16.engine.json"""
    return engine_name + ENGINE_METADATA_SUFFIX


# ------------------------------------------------------------------------------------------ libraries

# What plugins/CMakeLists.txt builds, by kind (plugins/aggregated_attention/README.md).
LIBRARY_FILES = {
    "host": "libtransnext_aa_host.so",  # the op on the CPU (ctypes): the custom-op graph in onnxruntime
    "cuda": "libtransnext_aa_cuda.a",  # the CUDA kernel alone, linked into the libraries below
    # The kernel's C API (aggregatedAttentionCuda.h), CUDA runtime linked statically: the PyTorch op.
    "cuda_api": "libtransnext_aa_cuda.so",
    # Registers its creator when loaded: trtexec --staticPlugins, polygraphy --plugins, ctypes.
    "plugin": "libtransnext_aa_plugin.so",
    # getCreators() only: IPluginRegistry::loadLibrary, trtexec --dynamicPlugins / --setPluginsToSerialize.
    "plugin_dynamic": "libtransnext_aa_plugin_dynamic.so",
    # An executable, not a library: the plugin life-cycle test driver.
    "lifecycle": "transnext_aa_plugin_lifecycle",
}
PLUGIN_LIBRARY = LIBRARY_FILES["plugin"]
PLUGIN_DYNAMIC_LIBRARY = LIBRARY_FILES["plugin_dynamic"]

# ------------------------------------------------------------------------------------------ environment

PLUGIN_ENV = "TRANSNEXT_AA_PLUGIN"  # the TensorRT plugin library; the manifests' command lines use it too
CUDA_LIBRARY_ENV = "TRANSNEXT_AA_CUDA_LIBRARY"  # the kernel library of torch.ops.transnext.aggregated_attention
PLUGIN_DIR_ENV = "TRANSNEXT_DEPLOY_PLUGIN_DIR"  # where build-plugin writes and the libraries are looked for
CACHE_ENV = "TRANSNEXT_DEPLOY_CACHE"  # the user cache (cache.py)
HUB_URL_ENV = "TRANSNEXT_DEPLOY_HUB_URL"  # the host official weights are downloaded from
DEBUG_ENV = "TRANSNEXT_DEPLOY_DEBUG"  # the CLI shows tracebacks instead of one-line errors
TENSORRT_ROOT_ENV = "TENSORRT_ROOT"  # a TensorRT installation (include/, lib/) to build the plugin against
TENSORRT_INCLUDE_ENV = "TENSORRT_INCLUDE_DIR"  # a directory holding NvInfer.h

# ------------------------------------------------------------------------------------------ Triton

IMAGE_MODEL = "transnext"  # serve: encoded image files -> top-K indices, probabilities, labels
TENSOR_MODEL = "transnext_tensor"  # serve and package --triton: preprocessed images -> logits
IMAGE_INPUT = "image"  # BYTES [-1, 1]
TOP_K_OUTPUTS = ("indices", "probabilities", "labels")  # [-1, K] each
LOGITS_OUTPUT = "logits"
TRITON_PLUGINS_DIR = "plugins"  # in a model repository: the plugin library the TensorRT backend loads

# ------------------------------------------------------------------------------------------ inputs

# ImageNet mean and std of RGB in [0, 1], as the published evaluation code normalises.
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def normalize_images(rgb: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) RGB in [0, 1] -> the (B, 3, H, W) float32 input of every graph."""
    return ((rgb - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32).transpose(0, 3, 1, 2).copy()


def artifact_name(variant: str, mode: str, resolution: tuple[int, int], fixed_pool_size: int | None = None) -> str:
    """The directory of one exported resolution: transnext_small_classify_224x224, with a suffix in
    linear inference mode (transnext_micro_backbone_800x1333_pool7) so both modes can sit side by side."""
    name = f"transnext_{variant}_{mode}_{resolution[0]}x{resolution[1]}"
    return name if fixed_pool_size is None else f"{name}_pool{fixed_pool_size}"


# ------------------------------------------------------------------------------------------ export steps

# What export_resolution reports, in order, for one resolution; then one engine_step() per engine
# precision when engines are planned. Progress displays size themselves with export_steps().
EXPORT_STEPS = (
    "building the PyTorch model",
    "tracing to standard ONNX",
    "fusing aggregated attention",
    "attaching the local function",
    "writing the fp16 graphs",  # only when fp16 is among the precisions
    "validating against PyTorch",
)


def engine_step(precision: str, source: str, runtime: str = "tensorrt") -> str:
    """The progress step of building one engine."""
    return f"building the {precision} {runtime} engine from {source}"


def export_steps(precisions: Sequence[str] = PRECISIONS, engine_precisions: Sequence[str] = ()) -> tuple[str, ...]:
    """Every progress step of exporting one resolution in `precisions`, engines included: those of
    `engine_precisions` whose graph is written (an engine needs its graph)."""
    steps = tuple(s for s in EXPORT_STEPS if "fp16" not in s or "fp16" in precisions)
    return steps + tuple(engine_step(p, graph_file(ENGINE_GRAPH, p)) for p in engine_precisions if p in precisions)


__all__ = [
    "BATCH_PROFILE",
    "ENGINE_GRAPH",
    "GRAPHS",
    "PRECISIONS",
    "EXPORT_STEPS",
    "FUNCTION_FILE",
    "GRAPH_FILES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INPUT_NAME",
    "MANIFEST_FILE",
    "PLUGIN_ENV",
    "PLUGIN_FILE",
    "STANDARD_FILE",
    "VALIDATION_FILE",
    "artifact_name",
    "engine_file_name",
    "engine_metadata_name",
    "engine_step",
    "graph_file",
    "graph_kind",
    "graph_precision",
    "export_steps",
    "normalize_images",
]
