"""`transnext-deploy bench`: the command over `transnext_deploy.bench.run`; the table and its notes."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..artifacts import PRECISIONS
from ..backends.registry import BACKENDS
from . import options
from .app import StepProgress, one_line_errors, say, split_values, whole_numbers


# Long only by its option declarations; the body hands them to the library.
def bench_command(
    size: options.Size = "tiny",
    resolution: Annotated[Optional[list[str]], options.resolutions("224 and 384")] = None,  # noqa: UP007
    batch: Annotated[Optional[list[str]], typer.Option(  # noqa: UP007
        "--batch", "-b", metavar="N", help="Batch size; repeat or comma-separate for several. Default: 1.")] = None,
    backend: Annotated[Optional[list[str]], typer.Option(  # noqa: UP007
        "--backend", metavar="NAME",
        help="Backend to measure; repeat or comma-separate for several, or 'all'. " + "; ".join(
            f"{name}: {spec.runs}" for name, spec in BACKENDS.items()) + ". Default: all; torch-compile is opt-in on "
        "the CPU (minutes to compile); those this machine lacks get a 'not available: <reason>' row.")] = None,
    precision: Annotated[Optional[list[str]], typer.Option(  # noqa: UP007
        "--precision", "-p", metavar="PRECISION",
        help=f"Precisions of the engine backends (tensorrt), a row each: {' or '.join(PRECISIONS)}; repeat or "
             "comma-separate for both. Default: both.")] = None,
    runs: Annotated[int, typer.Option(
        "--runs", help="Timed passes per backend and case, interleaved across backends round by round "
                       "(fewer once --max-seconds is used up).")] = 10,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed passes per case before timing.")] = 1,
    max_seconds: Annotated[float, typer.Option(
        "--max-seconds",
        help="Stop the timed rounds after this many seconds per backend once --min-runs rounds are done.")] = 5.0,
    min_runs: Annotated[int, typer.Option("--min-runs", help="Timed rounds whatever --max-seconds says.")] = 3,
    threads: Annotated[Optional[int], typer.Option(  # noqa: UP007
        "--threads", help="CPU threads for PyTorch and onnxruntime. Default: the CPUs this process may use.")] = None,
    device: Annotated[str, options.device(
        "Where the torch-* backends run (the others run where their name says; without a GPU the torch rows say "
        "'not available: no CUDA device'). The reference is always PyTorch, plain attention, fp32, on the CPU.")
    ] = "auto",
    checkpoint: Annotated[Optional[str], typer.Option(  # noqa: UP007
        "--checkpoint", "-c",
        help="Official .pth, or 'official' to download it. Default: seeded random weights (speed and "
             "agreement only).")] = None,
    work_dir: Annotated[Optional[Path], typer.Option(  # noqa: UP007
        "--work-dir",
        help="Where exported artifacts and polygraphy data are kept and reused. Default: "
             "$TRANSNEXT_DEPLOY_CACHE/bench or ~/.cache/transnext-deploy/bench.")] = None,
    plugin: options.Plugin = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random weights and of the input images.")] = 0,
    no_memory: Annotated[bool, typer.Option("--no-memory", help="Do not measure peak memory.")] = False,
    json_path: Annotated[Optional[Path], typer.Option(  # noqa: UP007
        "--json", help="Write every number (rows, machine, commands) to this JSON file.")] = None,
    plot_path: Annotated[Optional[Path], typer.Option(  # noqa: UP007
        "--plot", help="Write a PNG: latency vs resolution per backend (log scale) and speed-ups.")] = None,
) -> None:
    """Latency, throughput, peak memory and accuracy vs PyTorch for every backend, side by side.

    For each backend x resolution x batch: warm-up, timed passes, latency p50/p90/p99, throughput,
    peak memory, and max-abs / cosine / top-1 agreement against PyTorch with the published attention
    (fp32, CPU). Exported artifacts are made with `export` in --work-dir and reused. The table goes to
    stdout, progress to stderr.
    """
    from ..bench.plot import plot_report
    from ..bench.report import check_report_paths
    from ..bench.run import BenchOptions, run_bench
    from ..resolution import parse_resolution

    check_report_paths(json_path, plot_path)
    options = BenchOptions(
        variant=size, runs=runs, warmup=warmup, max_seconds=max_seconds, min_runs=min_runs, threads=threads,
        device=device, checkpoint=checkpoint, work_dir=work_dir, plugin_library=plugin, seed=seed,
        memory=not no_memory, backends=split_values(backend or []) or None)
    if resolution:
        options.resolutions = [parse_resolution(r) for r in split_values(resolution)]
    if batch:
        options.batches = whole_numbers(batch, "--batch")
    if precision:
        options.precisions = [p.lower() for p in split_values(precision)]

    started = time.perf_counter()
    with StepProgress(f"bench transnext_{size}") as progress:
        report = run_bench(options, progress=progress.update)

    out = Console(width=None if sys.stdout.isatty() else 160)
    out.print(_table(report))
    _print_notes(report, out)
    if json_path is not None:
        report.write_json(json_path)
        say(f"wrote {json_path}")
    if plot_path is not None:
        plot_report(report, plot_path)
        say(f"wrote {plot_path}")
    say(_work_dir_line(report.meta["work_dir"], work_dir is None))
    say(f"bench finished in {time.perf_counter() - started:.0f} s")


def _work_dir_line(path: str, default: bool) -> str:
    """Where the reused artifacts are and how much they take, and how to get the space back."""
    from ..cache import cache_usage
    from .about import human_bytes

    if default:
        size = cache_usage()["bench"]["bytes"]
        how = "`transnext-deploy cache --clear bench` frees it"
    else:
        size = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and not p.is_symlink())
        how = "delete the directory to free it"
    return f"artifacts kept for the next run in {path}: {human_bytes(size)} ({how})"


def _table(report) -> Table:
    """One row per measured case; a backend that did not run is one row with a numbered reason."""
    from rich import box

    from ..bench.report import fmt_number as f

    meta = report.meta
    machine = meta["machine"]
    table = Table(title=f"transnext_{meta['variant']} · {machine['threads']} CPU threads · {machine['cpu']}",
                  box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    for name in ("backend", "res", "batch", "runs", "p50 ms", "p90 ms", "p99 ms", "img/s", "peak MiB", "max-abs",
                 "cosine", "top-1", "status"):
        table.add_column(name, justify="left" if name in ("backend", "status") else "right", no_wrap=True)
    shown_missing: set[str] = set()
    last_batch = None
    for r in report.rows:
        if r.ok:
            if last_batch is not None and r.batch != last_batch:
                table.add_section()
            last_batch = r.batch
            lat, acc = r.latency_ms, r.accuracy
            table.add_row(r.label, _res(r.resolution), str(r.batch), str(r.runs), f(lat["p50"], "ms"),
                          f(lat["p90"], "ms"), f(lat["p99"], "ms"), f(r.throughput_img_s, "ips"),
                          f(r.memory_mib, "mib"), f(acc.get("max_abs"), "err"), f(acc.get("cosine"), "cos"),
                          f(acc.get("top1_agreement"), "top1"), "[green]ok[/]")
    footnotes = _footnotes(report.rows)
    if footnotes:
        table.add_section()
    for number, backends in enumerate(footnotes.values(), 1):
        for b in backends:
            if b in shown_missing:
                continue
            shown_missing.add(b)
            cases = [r for r in report.rows if r.label == b]
            status = cases[0].status
            color = "yellow" if status == "skipped" else "red"
            table.add_row(b, "all", "all", "-", "-", "-", "-", "-", "-", "-", "-", "-",
                          f"[{color}]{status} [{number}][/]")
    return table


def _res(resolution) -> str:
    h, w = resolution
    return str(h) if h == w else f"{h}x{w}"


def _footnotes(rows) -> dict[str, list[str]]:
    """reason -> backends, for backends with no measured case (a backend that failed only in some
    cases keeps a row per failed case in --json)."""
    measured = {r.label for r in rows if r.ok}
    notes: dict[str, list[str]] = {}
    for r in rows:
        if not r.ok and r.label not in measured:
            names = notes.setdefault(r.status_text, [])
            if r.label not in names:
                names.append(r.label)
    return notes


def _print_notes(report, out: Console) -> None:
    """Footnotes of the table and the polygraphy command lines on stdout; measurement notes on stderr."""
    for number, (text, backends) in enumerate(_footnotes(report.rows).items(), 1):
        out.print(f"[{number}] {', '.join(backends)}: {text}", highlight=False, markup=False, soft_wrap=True)
    measured = {r.label for r in report.rows if r.ok}
    for r in report.rows:
        if not r.ok and r.label in measured:
            out.print(f"{r.label} {_res(r.resolution)} batch {r.batch}: {r.status_text}", highlight=False,
                      markup=False, soft_wrap=True)
    if report.polygraphy:
        first = report.polygraphy[0]
        res = "x".join(map(str, first["resolution"]))
        out.print(f"Reproduce a comparison with polygraphy ({res}, batch {first['batch']}; against the PyTorch "
                  "outputs this run saved):", highlight=False, soft_wrap=True)
        for name in ("onnxruntime-cpu", "tensorrt fp16"):
            out.print(f"  {first['commands'][name]}", highlight=False, soft_wrap=True, markup=False)
        out.print("  (every resolution and batch, TensorRT fp32 and the function form: 'polygraphy' in --json)",
                  highlight=False, soft_wrap=True)
    for m in sorted({r.memory_method for r in report.rows if r.ok and r.memory_method}):
        say(f"peak MiB: {m}", style="dim")
    for backend, note in sorted({(r.label, n) for r in report.rows for n in r.notes}):
        say(f"{backend}: {note}", style="dim")


def register(app: typer.Typer) -> None:
    app.command("bench")(one_line_errors(bench_command))
