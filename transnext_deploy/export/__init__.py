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

import io
import json
import math
import os
import platform
import shlex
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
import torch

from .. import __version__
from ..artifacts import (
    BATCH_PROFILE,
    FUNCTION_FILE,
    GRAPH_FILES,
    INPUT_NAME,
    MANIFEST_FILE,
    PLUGIN_ENV,
    PLUGIN_FILE,
    PLUGIN_LIBRARY,
    STANDARD_FILE,
    VALIDATION_FILE,
    artifact_name,
    engine_file_name,
    export_steps,
    normalize_images,
    sha256sum,
)
from ..backends.onnxrt import OrtCpuBackend, host_library_problem
from ..backends.pytorch import TorchBackend
from ..models.checkpoint import check_checkpoint_option, load_checkpoint, resolve_checkpoint
from ..engine import EngineError, EnginePlan, build_engines_for_artifact, plan_engines
from ..errors import InvalidArgumentError, TransNeXtDeployError
from ..models import VARIANTS, create_model, resolve_variant
from ..models.config import MODE, POSITION_BIAS, check_fixed_pool_size, check_input_size, check_pretrain_size
from ..models.transnext import AggregatedAttention, TransNeXt
from ..ops.contract import OP_DOMAIN, OP_NAME, OP_VERSION
from ..progress import Progress, no_progress
from ..resolution import pair
from .rewrite import function_form, fused_model, overload_name
from ..compare import FP32_TOLERANCE, Tolerance, allclose_check, error_stats, top1_agreement

DEFAULT_OPSET = 17
MIN_OPSET = 17
# |onnx - pytorch| <= atol + rtol * |pytorch| per element, fp32 (how they were chosen: validation.py)
DEFAULT_ATOL = FP32_TOLERANCE.atol
DEFAULT_RTOL = FP32_TOLERANCE.rtol
# Largest model a single protobuf can hold; past it the weights go to an external data file.
PROTOBUF_LIMIT = 2**31 - 1
# Next to the manifest's command lines: what they assume.
COMMANDS_NOTE = (f"Run these from this artifact directory (the file names are relative to it), with ${PLUGIN_ENV} set "
                 f"to the path of {PLUGIN_LIBRARY} (`transnext-deploy build-plugin --target plugin`); "
                 "trtexec and polygraphy come with TensorRT. Arguments are quoted for sh, bash and zsh.")


class ExportError(TransNeXtDeployError):
    """An export that cannot be done or did not validate; the message is one line."""


@dataclass
class ExportOptions:
    variant: str
    resolutions: Sequence[int | tuple[int, int]] = ()
    mode: str = "classify"  # or "backbone"
    pretrain_size: int | None = None
    checkpoint: str | None = None  # path, "official", or None for random weights
    opset: int = DEFAULT_OPSET
    output_dir: str | os.PathLike = "artifacts"
    position_bias: str = "extrapolate"
    fixed_pool_size: int | None = None  # linear inference mode: every aggregated-attention stage pools to N x N
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    seed: int = 0
    threads: int = 2


@dataclass
class ArtifactResult:
    directory: str
    resolution: tuple[int, int]
    files: dict[str, int]  # name -> bytes
    blocks_fused: int
    validation: dict
    seconds: float = 0.0
    engines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# model and inputs


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


def validation_inputs(resolution: tuple[int, int], seed: int) -> dict[str, np.ndarray]:
    """Named inputs: random normal (batch 2), ImageNet-normalised uniform noise, and a real photo
    when one ships with an installed package (matplotlib's sample data)."""
    g = np.random.default_rng(seed)
    h, w = resolution
    inputs = {
        "random_normal_batch2": g.standard_normal((2, 3, h, w)).astype(np.float32),
        "uniform_image": normalize_images(g.random((1, h, w, 3), dtype=np.float32)),
    }
    photo = _sample_photo(resolution)
    if photo is not None:
        inputs["photo_grace_hopper"] = photo
    return inputs


def _sample_photo(resolution: tuple[int, int]) -> np.ndarray | None:
    try:
        from matplotlib import cbook
        from PIL import Image

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            image = Image.open(f).convert("RGB").resize((resolution[1], resolution[0]), Image.BILINEAR)
    except Exception:  # noqa: BLE001 - the photo is a bonus input; its absence is reported, not fatal
        return None
    return normalize_images(np.asarray(image, dtype=np.float32)[None] / 255.0)


# ---------------------------------------------------------------------------------------------
# ONNX


def output_names(model: TransNeXt) -> list[str]:
    return [f"stage{i + 1}" for i in range(4)] if model.backbone else ["logits"]


def export_standard(model: TransNeXt, resolution: tuple[int, int], opset: int) -> onnx.ModelProto:
    """Trace the fast model into standard ONNX ops, fold small constants, check it."""
    import onnx_graphsurgeon as gs

    h, w = resolution
    model.geometry(h, w)  # build the per-resolution tables outside the trace
    names = output_names(model)
    dynamic = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, h, w),), buffer, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=names, dynamic_axes=dynamic)
    graph = gs.import_onnx(onnx.load_from_string(buffer.getvalue()))
    # Fold constants up to 1 MiB: shape arithmetic and reshaped parameters disappear, while the
    # position-bias MLPs, whose (heads, N, P) outputs grow with resolution^4, stay small subgraphs.
    graph.fold_constants(size_threshold=1 << 20).cleanup()
    fold_weight_views(graph)
    graph.cleanup().toposort()
    proto = gs.export_onnx(graph)
    proto.producer_name = "transnext-deploy"
    proto.producer_version = __version__
    return proto


def fold_weight_views(graph) -> int:
    """Fold Identity/Transpose of a constant whatever its size. A Linear applied twice (the `kv`
    projection of tokens and of pooled tokens) is traced as one weight plus an Identity or
    Transpose of it; past the general folding threshold that view would stay an op in front of
    its MatMul and hide the weight from TensorRT's and the rewrite's view of a Linear layer."""
    import onnx_graphsurgeon as gs

    folded = 0
    for node in graph.nodes:
        if node.op in ("Transpose", "Identity") and node.outputs and isinstance(node.inputs[0], gs.Constant):
            values = node.inputs[0].values
            if node.op == "Transpose":
                values = np.transpose(values, node.attrs.get("perm"))
            out = node.outputs[0]
            constant = gs.Constant(out.name, np.ascontiguousarray(values))
            for consumer in list(out.outputs):
                for i, t in enumerate(consumer.inputs):
                    if t is out:
                        consumer.inputs[i] = constant
            graph.outputs = [constant if t is out else t for t in graph.outputs]
            node.outputs.clear()
            folded += 1
    return folded


def check_model(proto: onnx.ModelProto, what: str) -> None:
    try:
        if proto.ByteSize() < PROTOBUF_LIMIT:
            onnx.checker.check_model(proto, full_check=True)
        onnx.shape_inference.infer_shapes(proto, strict_mode=True, check_type=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{what} fails the ONNX checker: {str(exc).splitlines()[0]}") from None


def _save(proto: onnx.ModelProto, path: Path) -> None:
    if proto.ByteSize() >= PROTOBUF_LIMIT:
        onnx.save(proto, str(path), save_as_external_data=True, location=path.name + ".data")
    else:
        onnx.save(proto, str(path))


# ---------------------------------------------------------------------------------------------
# validation


def validate(model: TransNeXt, graphs: dict[str, Path], resolution: tuple[int, int], options: ExportOptions
             ) -> dict:
    """Run every graph on every validation input against PyTorch; each output element must satisfy
    |graph - pytorch| <= atol + rtol * |pytorch|. The custom-op graph is skipped, with the reason,
    when the host library it runs on is not available."""
    tolerance = Tolerance(options.atol, options.rtol)
    inputs = validation_inputs(resolution, options.seed)
    names = output_names(model)
    reference = TorchBackend(model)
    references = {label: reference(x) for label, x in inputs.items()}
    report = {"atol": tolerance.atol, "rtol": tolerance.rtol, "fixed_pool_size": model.fixed_pool_size,
              "rule": "|graph - pytorch| <= atol + rtol * |pytorch|, element-wise, every output",
              "inputs": list(inputs), "graphs": {}, "skipped": {}}
    for graph_name, path in graphs.items():
        if graph_name == PLUGIN_FILE:  # custom nodes without a function body: runs on the host library
            problem = host_library_problem()
            if problem is not None:
                report["graphs"][graph_name] = {"passed": None, "skipped": problem}
                report["skipped"][graph_name] = problem
                continue
        backend = OrtCpuBackend(path, threads=options.threads)
        per_input = {}
        worst = {"ratio": -1.0}
        max_abs = 0.0
        for label, x in inputs.items():
            got = backend(x)
            entry = {}
            for name, ref, out in zip(names, references[label], got):
                stats = error_stats(ref, out).as_dict()
                if not model.backbone:
                    stats["top1_agreement"] = top1_agreement(ref, out)
                element = allclose_check(ref, out, tolerance).as_dict()
                stats["worst"] = element
                entry[name] = stats
                max_abs = max(max_abs, stats["max_abs"]) if math.isfinite(stats["max_abs"]) else math.inf
                if element["ratio"] > worst["ratio"]:
                    worst = {"input": label, "output": name, **element}
            per_input[label] = entry
        report["graphs"][graph_name] = {"passed": worst["ratio"] <= 1.0, "max_abs": max_abs, "worst": worst,
                                        "inputs": per_input}
    ran = [g for g in report["graphs"].values() if g["passed"] is not None]
    report["passed"] = bool(ran) and all(g["passed"] for g in ran)
    return report


def describe_failure(report: dict) -> str:
    """One line: the graph, output and element furthest past its bound."""
    name, graph = max(((n, g) for n, g in report["graphs"].items() if g["passed"] is False),
                      key=lambda kv: kv[1]["worst"]["ratio"])
    w = graph["worst"]
    return (f"{name} differs from PyTorch beyond atol {report['atol']:g} + rtol {report['rtol']:g} * |b|: "
            f"{w['output']}{w['index']} on {w['input']}: |a-b| {w['abs_diff']:.3e} where |b| = {w['ref_abs']:.3e} "
            f"(allowed {w['allowed']:.3e}, {w['ratio']:.2f}x; max-abs {graph['max_abs']:.3e})")


# ---------------------------------------------------------------------------------------------
# manifest


def _tool_versions() -> dict[str, str]:
    versions = {"transnext_deploy": __version__, "python": platform.python_version()}
    for module in ("torch", "onnx", "onnxruntime", "onnx_graphsurgeon", "polygraphy", "onnxruntime_extensions",
                   "tensorrt"):
        try:
            versions[module] = str(__import__(module).__version__)
        except Exception:  # noqa: BLE001
            versions[module] = "not installed"
    return versions


def _commands(resolution: tuple[int, int], tolerance: Tolerance) -> dict[str, str]:
    h, w = resolution
    lo, opt, hi = BATCH_PROFILE
    shapes = (f"--minShapes={INPUT_NAME}:{lo}x3x{h}x{w} --optShapes={INPUT_NAME}:{opt}x3x{h}x{w} "
              f"--maxShapes={INPUT_NAME}:{hi}x3x{h}x{w}")
    plugin = f"\"${PLUGIN_ENV}\""  # path of libtransnext_aa_plugin.so (`transnext-deploy build-plugin`)

    def shape(batch: int) -> str:  # quoted: zsh would expand the brackets as a glob and stop
        return shlex.quote(f"{INPUT_NAME}:[{batch},3,{h},{w}]")

    poly_shapes = (f"--trt-min-shapes {shape(lo)} --trt-opt-shapes {shape(opt)} --trt-max-shapes {shape(hi)} "
                   f"--input-shapes {shape(1)}")

    def trtexec(graph: str, plugins: str) -> str:
        return (f"trtexec --onnx={graph}{plugins} {shapes} --fp16 "
                f"--saveEngine={engine_file_name(graph, 'fp16')}")

    return {
        "trtexec_standard": trtexec(STANDARD_FILE, ""),
        "trtexec_plugin": trtexec(PLUGIN_FILE, f" --staticPlugins={plugin}"),
        "trtexec_function": trtexec(FUNCTION_FILE, f" --staticPlugins={plugin}"),
        "polygraphy_compare": f"polygraphy run {FUNCTION_FILE} --trt --onnxrt --plugins {plugin} {poly_shapes} "
                              f"--atol {tolerance.atol:g} --rtol {tolerance.rtol:g}",
        "polygraphy_plugin": f"polygraphy run {PLUGIN_FILE} --trt --plugins {plugin} {poly_shapes}",
    }


def _manifest(model: TransNeXt, options: ExportOptions, resolution, weights, matches, directory: Path) -> dict:
    h, w = resolution
    names = output_names(model)
    if model.backbone:
        from ..models.position_bias import stage_grids

        grids = stage_grids(h, w)
        outputs = {n: ["batch", model.config.embed_dims[i], *grids[i]] for i, n in enumerate(names)}
    else:
        outputs = {"logits": ["batch", model.head.out_features]}
    overloads = sorted({overload_name(m.attrs, m.head_dim) for m in matches})
    files = {}
    for path in sorted(directory.iterdir()):
        if path.name != MANIFEST_FILE:
            files[path.name] = {"bytes": path.stat().st_size, "sha256": sha256sum(path)}
    return {
        "variant": model.name,
        "resolution": [h, w],
        "pretrain_size": list(model.pretrain_size),
        "mode": options.mode,
        "position_bias": options.position_bias,
        "fixed_pool_size": model.fixed_pool_size,  # null: pool grids (H // sr, W // sr)
        "opset": options.opset,
        "weights": weights,
        "inputs": {INPUT_NAME: ["batch", 3, h, w]},
        "outputs": outputs,
        "custom_op": {
            "name": OP_NAME, "domain": OP_DOMAIN, "version": OP_VERSION, "nodes": len(matches),
            "function_overloads": overloads,
            "blocks": [m.attrs for m in matches],
        },
        "artifacts": {
            STANDARD_FILE: "standard ONNX ops (onnxruntime, TensorRT without the plugin)",
            PLUGIN_FILE: "custom nodes only: TensorRT 10.x (JetPack 6 = 10.3) with the plugin library loaded",
            FUNCTION_FILE: "custom nodes with local-function bodies: TensorRT >= 10.7 with the plugin; "
                           "onnxruntime and others inline the body",
        },
        "files": files,
        "tool_versions": _tool_versions(),
        "commands_note": COMMANDS_NOTE,
        "commands": _commands(resolution, Tolerance(options.atol, options.rtol)),
    }


# ---------------------------------------------------------------------------------------------
# the command


def _check_output_dir(output_dir: Path) -> None:
    """Refuse an output directory that cannot be created or written, creating nothing (export()
    creates it, and removes what it created when the export fails)."""
    if output_dir.exists() and not output_dir.is_dir():
        raise ExportError(f"output directory {output_dir} is a file")
    existing = output_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ExportError(f"cannot create output directory {output_dir}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == output_dir else f"cannot be created: {existing} is not writable"
        raise ExportError(f"output directory {output_dir} {what}")


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


def _publish(staging: Path, final: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; the artifact is not
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)


def export_resolution(options: ExportOptions, resolution: tuple[int, int],
                      progress: Progress = no_progress,
                      engines: EnginePlan = EnginePlan()) -> ArtifactResult:
    """Export, validate and publish one resolution (options as check_options returns them), then
    build the planned engines. Reports exactly the steps of export_steps(engines.precisions), each
    as `<H>x<W>: <step>` advancing by 1."""
    start = time.perf_counter()
    output_dir = Path(options.output_dir)
    final = output_dir / artifact_name(options.variant, options.mode, resolution, options.fixed_pool_size)
    steps = iter(export_steps())
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
        check_model(standard, STANDARD_FILE)
        _save(standard, staging / STANDARD_FILE)
        step(next(steps))  # fusing aggregated attention
        fused, matches = fused_model(standard, expected=expected)
        check_model(fused, PLUGIN_FILE)
        _save(fused, staging / PLUGIN_FILE)
        step(next(steps))  # attaching local functions
        with_functions = function_form(fused, matches, options.opset)
        check_model(with_functions, FUNCTION_FILE)
        _save(with_functions, staging / FUNCTION_FILE)
        del standard, fused, with_functions
        step(next(steps))  # validating against PyTorch
        report = validate(model, {name: staging / name for name in GRAPH_FILES}, resolution, options)
        (staging / VALIDATION_FILE).write_text(json.dumps(report, indent=2))
        if not report["passed"]:
            raise ExportError(f"{final.name}: {describe_failure(report)}")
        manifest = _manifest(model, options, resolution, weights, matches, staging)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        _publish(staging, final)
    except OSError as exc:  # disk full, a directory removed underneath: the user's output directory
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportError(f"{final.name}: cannot write {exc.filename or output_dir}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    notes = [weights["note"]] if "note" in weights else []
    notes += [f"{name} not run on the CPU: {reason}" for name, reason in report["skipped"].items()]
    built: list[Path] = []
    if engines.precisions:
        try:
            built = build_engines_for_artifact(final, engines.precisions,
                                               progress=lambda text, **_: step(text))
        except EngineError as exc:
            raise ExportError(f"{final.name}: the ONNX artifacts are valid, but the TensorRT engine build failed: "
                              f"{exc}") from None
    elif engines.skipped:
        notes.append(engines.skipped)
    files = {p.name: p.stat().st_size for p in sorted(final.iterdir())}
    return ArtifactResult(str(final), resolution, files, len(matches), report, round(time.perf_counter() - start, 1),
                          engines=[str(p) for p in built], notes=notes)


def check_options(options: ExportOptions) -> ExportOptions:
    """Refuse bad options before any work (no model is built); returns them normalised: the variant
    without its prefix, the resolutions as (height, width) pairs (default: the training size)."""
    try:
        variant = resolve_variant(options.variant, "size")
        mode = MODE.parse(options.mode)
        position_bias = POSITION_BIAS.parse(options.position_bias)
        fixed_pool_size = check_fixed_pool_size(options.fixed_pool_size)
        Tolerance(options.atol, options.rtol)
        if options.pretrain_size is not None:
            check_pretrain_size(options.pretrain_size)
    except InvalidArgumentError as exc:
        raise ExportError(str(exc)) from None
    if options.opset < MIN_OPSET:
        raise ExportError(f"opset {options.opset} is too old: LayerNormalization needs opset >= {MIN_OPSET}")
    check_checkpoint_option(options.checkpoint)
    config = VARIANTS[variant]
    resolutions = list(dict.fromkeys(pair(r) for r in options.resolutions)) or [pair(config.train_size)]
    for h, w in resolutions:
        try:
            check_input_size(config, h, w, variant, fixed_pool_size)
        except InvalidArgumentError as exc:
            raise ExportError(f"unsupported resolution {h}x{w}: {exc}") from None
    _check_output_dir(Path(options.output_dir))
    return replace(options, variant=variant, mode=mode, position_bias=position_bias, resolutions=resolutions)


def export(options: ExportOptions, progress: Progress = no_progress, engines: EnginePlan | None = None
           ) -> list[ArtifactResult]:
    """Export every requested resolution; raises ExportError on the first failure. `engines`: the
    TensorRT engines to build per resolution (default: plan_engines(), every precision when TensorRT,
    a GPU and the plugin are here); `progress` gets every step of export_steps(engines.precisions)."""
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
