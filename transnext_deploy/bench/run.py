"""Latency, throughput, memory and accuracy of every backend, side by side, at several resolutions.

`run_bench(BenchOptions(...))` answers "how much faster is it, and is it still right?" for one
TransNeXt variant. For each resolution every backend is loaded; for each batch size each backend
runs its warm-up passes, then the timed passes are interleaved across the backends, round by round
in alternating order (ABBA), so that other load on the machine hits all of them alike, with a
short pause (`settle`) before each timed call so no runtime's idle workers spin into the next
backend's time. Rounds stop
at `runs`, or once `min_runs` are done and `max_seconds` per backend have passed. Reported per
backend x resolution x batch: latency p50/p90/p99 (and every pass in JSON), throughput (batch /
mean latency), peak memory, and the error against the reference: PyTorch with the published
("plain") attention, fp32, on the CPU, same weights, same input (max-abs, cosine, top-1 agreement).

Backends (`BACKENDS`):
  torch-plain     eager PyTorch, published attention (on the CPU this *is* the reference)
  torch-fast      eager PyTorch, the fused op's decomposition (what the export traces)
  torch-fused     eager PyTorch with the fused op itself (torch.ops.transnext.aggregated_attention):
                  the plugin's CUDA kernel on a GPU (libtransnext_aa_cuda.so, from `build-plugin
                  --target cuda`), its host library on the CPU
  torch-compile   the fast model under torch.compile (inductor); opt-in on the CPU, where one
                  compilation takes minutes
  ort-cpu         onnxruntime CPU, exported standard-op graph (model.onnx)
  ort-cpu-custom  onnxruntime CPU, custom-op graph (model.aa_plugin.onnx) running the plugin's host
                  arithmetic through onnxruntime-extensions
  ort-cuda        onnxruntime CUDA execution provider, standard graph
  tensorrt-fp32   TensorRT engine of the custom-op graph with the plugin, fp32 (TF32 off)
  tensorrt-fp16   the same, fp16
A backend this machine lacks gives rows that say "not available: <reason>"; none vanish. With
device="cuda" on a machine where torch sees no GPU, the torch-* rows say so and the others run.

Artifacts come from `export.export()` into a work directory (default: the user cache) and are
reused while their manifest matches (variant, resolution, weights, opset) and the export code is
unchanged (bench_artifacts.py). Without a checkpoint, a seeded random checkpoint is written first, so the reference and
every artifact hold the same weights across processes and runs.

This module plans and orchestrates; the backends are those of `transnext_deploy.backends`, the
rows and the report are in bench_report.py and the figure in bench_plot.py.

Memory (be clear what it is):
  CPU backends: peak resident-set growth of this process during the backend's warm-up passes
    (its first call included), over the resident set just before them (VmHWM reset through
    /proc/self/clear_refs after returning free heap to the OS). It counts activations,
    onnxruntime's arena and caches built on the first call; not the weights, resident before.
  torch on CUDA: torch allocator peak over the allocated memory before the passes.
  TensorRT: the execution context's scratch memory (engine.device_memory_size) plus I/O tensors.
  onnxruntime CUDA: the driver's used-memory growth (cudaMemGetInfo through torch), when torch has CUDA.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts import PLUGIN_FILE, STANDARD_FILE, export_steps
from ..backends.base import Backend, NoProbe
from ..backends.pytorch import TorchBackend
from .work import (
    bench_input,
    default_work_dir,
    ensure_artifacts,
    polygraphy_commands,
    random_checkpoint,
    save_polygraphy_data,
)
from .report import BenchError, BenchReport, BenchRow, machine_info
from ..errors import InvalidArgumentError, one_line
from ..machine import available_cpus
from ..memory import release_free_memory
from ..models import VARIANTS, resolve_variant
from ..models.config import check_input_size
from ..resolution import pair

BACKENDS = ("torch-plain", "torch-fast", "torch-fused", "torch-compile", "ort-cpu", "ort-cpu-custom", "ort-cuda",
            "tensorrt-fp32", "tensorrt-fp16")
TORCH_BACKENDS = ("torch-plain", "torch-fast", "torch-fused", "torch-compile")  # run where --device says
CPU_OPT_IN = ("torch-compile",)  # skipped on the CPU unless asked for by name
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_VARIANT = "tiny"
DEFAULT_RESOLUTIONS = (224, 384)
DEFAULT_BATCHES = (1,)


@dataclass
class BenchOptions:
    variant: str = DEFAULT_VARIANT
    resolutions: Sequence[int | tuple[int, int]] = DEFAULT_RESOLUTIONS
    batches: Sequence[int] = DEFAULT_BATCHES
    backends: Sequence[str] | None = None  # None: all (torch-compile skipped on the CPU unless named)
    runs: int = 10
    warmup: int = 1
    max_seconds: float = 5.0  # per backend and case: stop the rounds after this long once min_runs are done
    min_runs: int = 3
    threads: int | None = None  # None: the CPUs this process may use
    device: str = "auto"  # where the torch backends run: auto, cpu, cuda
    checkpoint: str | None = None  # path, "official", or None for seeded random weights
    work_dir: str | os.PathLike | None = None  # artifacts + polygraphy data; None: user cache
    plugin_library: str | os.PathLike | None = None
    seed: int = 0
    memory: bool = True


Progress = Callable[[str, float, "float | None"], None]  # (description, completed, total or None: unknown)


# ---------------------------------------------------------------------------------------------
# options


@dataclass
class _Plan:
    variant: str
    resolutions: list[tuple[int, int]]
    batches: list[int]
    backends: list[str]
    explicit: set[str]
    threads: int
    device: str  # cpu or cuda
    device_problem: str | None = None  # why the torch backends cannot run on `device` (cuda without a GPU)


def check_options(options: BenchOptions) -> _Plan:
    """Refuse bad options before any work (no model is built)."""
    try:
        variant = resolve_variant(options.variant, "size")
    except InvalidArgumentError as exc:
        raise BenchError(str(exc)) from None
    if options.backends is None:
        backends, explicit = list(BACKENDS), set()
    else:
        backends = []
        for b in options.backends:
            if b == "all":
                backends += [x for x in BACKENDS if x not in backends]
            elif b not in BACKENDS:
                raise BenchError(f"unknown backend {b!r}; choose from {', '.join(BACKENDS)} (or all)")
            elif b not in backends:
                backends.append(b)
        explicit = {b for b in options.backends if b != "all"}
        backends.sort(key=BACKENDS.index)
        if not backends:
            raise BenchError("no backend given")
    resolutions = [pair(r) for r in options.resolutions]
    if not resolutions:
        raise BenchError("no resolution given")
    for h, w in resolutions:
        if h < 1 or w < 1:
            raise BenchError(f"resolution {h}x{w} must be positive")
        try:
            check_input_size(VARIANTS[variant], h, w, variant)
        except InvalidArgumentError as exc:
            raise BenchError(f"unsupported resolution {h}x{w}: {exc}") from None
    resolutions = list(dict.fromkeys(resolutions))
    batches = list(dict.fromkeys(int(b) for b in options.batches))
    if not batches or min(batches) < 1:
        raise BenchError(f"batch sizes must be >= 1, got {list(options.batches)}")
    if options.runs < 1:
        raise BenchError(f"runs must be >= 1, got {options.runs}")
    if options.warmup < 0:
        raise BenchError(f"warmup must be >= 0, got {options.warmup}")
    if options.min_runs < 1:
        raise BenchError(f"min_runs must be >= 1, got {options.min_runs}")
    if not options.max_seconds > 0:
        raise BenchError(f"max_seconds must be > 0, got {options.max_seconds}")
    threads = options.threads if options.threads is not None else available_cpus()
    if threads < 1:
        raise BenchError(f"threads must be >= 1, got {threads}")
    device, device_problem = _torch_device(options.device)
    if options.checkpoint not in (None, "official") and not Path(options.checkpoint).is_file():
        raise BenchError(f"checkpoint not found: {options.checkpoint}")
    return _Plan(variant, resolutions, batches, backends, explicit, threads, device, device_problem)


def _torch_device(device: str) -> tuple[str, str | None]:
    """(device, None), or ("cuda", reason) when CUDA is asked for and torch sees no GPU: the torch
    backends then get "not available" rows with that reason."""
    import torch

    if device not in DEVICES:
        raise BenchError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        return device, f"no CUDA device: torch {torch.__version__} ({build}) sees no CUDA GPU"
    if device == "auto":
        return ("cuda" if torch.cuda.is_available() else "cpu"), None
    return device, None


# ---------------------------------------------------------------------------------------------
# availability


def backend_availability(backends: Sequence[str], device: str, explicit: set[str] | None = None,
                         plugin_library: str | os.PathLike | None = None, threads: int | None = None,
                         device_problem: str | None = None) -> dict[str, tuple[str, str] | None]:
    """None for a backend that can run here, else (status, reason). `device_problem`: why the torch
    backends cannot run on `device`."""
    explicit = set(BACKENDS) if explicit is None else explicit
    result: dict[str, tuple[str, str] | None] = {}
    trt_status = None
    for b in backends:
        reason = None
        if b in TORCH_BACKENDS and device_problem:
            result[b] = ("not available", device_problem)
            continue
        if b in CPU_OPT_IN and device == "cpu" and b not in explicit:
            result[b] = ("skipped", ("opt-in on the CPU, where compiling one shape takes minutes; "
                                     "ask for it with --backend torch-compile"))
            continue
        if b == "torch-fused":
            reason = _fused_op_problem(device)
        elif b == "ort-cpu-custom":
            from ..backends.onnxrt import custom_op_problem

            reason = custom_op_problem(threads)
        elif b == "ort-cuda":
            from ..backends.onnxrt import ort_cuda_problem

            reason = ort_cuda_problem()
        elif b.startswith("tensorrt-"):
            if trt_status is None:
                from ..engine import tensorrt_status

                trt_status = tensorrt_status(plugin_library)
            reason = None if trt_status.available else trt_status.reason
        result[b] = ("not available", reason) if reason else None
    return result


def _fused_op_problem(device: str) -> str | None:
    """On CUDA the op needs the kernel library; on the CPU it always runs (host library or decomposition)."""
    from ..ops.fused_op import implementation

    description = implementation(device)
    return description.removeprefix("not available: ") if description.startswith("not available") else None


# ---------------------------------------------------------------------------------------------
# timing


def _percentiles(times_ms: list[float]) -> dict:
    a = np.asarray(times_ms)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "min": float(a.min()),
            "max": float(a.max())}


# Pause before each timed call when backends alternate. PyTorch's OpenMP workers and onnxruntime's
# pool spin for a while after a call; without the pause they take CPU time from the next backend's
# call on a small machine (measured here on 2 cores: eager PyTorch 10-15% slower right after an
# onnxruntime call).
SETTLE_SECONDS = 0.05


def settle() -> None:
    """Let the worker threads of the previous runtime go idle before the next timed call."""
    time.sleep(SETTLE_SECONDS)


def _measure_case(loaded: dict[str, Backend], resolution: tuple[int, int], batch: int, case, plan: _Plan,
                  options: BenchOptions, tick: Callable[[str], None]) -> list[BenchRow]:
    """One resolution x batch for every loaded backend: per backend its warm-up passes (memory is
    measured around them), then timed passes interleaved across backends round by round, in
    alternating order (ABBA), so load from elsewhere on the machine hits every backend alike."""
    from ..compare import error_stats, top1_agreement

    x, reference = case
    rows: dict[str, BenchRow] = {}
    state: dict[str, dict] = {}
    for name, backend in loaded.items():
        row = rows[name] = BenchRow(name, resolution, batch, "ok", graph=backend.graph, warmup=options.warmup,
                                    device=_device_label(backend.device, plan.threads), notes=list(backend.notes))
        if name == "torch-plain" and backend.device == "cpu":
            row.notes.append("this is the reference")
        probe = backend.probe() if options.memory else NoProbe()
        row.memory_method = probe.method
        st = state[name] = {"backend": backend, "probe": probe, "times": [], "out": None, "first": None}
        try:
            st["prepared"] = backend.prepare(x)
            if options.warmup:
                probe.start()
                for i in range(options.warmup):
                    tick(f"{name} warm-up {i + 1}/{options.warmup}")
                    start = time.perf_counter()
                    st["out"] = backend.run(st["prepared"])
                    if st["first"] is None:
                        st["first"] = (time.perf_counter() - start) * 1000
                row.memory_mib = probe.stop()
        except Exception as exc:  # noqa: BLE001 - reported in the row, the other backends go on
            _fail(row, name, exc)
            del state[name]

    rounds = 0
    loop_start = time.perf_counter()
    while state and rounds < options.runs:
        order = list(state) if rounds % 2 == 0 else list(state)[::-1]
        for name in order:
            st = state[name]
            tick(f"round {rounds + 1}/{options.runs}: {name}")
            if len(state) > 1:
                settle()
            measure_memory = rounds == 0 and not options.warmup
            try:
                if measure_memory:
                    st["probe"].start()
                start = time.perf_counter()
                st["out"] = st["backend"].run(st["prepared"])
                elapsed = (time.perf_counter() - start) * 1000
                if measure_memory:
                    rows[name].memory_mib = st["probe"].stop()
            except Exception as exc:  # noqa: BLE001
                _fail(rows[name], name, exc)
                del state[name]
                continue
            st["times"].append(elapsed)
            if st["first"] is None:
                st["first"] = elapsed
        rounds += 1
        budget = options.max_seconds * max(1, len(state))
        if rounds >= options.min_runs and time.perf_counter() - loop_start > budget:
            break

    for name, st in state.items():
        row, times = rows[name], st["times"]
        output = st["backend"].to_numpy(st["out"])[0]
        try:
            stats = error_stats(reference, output).as_dict()
        except ValueError as exc:  # shape mismatch
            _fail(row, name, exc)
            continue
        stats["top1_agreement"] = top1_agreement(reference, output)
        row.accuracy = stats
        row.runs = len(times)
        row.first_call_ms = st["first"]
        row.latency_ms = _percentiles(times)
        row.times_ms = [round(t, 4) for t in times]
        row.throughput_img_s = batch * 1000.0 / row.latency_ms["mean"]
        if name == "torch-compile":
            row.notes = [f"first call, which compiles: {st['first'] / 1000:.1f} s"]
        if len(times) < options.runs:
            row.notes.append(f"{len(times)} of {options.runs} runs at {resolution[0]}x{resolution[1]}, batch {batch}: "
                             f"time budget reached ({options.max_seconds:g} s per backend)")
    return [rows[name] for name in loaded]


def _fail(row: BenchRow, name: str, exc: BaseException) -> None:
    row.status, row.reason = "failed", one_line(exc)
    row.memory_mib = None
    if name == "torch-compile":
        row.status, row.reason = "not available", "torch.compile failed: " + row.reason


# ---------------------------------------------------------------------------------------------
# the run


def run_bench(options: BenchOptions, progress: Progress | None = None) -> BenchReport:
    """Run the benchmark; every requested backend x resolution x batch gets a row."""
    import torch

    from .. import __version__
    from ..engine import plan_engines
    from ..export import ExportOptions, build_model

    started = time.perf_counter()
    plan = check_options(options)
    work_dir = Path(options.work_dir) if options.work_dir is not None else default_work_dir()
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot create work directory {work_dir}: {exc.strerror or exc}") from None
    report_progress = progress or (lambda description, completed, total: None)
    report_progress("checking which backends this machine has", 0, None)
    availability = backend_availability(plan.backends, plan.device, plan.explicit, options.plugin_library,
                                        plan.threads, plan.device_problem)
    runnable = [b for b in plan.backends if availability[b] is None]
    needs_artifacts = any(b.startswith(("ort-", "tensorrt-")) for b in runnable)

    engines = plan_engines(plugin_library=options.plugin_library) if needs_artifacts else None
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(plan.threads)
    n_res, n_batch = len(plan.resolutions), len(plan.batches)
    export_units = n_res * len(export_steps(engines.precisions)) if engines is not None else 0
    total = export_units + n_res * n_batch * (1 + len(plan.backends))
    done = 0.0

    def step(description: str, advance: float = 0.0) -> None:
        nonlocal done
        done += advance
        report_progress(description, done, total)

    try:
        if options.checkpoint is None:
            step("writing the seeded random checkpoint")
            checkpoint = random_checkpoint(plan.variant, options.seed, work_dir)
            weights_note = f"seeded random weights (seed {options.seed}): speed and agreement only, not accuracy"
        elif options.checkpoint == "official":
            from ..models.checkpoint import download_weights, official_weights

            checkpoint = download_weights(official_weights(plan.variant))
            weights_note = f"official weights {checkpoint.name}"
        else:
            checkpoint = Path(options.checkpoint)
            weights_note = f"checkpoint {checkpoint}"

        artifacts: dict[tuple[int, int], Path] = {}
        if needs_artifacts:
            exported = 0

            def on_export(resolution, what):
                nonlocal exported
                exported += 1
                step(f"export {resolution[0]}x{resolution[1]}: {what}", 1)

            step("checking exported artifacts")
            artifacts = ensure_artifacts(plan.variant, plan.resolutions, checkpoint, work_dir, plan.threads, on_export,
                                         engines)
            step("artifacts ready", export_units - exported)

        rows: list[BenchRow] = []
        poly: list[dict] = []
        export_options = ExportOptions(plan.variant, checkpoint=str(checkpoint))
        for resolution in plan.resolutions:
            label = f"{resolution[0]}x{resolution[1]}"
            fast, _ = build_model(export_options, resolution)
            plain = copy.deepcopy(fast).set_attention("plain")
            cases = {}
            for batch in plan.batches:
                step(f"{label} b{batch}: PyTorch reference (plain, fp32, CPU)")
                x = bench_input(resolution, batch, options.seed)
                reference = TorchBackend(plain)(x)[0]  # on the CPU, in float32, whatever --device says
                cases[batch] = (x, reference)
                if resolution in artifacts:
                    sub = work_dir / "polygraphy" / f"{artifacts[resolution].name}_b{batch}"
                    inputs, outputs = save_polygraphy_data(sub, x, reference)
                    poly.append({"resolution": list(resolution), "batch": batch, "inputs": str(inputs),
                                 "reference": str(outputs),
                                 "commands": polygraphy_commands(artifacts[resolution], inputs, outputs, batch,
                                                                 resolution)})
                step(f"{label} b{batch}: reference done", 1)

            loaded: dict[str, Backend] = {}
            try:
                for name in plan.backends:
                    unavailable = availability[name]
                    if unavailable is not None:
                        rows += [BenchRow(name, resolution, b, unavailable[0], unavailable[1]) for b in plan.batches]
                        step(f"{label}: {name} {unavailable[0]}", len(plan.batches))
                        continue
                    step(f"{label}: loading {name}")
                    try:
                        loaded[name] = _load_backend(name, plain, fast, artifacts.get(resolution), plan, options)
                    except Exception as exc:  # noqa: BLE001 - a backend that cannot load is reported, not fatal
                        rows += [BenchRow(name, resolution, b, "not available", one_line(exc)) for b in plan.batches]
                        step(f"{label}: {name} not available", len(plan.batches))
                for batch in plan.batches:
                    rows += _measure_case(loaded, resolution, batch, cases[batch], plan, options,
                                          lambda what, b=batch, lab=label: step(f"{lab} b{b}: {what}"))
                    step(f"{label} b{batch}: done", len(loaded))
            finally:
                for backend in loaded.values():
                    backend.close()
                loaded.clear()
                release_free_memory()
            del fast, plain
            release_free_memory()
    finally:
        torch.set_num_threads(previous_threads)

    order = {b: i for i, b in enumerate(plan.backends)}
    rows.sort(key=lambda r: (r.batch, order[r.backend], r.resolution))
    meta = {
        "variant": plan.variant,
        "resolutions": [list(r) for r in plan.resolutions],
        "batches": plan.batches,
        "backends": plan.backends,
        "runs": options.runs, "warmup": options.warmup, "min_runs": options.min_runs,
        "max_seconds": options.max_seconds,
        "reference": "PyTorch, plain (published) attention, fp32, CPU, same weights and input",
        "weights": weights_note, "checkpoint": str(checkpoint),
        "work_dir": str(work_dir),
        "artifacts": {f"{r[0]}x{r[1]}": str(p) for r, p in artifacts.items()},
        "machine": machine_info(plan.threads, plan.device),
        "transnext_deploy": __version__,
        "throughput": "batch / mean latency",
        "latency": "wall time of one call, host perf_counter; CUDA work synchronised before the clock stops",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return BenchReport(meta, rows, poly, round(time.perf_counter() - started, 1))


def _device_label(device: str, threads: int) -> str:
    return f"cpu ({threads} threads)" if device == "cpu" else device


def _load_backend(name: str, plain, fast, artifact: Path | None, plan: _Plan, options: BenchOptions) -> Backend:
    if name.startswith("torch-"):
        if name == "torch-plain":
            return TorchBackend(plain, plan.device)
        if name == "torch-fast":
            return TorchBackend(fast, plan.device)
        if name == "torch-fused":
            from ..ops.fused_op import implementation

            backend = TorchBackend(copy.deepcopy(fast).set_attention("fused"), plan.device)
            backend.notes = (f"fused op: {implementation(plan.device)}",)
            return backend
        if name == "torch-compile":
            return TorchBackend(copy.deepcopy(fast), plan.device, compile_model=True)
    assert artifact is not None
    if name.startswith("ort-"):
        from ..backends.onnxrt import OrtCpuBackend, OrtCudaBackend

        if name == "ort-cpu":
            return OrtCpuBackend(artifact / STANDARD_FILE, plan.threads)
        if name == "ort-cpu-custom":
            return OrtCpuBackend(artifact / PLUGIN_FILE, plan.threads)
        if name == "ort-cuda":
            return OrtCudaBackend(artifact / STANDARD_FILE)
    if name.startswith("tensorrt-"):
        from ..backends.trt import TensorRTBackend

        return TensorRTBackend(artifact, name.split("-", 1)[1], plan.batches, options.plugin_library)
    raise BenchError(f"unknown backend {name!r}")


__all__ = [
    "BACKENDS",
    "BenchError",
    "BenchOptions",
    "BenchReport",
    "BenchRow",
    "TORCH_BACKENDS",
    "backend_availability",
    "check_options",
    "run_bench",
    "settle",
]
