"""`transnext-deploy download`: official weights from the hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from . import options
from .app import StepProgress, one_line_errors, say


def download(
    size: options.Size,
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
    from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn

    from ..files import sha256sum
    from ..models.checkpoint import download_weights, official_weights
    from ..models import resolve_variant

    weights = official_weights(resolve_variant(size, "size"), resolution)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with StepProgress(weights.filename, columns=columns, counts=False, steps=False) as progress:
        progress.update(f"downloading {weights.filename}")
        path = download_weights(weights, output, progress=progress.update)
    result = {"variant": weights.variant, "resolution": weights.resolution, "path": str(path),
              "sha256": sha256sum(path), "pretrain_size": weights.pretrain_size}
    if json_output:
        typer.echo(json.dumps(result, indent=2))
    else:
        say(f"saved {path}")


def register(app: typer.Typer) -> None:
    app.command("download")(one_line_errors(download))
