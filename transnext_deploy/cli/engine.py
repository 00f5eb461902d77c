"""`transnext-deploy build-engine`: TensorRT engines from an exported artifact directory, built on
the machine that runs them (a Jetson, say) from artifacts exported elsewhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..artifacts import BATCH_PROFILE, ENGINE_SOURCE
from .app import StepProgress, UserError, one_line_errors, say, split_values


def build_engine_command(
    artifact_dir: Path = typer.Argument(  # noqa: B008
        ..., metavar="ARTIFACT_DIR", help="An artifact directory written by `export` (holds model.aa_plugin.onnx)."),
    precision: list[str] = typer.Option(  # noqa: B008
        [], "--precision", "-p", metavar="PRECISION",
        help="fp16 or fp32; repeat or comma-separate for both. Default: fp32 and fp16."),
    batch: Optional[tuple[int, int, int]] = typer.Option(  # noqa: UP007
        None, "--batch", "-b", metavar="MIN OPT MAX",
        help=f"The engines' batch profile, MIN <= OPT <= MAX: the smallest, the tuned-for and the largest batch "
             f"they accept. Default: {' '.join(map(str, BATCH_PROFILE))}."),
    plugin: Optional[Path] = typer.Option(  # noqa: UP007
        None, "--plugin", help="TensorRT plugin library (libtransnext_aa_plugin.so). Default: $TRANSNEXT_AA_PLUGIN, "
                               "else the build directory of `transnext-deploy build-plugin`."),
    version_compatible: bool = typer.Option(
        False, "--version-compatible",
        help="Build engines that later TensorRT versions can run (TensorRT's version-compatible mode); the plugin "
             "is serialised into the engine, so libtransnext_aa_plugin_dynamic.so must sit next to the plugin."),
    hardware_compatibility: str = typer.Option(
        "none", "--hardware-compatibility", metavar="LEVEL",
        help="none (engines for this GPU's compute capability), ampere_plus (every GPU of compute capability "
             "8.0 or later; not on Jetson) or same_compute_capability (TensorRT >= 10.13). Wider reach, slower engines."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Build even where a matching engine already exists."),
    json_output: bool = typer.Option(False, "--json", help="Print {artifact, engines: [{path, precision, ...}]} "
                                                           "as JSON on stdout."),
) -> None:
    """Build TensorRT engines of an exported artifact, one per precision, next to its ONNX graphs.

    Engines are built from model.aa_plugin.onnx with the aggregated-attention plugin, as `export` does
    where TensorRT is present, and written as model.aa_plugin.<precision>.engine with a .json of the
    TensorRT version, GPU, precision and batch profile. An engine whose .json still matches is reused.
    Needs the tensorrt Python package, a CUDA GPU and the plugin library; without them it exits 1
    with one line naming each missing piece.
    """
    from ..engine import (
        HARDWARE_COMPATIBILITY,
        PRECISIONS,
        build_engines_for_artifact,
        check_batch_profile,
        read_engine_metadata,
    )
    from ..plugin.build import find_plugin_library

    precisions = tuple(dict.fromkeys(p.lower() for p in split_values(precision))) or PRECISIONS
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise UserError(f"--precision takes {' or '.join(PRECISIONS)}, got {', '.join(unknown)}")
    lo, opt, hi = batch or BATCH_PROFILE
    if not 1 <= lo <= opt <= hi:
        raise UserError(f"--batch MIN OPT MAX must satisfy 1 <= MIN <= OPT <= MAX, got {lo} {opt} {hi}")
    profile = check_batch_profile((lo, opt, hi))
    if hardware_compatibility not in HARDWARE_COMPATIBILITY:
        raise UserError(f"--hardware-compatibility must be one of {', '.join(HARDWARE_COMPATIBILITY)}, "
                        f"got {hardware_compatibility!r}")
    serialize_plugin = None
    if version_compatible:  # the engine carries the loadLibrary variant of the plugin
        serialize_plugin = (plugin.with_name("libtransnext_aa_plugin_dynamic.so") if plugin is not None
                            else find_plugin_library(dynamic=True))
        if serialize_plugin is None or not serialize_plugin.is_file():
            raise UserError("--version-compatible serialises libtransnext_aa_plugin_dynamic.so into the engine: "
                            "build it with `transnext-deploy build-plugin --target plugin` (or place it next to --plugin)")
    if not (artifact_dir / ENGINE_SOURCE).is_file():
        raise UserError(f"{artifact_dir} is not an export artifact directory: {ENGINE_SOURCE} not found there")
    with StepProgress(f"engines of {artifact_dir.name}", len(precisions)) as progress:
        paths = build_engines_for_artifact(
            artifact_dir, precisions, batch_profile=profile, plugin_library=plugin, rebuild=rebuild,
            progress=lambda step: progress.update(step, advance=1), version_compatible=version_compatible,
            hardware_compatibility=hardware_compatibility, serialize_plugin=serialize_plugin)
    engines = []
    for path in paths:
        meta = read_engine_metadata(path)
        engines.append({"path": str(path), "precision": meta.get("precision"), "bytes": path.stat().st_size,
                        "tensorrt_version": meta.get("tensorrt_version"), "gpu": (meta.get("gpu") or {}).get("name"),
                        "build_seconds": meta.get("build_seconds")})
        say(f"{path} ({meta.get('precision')}, TensorRT {meta.get('tensorrt_version')}, "
            f"{(meta.get('gpu') or {}).get('name')}, {path.stat().st_size / 1e6:.1f} MB)", label="ok", style="green")
    if json_output:
        typer.echo(json.dumps({"artifact": str(artifact_dir), "engines": engines}, indent=2))


def register(app: typer.Typer) -> None:
    app.command("build-engine")(one_line_errors(build_engine_command))
