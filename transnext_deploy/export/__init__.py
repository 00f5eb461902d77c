"""Export: PyTorch TransNeXt -> validated ONNX artifacts, one directory per resolution.

Each artifact directory holds
- `model.onnx`: standard ONNX ops only (opset >= 17, dynamic batch, static spatial size);
- `model.aa_plugin.onnx`: every aggregated-attention core replaced by one `TransNeXtAggregatedAttention`
  node (what TensorRT's parser maps to the plugin; any TensorRT 10.x, JetPack 6's 10.3 included);
- `model.aa_function.onnx`: the same nodes, each backed by its standard-op decomposition as an ONNX
  local function (TensorRT >= 10.7 takes the plugin when it is loaded; onnxruntime inlines the body);
- `validation.json`: every graph run against the PyTorch model on several inputs;
- `manifest.json`: what was exported, from what, with which tools, sha256 of every file, and the
  `trtexec` / `polygraphy` command lines that load it.

A directory is assembled under a temporary name and renamed into place only when every check
passed, so a failed export leaves nothing that looks complete.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..artifacts import (
    MANIFEST_FILE,
    VALIDATION_FILE,
    artifact_name,
    export_steps,
    graph_file,
)

from ..files import publish_directory, sha256sum
from ..engine import EngineError, EnginePlan, build_engines_for_artifact, plan_engines
from ..compare import Tolerance
from ..errors import InvalidArgumentError
from ..models import create_model
from ..models.checkpoint import load_checkpoint, resolve_checkpoint
from ..models.transnext import AggregatedAttention, TransNeXt
from ..progress import Progress, no_progress
from .manifest import manifest
from .options import (
    DEFAULT_ATOL,
    DEFAULT_OPSET,
    DEFAULT_RTOL,
    MIN_OPSET,
    ArtifactResult,
    ExportError,
    ExportOptions,
    check_options,
)
from .functions import function_form
from .precision import to_fp16
from .rewrite import fused_model
from .trace import check_model, export_standard, output_names, save
from .validate import describe_failure, validate, validation_inputs


def build_model(options: ExportOptions, resolution: tuple[int, int]) -> tuple[TransNeXt, dict]:
    """The PyTorch reference for one resolution, with its weights; returns (model, weights info)."""
    torch.manual_seed(options.seed)  # random weights (no checkpoint) are reproducible across processes
    try:
        model = create_model(options.variant, img_size=resolution, pretrain_size=options.pretrain_size,
                             backbone=options.mode == "backbone", position_bias=options.position_bias,
                             fixed_pool_size=options.fixed_pool_size)
    except InvalidArgumentError as exc:
        raise ExportError(f"cannot build transnext_{options.variant} for {resolution[0]}x{resolution[1]}: {exc}") \
            from None
    model.eval()
    if options.checkpoint is None:
        weights = {"source": "random", "seed": options.seed,
                   "note": "no checkpoint given: randomly initialised weights (structure and speed only)"}
    else:
        path = resolve_checkpoint(options.checkpoint, options.variant)
        report = load_checkpoint(model, path)
        weights = {"source": str(Path(path).resolve()), "sha256": sha256sum(path), "ignored_keys": report.ignored}
    return model, weights


def _make_output_dir(output_dir: Path) -> list[Path]:
    """Create the output directory; returns the directories this created, outermost first."""
    created = []
    for directory in (*reversed(output_dir.absolute().parents), output_dir.absolute()):
        if not directory.exists():
            created.append(directory)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_empty(created)
        raise ExportError(f"cannot create output directory {output_dir}: {exc.strerror or exc}") from None
    return created


def _remove_empty(created: list[Path]) -> None:
    """Remove the directories an export created, innermost first, as long as they are empty: a
    failed export leaves nothing behind, and never removes what it did not write."""
    for directory in reversed(created):
        try:
            directory.rmdir()
        except OSError:
            return


def export_resolution(options: ExportOptions, resolution: tuple[int, int],
                      progress: Progress = no_progress,
                      engines: EnginePlan = EnginePlan()) -> ArtifactResult:
    """Export, validate and publish one resolution (options as check_options returns them), then
    build the planned engines. Reports exactly the steps of export_steps(options.precisions,
    engines.precisions), each as `<H>x<W>: <step>` advancing by 1."""
    start = time.perf_counter()
    output_dir = Path(options.output_dir)
    final = output_dir / artifact_name(options.variant, options.mode, resolution, options.fixed_pool_size)
    steps = iter(export_steps(options.precisions))
    label = f"{resolution[0]}x{resolution[1]}"

    def step(description: str) -> None:
        progress(f"{label}: {description}", advance=1)

    step(next(steps))  # building the PyTorch model
    model, weights = build_model(options, resolution)
    expected = sum(isinstance(m, AggregatedAttention) for m in model.modules())
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=output_dir))
    except OSError as exc:
        raise ExportError(f"cannot write in {output_dir}: {exc.strerror or exc}") from None
    try:
        step(next(steps))  # tracing to standard ONNX
        standard = export_standard(model, resolution, options.opset)
        written = [_write(standard, "fp32", "standard", staging)]
        step(next(steps))  # fusing aggregated attention
        fused, matches = fused_model(standard, expected=expected)
        written.append(_write(fused, "fp32", "plugin", staging))
        step(next(steps))  # attaching the local function
        written.append(_write(function_form(fused), "fp32", "function", staging))
        if "fp16" in options.precisions:
            step(next(steps))  # writing the fp16 graphs
            written += _write_fp16_graphs(standard, fused, staging)
        del standard, fused
        step(next(steps))  # validating against PyTorch
        report = validate(model, {name: staging / name for name in written}, resolution,
                          Tolerance(options.atol, options.rtol), options.seed, options.threads)
        (staging / VALIDATION_FILE).write_text(json.dumps(report, indent=2))
        if not report["passed"]:
            raise ExportError(f"{final.name}: {describe_failure(report)}")
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest(model, options, resolution, weights, matches,
                                                                staging), indent=2))
        publish_directory(staging, final)
    except OSError as exc:  # disk full, a directory removed underneath: the user's output directory
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportError(f"{final.name}: cannot write {exc.filename or output_dir}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    notes = [weights["note"]] if "note" in weights else []
    notes += [f"{name} not run on the CPU: {reason}" for name, reason in report["skipped"].items()]
    built: list[Path] = []
    precisions = [p for p in engines.precisions if p in options.precisions]  # as export_steps counts them
    if precisions:
        try:
            built = build_engines_for_artifact(final, precisions,
                                               progress=lambda text, **_: step(text))
        except EngineError as exc:
            raise ExportError(f"{final.name}: the ONNX artifacts are valid, but the TensorRT engine build failed: "
                              f"{exc}") from None
    elif engines.skipped:
        notes.append(engines.skipped)
    files = {p.name: p.stat().st_size for p in sorted(final.iterdir())}
    return ArtifactResult(str(final), resolution, files, len(matches), report, round(time.perf_counter() - start, 1),
                          engines=[str(p) for p in built], notes=notes)


def _write(proto, precision: str, kind: str, staging: Path) -> str:
    """Check a graph and save it under its file name (artifacts.graph_file); returns the name."""
    name = graph_file(kind, precision)
    check_model(proto, name)
    save(proto, staging / name)
    return name


def _write_fp16_graphs(standard, fused, staging: Path) -> list[str]:
    """The fp16 graphs from the fp32 ones (export.precision): standard and custom-op graphs converted,
    the function attached to the converted custom-op graph (its body follows its inputs' type)."""
    written = [_write(to_fp16(standard), "fp16", "standard", staging)]
    fused = to_fp16(fused)
    return written + [_write(fused, "fp16", "plugin", staging),
                      _write(function_form(fused), "fp16", "function", staging)]


def export(options: ExportOptions, progress: Progress = no_progress, engines: EnginePlan | None = None
           ) -> list[ArtifactResult]:
    """Export every requested resolution; raises ExportError on the first failure. `engines`: the
    TensorRT engines to build per resolution (default: plan_engines(), every precision when TensorRT,
    a GPU and the plugin are here); `progress` gets every step of export_steps(options.precisions,
    engines.precisions)."""
    options = check_options(options)
    engines = plan_engines() if engines is None else engines
    created = _make_output_dir(Path(options.output_dir))
    results = []
    try:
        for r in options.resolutions:
            results.append(export_resolution(options, r, progress, engines))
    except BaseException:
        _remove_empty(created)  # the output directory too, when this export made it and wrote nothing in it
        raise
    return results


def summary(results: list[ArtifactResult]) -> dict:
    """The JSON of `export --json`; `passed` is true for every artifact that exists (a failed
    validation raises and leaves none)."""
    return {"artifacts": [asdict(r) | {"resolution": list(r.resolution), "passed": r.validation["passed"]}
                          for r in results]}


__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_OPSET",
    "DEFAULT_RTOL",
    "MIN_OPSET",
    "ArtifactResult",
    "ExportError",
    "ExportOptions",
    "build_model",
    "check_options",
    "export",
    "export_resolution",
    "export_standard",
    "output_names",
    "summary",
    "validation_inputs",
]
