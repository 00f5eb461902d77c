"""`transnext-deploy export`: the command over `transnext_deploy.export`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..compare import FP32_TOLERANCE
from . import options
from .app import StepProgress, note, one_line_errors, say, split_values


def export_command(
    size: options.Size,
    resolution: Annotated[Optional[list[str]], options.resolutions(  # noqa: UP007
        f"{options.TRAINING_SIZE}; one artifact directory each")] = None,
    pretrain_size: Optional[int] = typer.Option(  # noqa: UP007
        None, "--pretrain-size",
        help="Resolution the weights were pre-trained at; scales the position-bias coordinates. "
             "Default: the variant's training size (224 for the 384 fine-tuned weights too)."),
    checkpoint: Annotated[Optional[str], options.checkpoint(options.RANDOM_WEIGHTS)] = None,  # noqa: UP007
    mode: Annotated[str, options.mode("logits (1000 classes)")] = "classify",
    position_bias: str = typer.Option(
        "extrapolate", "--position-bias",
        help="extrapolate: position-bias MLP on the export grid; interpolate: on the trained grid, resized."),
    fixed_pool_size: options.FixedPoolSize = None,
    opset: int = typer.Option(17, "--opset", help="ONNX opset (>= 17)."),
    output: Path = typer.Option(Path("artifacts"), "--output", "-o",  # noqa: B008
                                help="Directory that receives one sub-directory per resolution."),
    atol: Optional[float] = typer.Option(  # noqa: UP007
        None, "--atol",
        help="Absolute tolerance: every output element must satisfy |onnx - pytorch| <= atol + rtol * |pytorch| "
             f"(numpy.allclose, polygraphy). Default: {FP32_TOLERANCE.atol:g}, from measured float32 noise "
             "(README, Export)."),
    rtol: Optional[float] = typer.Option(  # noqa: UP007
        None, "--rtol", help=f"Relative tolerance, see --atol. Default: {FP32_TOLERANCE.rtol:g}."),
    precision: options.GraphPrecisions = None,
    threads: options.ValidationThreads = 2,
    json_output: Annotated[bool, options.json_flag("a summary of the artifacts")] = False,
) -> None:
    """Export TransNeXt to ONNX, fuse aggregated attention into custom nodes, validate against PyTorch.

    Writes, per resolution, model.onnx (standard ops), model.aa_plugin.onnx (custom nodes: TensorRT with
    the plugin, onnxruntime with the host library), model.aa_function.onnx (the custom nodes backed by
    one local function: any runtime inlines it), each also in fp16 (model.fp16.onnx...), then
    validation.json and manifest.json. Exits non-zero, leaving no partial directory, when an output
    element of a graph is further from PyTorch than atol + rtol * |pytorch| (fp16 graphs: their own
    tolerance); validation.json records both and the worst element. Without a host library (an install
    with no compiler) the custom-op graphs' CPU run is skipped, with the reason in validation.json.

    Where TensorRT, a CUDA GPU and the plugin library are present it also builds fp32 and fp16
    engines of the custom-op graphs; otherwise it says why it skipped them.
    """
    from ..artifacts import PRECISIONS, export_steps, graph_precision
    from ..engine import plan_engines
    from ..export import ExportOptions, check_options, export, summary
    from ..models.config import MODE, POSITION_BIAS, check_fixed_pool_size
    from ..resolution import parse_resolution

    options = check_options(ExportOptions(
        variant=size, resolutions=[parse_resolution(r) for r in split_values(resolution or [])],
        mode=MODE.parse(mode, "--mode"),
        pretrain_size=pretrain_size, checkpoint=checkpoint, opset=opset, output_dir=output,
        position_bias=POSITION_BIAS.parse(position_bias, "--position-bias"),
        fixed_pool_size=check_fixed_pool_size(fixed_pool_size, "--fixed-pool-size"),
        atol=FP32_TOLERANCE.atol if atol is None else atol, rtol=FP32_TOLERANCE.rtol if rtol is None else rtol,
        threads=threads, precisions=split_values(precision) if precision else PRECISIONS))
    engines = plan_engines()
    total = len(options.resolutions) * len(export_steps(options.precisions, engines.precisions))
    with StepProgress(f"export transnext_{options.variant}", total) as progress:
        results = export(options, engines=engines, progress=progress.update)
    for r in results:
        for text in r.notes:
            note(text)
        checks = []
        for precision in options.precisions:  # each precision against its own tolerance
            ran = [g for name, g in r.validation["graphs"].items()
                   if g["passed"] is not None and graph_precision(name) == precision]
            if ran:
                worst = max(ran, key=lambda g: g["worst"]["ratio"])
                checks.append(f"{precision} max-abs {max(g['max_abs'] for g in ran):.2e} "
                              f"({worst['worst']['ratio']:.2f}x of atol {worst['atol']:g} + rtol {worst['rtol']:g} * |b| "
                              "at the worst element)")
        say(f"{r.directory}: {r.blocks_fused} fused blocks, vs PyTorch: {'; '.join(checks)}, "
            f"{sum(r.files.values()) / 1e6:.1f} MB, {r.seconds:.0f} s", label="ok", style="green")
    if json_output:
        typer.echo(json.dumps(summary(results), indent=2))


def register(app: typer.Typer) -> None:
    app.command("export")(one_line_errors(export_command))
