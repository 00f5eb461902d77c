"""`transnext-deploy info` and `models`: what this machine has, and the variants."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from .. import __version__
from .app import one_line_errors


def info(
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Report library versions, GPU, compilers and whether the plugin libraries are built.

    Always exits 0: what is missing is stated, not raised.
    """
    from ..info import as_dict, collect

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


def models(
    json_output: bool = typer.Option(False, "--json", help="Print the variants as JSON on stdout."),
) -> None:
    """List the TransNeXt variants, their configuration and published weights."""
    from ..checkpoint import OFFICIAL_WEIGHTS
    from ..models import VARIANTS, create_model

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


def register(app: typer.Typer) -> None:
    app.command("info")(one_line_errors(info))
    app.command("models")(one_line_errors(models))
