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

from . import __version__

app = typer.Typer(
    name="transnext-deploy",
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

    errors: list[type[BaseException]] = [UserError, CheckpointError, ValueError, OSError]
    try:
        from .plugin_build import PluginBuildError

        errors.append(PluginBuildError)
    except ImportError:
        pass
    return tuple(errors)


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
    version: Optional[bool] = typer.Option(  # noqa: UP007 - typer reads the annotation
        None, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
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


def _variant(size: str) -> str:
    from .models import VARIANTS

    key = size.removeprefix("transnext_")
    if key not in VARIANTS:
        raise UserError(f"unknown size {size!r}; choose one of {', '.join(VARIANTS)}")
    return key


if __name__ == "__main__":
    app()
