"""`transnext-deploy info` and `models`: what this machine has, and the variants."""

from __future__ import annotations

import json

import typer
from rich.table import Table
from rich.text import Text

from .. import __version__
from .app import one_line_errors, output_console, say, split_values


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
        table.add_row(p.name, Text("ok", "green") if p.available else Text("missing", "yellow"), Text(p.detail))
    output_console().print(table)


def models(
    json_output: bool = typer.Option(False, "--json", help="Print the variants as JSON on stdout."),
) -> None:
    """List the TransNeXt variants, their configuration and published weights."""
    from ..models.checkpoint import OFFICIAL_WEIGHTS
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
    columns = ("name", "params (M)", "embed dims", "depths", "sr ratios", "trained at", "official weights")
    cells = [(r["name"], f"{r['params_millions']:.2f}", str(r["embed_dims"]), str(r["depths"]), str(r["sr_ratios"]),
              str(r["train_size"]), "\n".join(r["official_weights"]) or "-") for r in rows]
    out = output_console()
    # a table only as wide as its longest cells, borders included; else one block per variant, so the
    # name to type and the weights file names are never cut
    needed = 1 + sum(3 + max(len(line) for cell in [col, *(c[i] for c in cells)] for line in cell.split("\n"))
                     for i, col in enumerate(columns))
    if out.width >= needed:
        table = Table(title="TransNeXt variants")
        for col in columns:
            table.add_column(col, no_wrap=True)
        for row in cells:
            table.add_row(*(Text(c) for c in row))
        out.print(table)
        return
    for r in rows:
        out.print(Text.assemble((r["name"], "bold"), f"  {r['params_millions']:.2f} M parameters, trained at "
                                f"{r['train_size']}"), soft_wrap=True)
        out.print(Text(f"  embed dims {r['embed_dims']}, depths {r['depths']}, sr ratios {r['sr_ratios']}"))
        for w in r["official_weights"] or ["-"]:
            out.print(Text(f"  weights: {w}"), soft_wrap=True)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def cache(
    clear: list[str] = typer.Option(  # noqa: B008
        [], "--clear", metavar="PART",
        help="Delete a part of the cache: weights, bench, tensorrt, plugins, or all; repeat or comma-separate "
             "for several. Without it, only report."),
    json_output: bool = typer.Option(False, "--json", help="Print {directory, parts: {PART: {path, bytes, files, "
                                                           "what}}, cleared} as JSON on stdout."),
) -> None:
    """Show where the user cache is, how big each part is, and clear parts of it.

    The cache is $TRANSNEXT_DEPLOY_CACHE, else $XDG_CACHE_HOME/transnext-deploy or
    ~/.cache/transnext-deploy. bench keeps its exported artifacts there (about 900 MB after the
    defaults) and reuses them; `--clear bench` frees that space, and the next bench exports again.
    """
    from ..cache import cache_dir, cache_usage, clear_cache

    parts = split_values(clear)
    freed = clear_cache(parts) if parts else {}
    usage = cache_usage()
    if json_output:
        typer.echo(json.dumps({"directory": str(cache_dir()), "parts": usage, "cleared": freed}, indent=2))
    else:
        table = Table(title=Text(f"cache {cache_dir()}"))
        for col in ("part", "size", "files", "path", "what"):
            table.add_column(col, overflow="fold")
        for part, u in usage.items():
            table.add_row(part, human_bytes(u["bytes"]), str(u["files"]), Text(u["path"]), Text(u["what"]))
        output_console().print(table)
    for part, n in freed.items():
        say(f"cleared {part}: {human_bytes(n)} freed", label="ok", style="green")


def register(app: typer.Typer) -> None:
    app.command("info")(one_line_errors(info))
    app.command("models")(one_line_errors(models))
    app.command("cache")(one_line_errors(cache))
