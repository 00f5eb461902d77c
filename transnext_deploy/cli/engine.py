"""`transnext-deploy build-engine`: TensorRT engines from an exported artifact directory, built on
the machine that runs them (a Jetson, say) from artifacts exported elsewhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..artifacts import BATCH_PROFILE, ENGINE_GRAPH, GRAPHS, PRECISIONS
from ..engine.tensorrt import DEFAULT_RUNTIME
from . import options
from .app import StepProgress, one_line_errors, say, split_values, trailing_values


def build_engine_command(
    ctx: typer.Context,
    artifact_dir: Annotated[Path, typer.Argument(
        metavar="ARTIFACT_DIR", help="An artifact directory written by `export` (holds its graphs).")],
    runtime: options.Runtime = DEFAULT_RUNTIME,
    compute_capability: options.ComputeCapabilities = None,
    precision: Annotated[Optional[list[str]], typer.Option(  # noqa: UP007
        "--precision", "-p", metavar="PRECISION",
        help=f"{' or '.join(PRECISIONS)}: the engine of each is built from that precision's graph (strongly typed); "
             "repeat or comma-separate for both. Default: both.")] = None,
    graph: Annotated[str, typer.Option(
        "--graph", metavar="KIND",
        help=f"Which graph: {', '.join(GRAPHS)}. plugin (the default) is the custom-op graph with the fused kernel; "
             "standard and function build without the plugin (TensorRT inlines the function).")] = ENGINE_GRAPH,
    batch: Annotated[Optional[tuple[int, int, int]], typer.Option(  # noqa: UP007
        "--batch", "-b", metavar="MIN OPT MAX",
        help=f"The engines' batch profile, MIN <= OPT <= MAX: the smallest, the tuned-for and the largest batch "
             f"they accept. Default: {' '.join(map(str, BATCH_PROFILE))}.")] = None,
    plugin: options.Plugin = None,
    version_compatible: options.VersionCompatible = False,
    hardware_compatibility: options.HardwareCompatibility = "none",
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Build even where a matching engine already exists.")
                       ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print the runtime's own log (stderr).")] = False,
    json_output: Annotated[bool, options.json_flag("{artifact, engines: [{path, precision, runtime, ...}]}")] = False,
) -> None:
    """Build TensorRT or TensorRT-RTX engines of an exported artifact, one per precision, next to its graphs.

    Engines are built from model.aa_plugin.<precision>.onnx with the aggregated-attention plugin (or the
    --graph asked for), as `export` does where TensorRT is present, and written as
    model.aa_plugin.<precision>.engine (TensorRT) or .<precision>.rtx.engine (TensorRT-RTX) with a .json of
    the runtime and its version, the GPU or compute capabilities, precision, batch profile, and the sha256
    of the graph and of the plugin library. An engine whose .json still matches is reused. TensorRT builds
    for the GPU it runs on; TensorRT-RTX builds ahead of time, on a machine without a GPU, for the compute
    capabilities given. Without the runtime, a GPU where one is needed, or the plugin library, it exits 1
    with one line naming each missing piece.
    """
    from ..engine import build_engines_for_artifact, check_precisions, read_engine_metadata

    precisions = check_precisions(split_values(precision) if precision else None)
    capabilities = trailing_values(ctx, compute_capability, "--compute-capability")
    with StepProgress(f"engines of {artifact_dir.name}", len(precisions)) as progress:
        paths = build_engines_for_artifact(
            artifact_dir, precisions, graph=graph, runtime=runtime, compute_capabilities=capabilities,
            batch_profile=batch or BATCH_PROFILE, plugin_library=plugin, rebuild=rebuild, progress=progress.update,
            version_compatible=version_compatible, hardware_compatibility=hardware_compatibility, verbose=verbose)
    engines = []
    for path in paths:
        meta = read_engine_metadata(path)
        target = ((meta.get("gpu") or {}).get("name") if not meta.get("built_ahead_of_time") else
                  "sm_" + ", sm_".join(meta["compute_capabilities"]))
        engines.append({"path": str(path), "precision": meta["precision"], "bytes": path.stat().st_size,
                        "runtime": meta["runtime"], "runtime_version": meta["runtime_version"],
                        "compute_capabilities": meta["compute_capabilities"], "gpu": (meta.get("gpu") or {}).get("name"),
                        "layers": meta.get("layers"), "plugin_layers": meta.get("plugin_layers"),
                        "build_seconds": meta.get("build_seconds")})
        say(f"{path} ({meta['precision']}, {meta['runtime']} {meta['runtime_version']}, {target}, "
            f"{meta.get('plugin_layers')} plugin layers, {path.stat().st_size / 1e6:.1f} MB)", label="ok", style="green")
    if json_output:
        typer.echo(json.dumps({"artifact": str(artifact_dir), "engines": engines}, indent=2))


def register(app: typer.Typer) -> None:
    # extra arguments: the values after --compute-capability (`--compute-capability 86 89 120`)
    app.command("build-engine", context_settings={"allow_extra_args": True})(one_line_errors(build_engine_command))
