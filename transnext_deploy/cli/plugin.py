"""`transnext-deploy build-plugin`: parses the options, prints what `plugin_build` planned and built."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from ..plugin.build import DEFAULT_CUDA_ARCHS
from . import options
from .app import StepProgress, note, one_line_errors, output_console, split_values


def build_plugin_command(
    target: Optional[list[str]] = typer.Option(  # noqa: UP007
        None, "--target", "-t", metavar="TARGET",
        help="What to build; repeat for several. host: the CPU reference library (C++ compiler only); "
             "cuda: the CUDA kernel alone (nvcc); plugin: the TensorRT plugin libraries (nvcc and TensorRT "
             "headers). Default: every target this machine can build; the others are skipped with the reason "
             "(--cuda-arch makes cuda required, --tensorrt-root makes plugin required)."),
    cuda_arch: options.CudaArchs = None,
    tensorrt_root: Optional[Path] = typer.Option(  # noqa: UP007
        None, "--tensorrt-root",
        help="TensorRT installation holding include/NvInfer.h (and lib/libnvinfer). Default: $TENSORRT_ROOT, "
             "$TENSORRT_INCLUDE_DIR, the system include directories; libnvinfer also from a `tensorrt` wheel."),
    build_dir: Optional[Path] = typer.Option(  # noqa: UP007
        None, "--build-dir", "-o",
        help="Where the libraries go (CMake's tree is its cmake/ subfolder). Default: "
             "$TRANSNEXT_DEPLOY_PLUGIN_DIR, else build/plugins in a source checkout, else the user cache "
             "($TRANSNEXT_DEPLOY_CACHE/plugins or ~/.cache/transnext-deploy/plugins); never the installed package."),
    jobs: Optional[int] = typer.Option(  # noqa: UP007
        None, "--jobs", "-j", help="Parallel compile jobs. Default: the number of CPUs."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show CMake's and the compilers' output."),
    json_output: Annotated[bool, options.json_flag("{build_dir, targets, skipped, libraries, ...}")] = False,
) -> None:
    """Build the aggregated-attention libraries (CPU reference, CUDA kernel, TensorRT plugin) with CMake.

    Sources and build details: plugins/aggregated_attention/README.md.
    """
    from ..plugin.build import build_plugin, normalize_cuda_archs, plan_build
    from ..plugin.locations import default_build_dir

    archs = normalize_cuda_archs(split_values(cuda_arch)) if cuda_arch else None
    plan = plan_build(target, cuda_archs_given=bool(cuda_arch), tensorrt_root=tensorrt_root)
    for t, reason in plan.skipped.items():
        note(reason, f"skipping {t}")
    if archs is not None and not ({"cuda", "plugin"} & set(plan.targets)):
        note("--cuda-arch has no effect: no CUDA target is built")

    out_dir = build_dir.expanduser().resolve() if build_dir is not None else default_build_dir()
    n_jobs = jobs if jobs is not None else os.cpu_count() or 2
    what = ", ".join(plan.targets)
    if {"cuda", "plugin"} & set(plan.targets):
        what += f" for sm_{', sm_'.join(archs or DEFAULT_CUDA_ARCHS)}"
    with StepProgress("build-plugin") as progress:
        progress.update(f"building {what} with CMake in {out_dir} ({n_jobs} jobs)", step=True)
        result = build_plugin(targets=plan.targets, cuda_archs=archs, tensorrt_root=tensorrt_root, build_dir=out_dir,
                              jobs=n_jobs, verbose=verbose)

    summary = {
        "build_dir": str(result.build_dir),
        "targets": list(result.targets),
        "skipped": plan.skipped,
        "libraries": {kind: str(path) for kind, path in result.libraries.items()},
        "cuda_archs": list(result.cuda_archs) if result.cuda_archs else None,
        "tensorrt_include_dir": str(result.tensorrt_include_dir) if result.tensorrt_include_dir else None,
        "tensorrt_library": str(result.tensorrt_library) if result.tensorrt_library else None,
        "notes": list(result.notes),
    }
    for text in result.notes:
        note(text)
    if json_output:
        typer.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=Text(f"built in {result.build_dir}"))
    table.add_column("library")
    table.add_column("path", overflow="fold")
    for kind, path in result.libraries.items():
        table.add_row(kind, Text(str(path)))
    output_console().print(table)


def register(app: typer.Typer) -> None:
    app.command("build-plugin")(one_line_errors(build_plugin_command))
