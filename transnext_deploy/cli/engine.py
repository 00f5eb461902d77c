"""`transnext-deploy build-engine`: TensorRT engines from an exported artifact directory, built on
the machine that runs them (a Jetson, say) from artifacts exported elsewhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..artifacts import BATCH_PROFILE, ENGINE_SOURCE, PRECISIONS
from . import options
from .app import StepProgress, one_line_errors, say, split_values


def build_engine_command(
    artifact_dir: Annotated[Path, typer.Argument(
        metavar="ARTIFACT_DIR", help=f"An artifact directory written by `export` (holds {ENGINE_SOURCE}).")],
    precision: Annotated[Optional[list[str]], typer.Option(  # noqa: UP007
        "--precision", "-p", metavar="PRECISION",
        help=f"{' or '.join(PRECISIONS)}; repeat or comma-separate for both. Default: both.")] = None,
    batch: Annotated[Optional[tuple[int, int, int]], typer.Option(  # noqa: UP007
        "--batch", "-b", metavar="MIN OPT MAX",
        help=f"The engines' batch profile, MIN <= OPT <= MAX: the smallest, the tuned-for and the largest batch "
             f"they accept. Default: {' '.join(map(str, BATCH_PROFILE))}.")] = None,
    plugin: options.Plugin = None,
    version_compatible: options.VersionCompatible = False,
    hardware_compatibility: options.HardwareCompatibility = "none",
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Build even where a matching engine already exists.")
                       ] = False,
    json_output: Annotated[bool, options.json_flag("{artifact, engines: [{path, precision, ...}]}")] = False,
) -> None:
    """Build TensorRT engines of an exported artifact, one per precision, next to its ONNX graphs.

    Engines are built from model.aa_plugin.onnx with the aggregated-attention plugin, as `export` does
    where TensorRT is present, and written as model.aa_plugin.<precision>.engine with a .json of the
    TensorRT version, GPU, precision and batch profile. An engine whose .json still matches is reused.
    Needs the tensorrt Python package, a CUDA GPU and the plugin library; without them it exits 1
    with one line naming each missing piece.
    """
    from ..engine import build_engines_for_artifact, check_precisions, read_engine_metadata

    precisions = check_precisions(split_values(precision) if precision else None)
    with StepProgress(f"engines of {artifact_dir.name}", len(precisions)) as progress:
        paths = build_engines_for_artifact(
            artifact_dir, precisions, batch_profile=batch or BATCH_PROFILE, plugin_library=plugin, rebuild=rebuild,
            progress=progress.update, version_compatible=version_compatible,
            hardware_compatibility=hardware_compatibility)
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
