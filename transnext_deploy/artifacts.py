"""The layout of an exported artifact and the facts every layer shares about it.

One place for the names that export, the engine builder, the backends, bench and the manifests'
command lines must agree on: the input name, the file names, the batch profile of engines, the
variable that names the plugin library, the preprocessing constants, and the steps an export reports, so that a progress display plans exactly the steps an export takes.

This module is at the bottom of the package: it imports nothing from it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# ------------------------------------------------------------------------------------------ graphs

INPUT_NAME = "images"  # every exported graph: (batch, 3, H, W) float32, ImageNet-normalised
STANDARD_FILE = "model.onnx"  # standard ONNX ops only
PLUGIN_FILE = "model.aa_plugin.onnx"  # custom nodes only: TensorRT 10.x with the plugin loaded
FUNCTION_FILE = "model.aa_function.onnx"  # custom nodes backed by local functions
GRAPH_FILES = (STANDARD_FILE, PLUGIN_FILE, FUNCTION_FILE)
VALIDATION_FILE = "validation.json"
MANIFEST_FILE = "manifest.json"

# ------------------------------------------------------------------------------------------ engines

ENGINE_SOURCE = PLUGIN_FILE  # engines are built from the custom-op graph (every TensorRT 10.x)
ENGINE_SUFFIX = ".engine"
ENGINE_METADATA_SUFFIX = ".json"
BATCH_PROFILE = (1, 8, 32)  # min / opt / max batch of engines and of the manifest's trtexec lines
PLUGIN_ENV = "TRANSNEXT_AA_PLUGIN"  # names libtransnext_aa_plugin.so, in the manifest's command lines too


def engine_file_name(onnx_name: str, precision: str) -> str:
    """model.aa_plugin.onnx + fp16 -> model.aa_plugin.fp16.engine (the manifest's trtexec naming)."""
    return f"{Path(onnx_name).stem}.{precision}{ENGINE_SUFFIX}"


def engine_metadata_name(engine_name: str) -> str:
    """model.aa_plugin.fp16.engine -> model.aa_plugin.fp16.engine.json"""
    return engine_name + ENGINE_METADATA_SUFFIX


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
    "attaching local functions",
    "validating against PyTorch",
)


def engine_step(precision: str, source: str = ENGINE_SOURCE) -> str:
    """The progress step of building one engine."""
    return f"building the {precision} TensorRT engine from {source}"


def export_steps(engine_precisions: Sequence[str] = ()) -> tuple[str, ...]:
    """Every progress step of exporting one resolution, engines (one per precision) included."""
    return EXPORT_STEPS + tuple(engine_step(p) for p in engine_precisions)


# ------------------------------------------------------------------------------------------ files


def sha256sum(path: str | os.PathLike) -> str:
    """sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = [
    "BATCH_PROFILE",
    "ENGINE_SOURCE",
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
    "export_steps",
    "normalize_images",
    "sha256sum",
]
