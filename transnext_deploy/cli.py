"""`transnext-deploy`: a thin command-line layer over the library API.

Every command reports a bad input as one line on stderr and exits non-zero; set
TRANSNEXT_DEPLOY_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from . import __version__


def _plain_flags(params: list) -> None:
    """Show on/off options (--version, --json, --help, ...) as bare flags in the help.

    typer's rich help prints a type such as `<bool>` after every option, flags included, although
    a flag takes no value; an empty metavar leaves the type column blank for them.
    """
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class PlainFlagsGroup(TyperGroup):
    def get_params(self, ctx):
        params = super().get_params(ctx)
        _plain_flags(params)
        return params

    def get_command(self, ctx, cmd_name):
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            _plain_flags(cmd.get_params(ctx))  # its options, and its --help (created once, then cached)
        return cmd


app = typer.Typer(
    name="transnext-deploy",
    cls=PlainFlagsGroup,
    help="Take TransNeXt from PyTorch to ONNX and TensorRT, validated against the PyTorch reference.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
DEBUG_ENV = "TRANSNEXT_DEPLOY_DEBUG"


class UserError(Exception):
    """An error caused by the command's input or environment; reported as one line."""


def _expected_errors() -> tuple[type[BaseException], ...]:
    from .checkpoint import CheckpointError
    from .engine import EngineError
    from .export import ExportError
    from .plugin_build import PluginBuildError

    return (UserError, CheckpointError, ExportError, EngineError, PluginBuildError, ValueError, OSError)


def one_line_errors(fn: Callable) -> Callable:
    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _expected_errors() as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            message = " ".join(str(exc).split()) or type(exc).__name__
            if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in message:
                message = f"{message}: {exc.filename}"
            console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1) from None

    return wrapper


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
) -> None:
    """Take TransNeXt from PyTorch to ONNX and TensorRT, validated against the PyTorch reference."""


@app.command()
@one_line_errors
def info(
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Report library versions, GPU, compilers and whether the plugin libraries are built.

    Always exits 0: what is missing is stated, not raised.
    """
    from .info import as_dict, collect

    probes = collect()
    if json_output:
        typer.echo(json.dumps(as_dict(probes), indent=2))
        return
    table = Table(title=f"transnext-deploy {__version__}")
    table.add_column("component")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for p in probes:
        table.add_row(p.name, "[green]ok[/]" if p.available else "[yellow]missing[/]", p.detail)
    Console().print(table)


@app.command("models")
@one_line_errors
def models_command(
    json_output: bool = typer.Option(False, "--json", help="Print the variants as JSON on stdout."),
) -> None:
    """List the TransNeXt variants, their configuration and published weights."""
    from .checkpoint import OFFICIAL_WEIGHTS
    from .models import VARIANTS, create_model

    rows = []
    for name, cfg in VARIANTS.items():
        params = sum(p.numel() for p in create_model(name).parameters())
        rows.append({
            "name": name,
            "embed_dims": list(cfg.embed_dims),
            "num_heads": list(cfg.num_heads),
            "depths": list(cfg.depths),
            "sr_ratios": list(cfg.sr_ratios),
            "window_sizes": list(cfg.window_sizes),
            "train_size": cfg.train_size,
            "params_millions": round(params / 1e6, 2),
            "official_weights": [w.filename for (v, _), w in OFFICIAL_WEIGHTS.items() if v == name],
        })
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="TransNeXt variants")
    for col in ("name", "params (M)", "embed dims", "depths", "sr ratios", "trained at", "official weights"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], f"{r['params_millions']:.2f}", str(r["embed_dims"]), str(r["depths"]),
                      str(r["sr_ratios"]), str(r["train_size"]), ", ".join(r["official_weights"]) or "-")
    Console().print(table)


@app.command()
@one_line_errors
def download(
    size: str = typer.Option(..., "--size", "-s", help="Variant: micro, tiny, small, base or micro_AAAA."),
    resolution: Optional[int] = typer.Option(  # noqa: UP007
        None, "--resolution", "-r",
        help="Resolution of the published weights (224; 384 for the fine-tuned small/base; 256 for micro_AAAA). "
             "Default: the lowest published."),
    output: Optional[Path] = typer.Option(  # noqa: UP007
        None, "--output", "-o", help="Directory to store the file in. Default: the user cache "
                                     "(TRANSNEXT_DEPLOY_CACHE or ~/.cache/transnext-deploy)."),
    json_output: bool = typer.Option(False, "--json", help="Print {path, sha256, ...} as JSON on stdout."),
) -> None:
    """Download official weights from the hub (needs network; TRANSNEXT_DEPLOY_HUB_URL overrides the host)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from .checkpoint import download_weights, official_weights, sha256sum

    weights = official_weights(_variant(size), resolution)
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task(weights.filename, total=None)
        path = download_weights(weights, output, progress=lambda done, total: progress.update(
            task, completed=done, total=total))
    result = {"variant": weights.variant, "resolution": weights.resolution, "path": str(path),
              "sha256": sha256sum(path), "pretrain_size": weights.pretrain_size}
    if json_output:
        typer.echo(json.dumps(result, indent=2))
    else:
        console.print(f"saved {path}")


BUILD_TARGETS = ("host", "cuda", "plugin")


def _missing_for(target: str, tensorrt_root: Path | None) -> list[str]:
    """What this machine lacks to build `target`, one reason per missing piece (beyond cmake and a
    C++ compiler, which every target needs and which build_plugin reports itself)."""
    from . import plugin_build

    missing = []
    if target in ("cuda", "plugin"):
        try:
            plugin_build.find_nvcc()
        except plugin_build.PluginBuildError as exc:
            missing.append(str(exc))
    if target == "plugin" and plugin_build.find_tensorrt(tensorrt_root).include_dir is None:
        where = f"not in {tensorrt_root}/include nor " if tensorrt_root else ""
        missing.append(f"TensorRT headers (NvInfer.h) not found ({where}TENSORRT_INCLUDE_DIR, TENSORRT_ROOT, "
                       "/usr/include): pass --tensorrt-root or set TENSORRT_ROOT or TENSORRT_INCLUDE_DIR")
    return missing


@app.command("build-plugin")
@one_line_errors
def build_plugin_command(
    target: Optional[list[str]] = typer.Option(  # noqa: UP007
        None, "--target", "-t", metavar="TARGET",
        help="What to build; repeat for several. host: the CPU reference library (C++ compiler only); "
             "cuda: the CUDA kernel alone (nvcc); plugin: the TensorRT plugin libraries (nvcc and TensorRT "
             "headers). Default: every target this machine can build; the others are skipped with the reason "
             "(--cuda-arch makes cuda required, --tensorrt-root makes plugin required)."),
    cuda_arch: Optional[list[str]] = typer.Option(  # noqa: UP007
        None, "--cuda-arch", metavar="ARCH",
        help="CUDA architecture to compile for; repeat for several (75 80 86 87 89 90; sm_87 and 8.7 are "
             "accepted too). Default: the CMake default, 75;80;86;87;89;90."),
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
    json_output: bool = typer.Option(
        False, "--json", help="Print {build_dir, targets, skipped, libraries, ...} as JSON on stdout."),
) -> None:
    """Build the aggregated-attention libraries (CPU reference, CUDA kernel, TensorRT plugin) with CMake.

    Sources and build details: plugins/aggregated_attention/README.md.
    """
    from .plugin_build import (
        DEFAULT_CUDA_ARCHS,
        PluginBuildError,
        build_plugin,
        default_build_dir,
        find_cmake,
        find_cxx_compiler,
        normalize_cuda_archs,
        plugin_source_dir,
    )

    unknown = [t for t in (target or []) if t not in BUILD_TARGETS]
    if unknown:
        raise UserError(f"unknown --target {', '.join(unknown)}: choose from {', '.join(BUILD_TARGETS)}")
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if tensorrt_root is not None and not tensorrt_root.is_dir():
        raise UserError(f"--tensorrt-root {tensorrt_root} is not a directory")
    archs = normalize_cuda_archs(";".join(cuda_arch)) if cuda_arch else None
    # Every target needs these; report them before looking at the optional pieces.
    plugin_source_dir()
    find_cmake()
    find_cxx_compiler()

    skipped: dict[str, str] = {}
    if target:
        wanted = list(dict.fromkeys(target))
        problems = [f"{t}: {'; '.join(m)}" for t in wanted if (m := _missing_for(t, tensorrt_root))]
        if problems:
            raise PluginBuildError("cannot build " + " | ".join(problems))
    else:
        required = {"host"} | ({"cuda"} if cuda_arch else set()) | ({"plugin"} if tensorrt_root else set())
        wanted = []
        for t in BUILD_TARGETS:
            missing = _missing_for(t, tensorrt_root)
            if not missing:
                wanted.append(t)
            elif t in required:
                option = "--cuda-arch" if t == "cuda" else "--tensorrt-root"
                raise PluginBuildError(f"cannot build {t} (asked for by {option}): {'; '.join(missing)}")
            else:
                skipped[t] = "; ".join(missing)
        for t, reason in skipped.items():
            console.print(f"[yellow]skipping {t}:[/] {reason}", highlight=False, soft_wrap=True)
    if archs is not None and not ({"cuda", "plugin"} & set(wanted)):
        console.print("[yellow]note:[/] --cuda-arch has no effect: no CUDA target is built", highlight=False)

    out_dir = build_dir.expanduser().resolve() if build_dir is not None else default_build_dir()
    n_jobs = jobs or os.cpu_count() or 2
    what = ", ".join(wanted)
    if {"cuda", "plugin"} & set(wanted):
        what += f" for sm_{', sm_'.join(archs or DEFAULT_CUDA_ARCHS)}"
    with console.status(f"building {what} with CMake in {out_dir} ({n_jobs} jobs)"):
        result = build_plugin(targets=wanted, cuda_archs=archs, tensorrt_root=tensorrt_root, build_dir=out_dir,
                              jobs=n_jobs, verbose=verbose)

    summary = {
        "build_dir": str(result.build_dir),
        "targets": list(result.targets),
        "skipped": skipped,
        "libraries": {kind: str(path) for kind, path in result.libraries.items()},
        "cuda_archs": list(result.cuda_archs) if result.cuda_archs else None,
        "tensorrt_include_dir": str(result.tensorrt_include_dir) if result.tensorrt_include_dir else None,
        "tensorrt_library": str(result.tensorrt_library) if result.tensorrt_library else None,
        "notes": list(result.notes),
    }
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    if json_output:
        typer.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=f"built in {result.build_dir}")
    table.add_column("library")
    table.add_column("path", overflow="fold")
    for kind, path in result.libraries.items():
        table.add_row(kind, str(path))
    Console().print(table)


def _variant(size: str) -> str:
    from .models import VARIANTS

    key = size.removeprefix("transnext_")
    if key not in VARIANTS:
        raise UserError(f"unknown size {size!r}; choose one of {', '.join(VARIANTS)}")
    return key


# Commands that live in their own modules register themselves on `app` when imported.
from . import cli_bench, cli_export  # noqa: E402,F401

if __name__ == "__main__":
    # `python -m transnext_deploy.cli`: this file runs as __main__, while the command modules above
    # register on the package module `transnext_deploy.cli`; run that one so every command is there.
    from transnext_deploy.cli import app as _package_app

    _package_app()
