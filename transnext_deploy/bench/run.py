"""Latency, throughput, memory and accuracy of every backend, side by side, at several resolutions.

`run_bench(BenchOptions(...))` answers "how much faster is it, and is it still right?" for one
TransNeXt variant. For each resolution every backend is loaded; for each batch size each backend
runs its warm-up passes, then the timed passes are interleaved across the backends, round by round
in alternating order (ABBA), so that other load on the machine hits all of them alike, with a
short pause (`settle`) before each timed call so no runtime's idle workers spin into the next
backend's time. Rounds stop at `runs`, or once `min_runs` are done and `max_seconds` per backend
have passed. Reported per backend x resolution x batch: latency p50/p90/p99 (and every pass in
JSON), throughput (batch / mean latency), peak memory, and the error against the reference:
PyTorch with the published ("plain") attention, fp32, on the CPU, same weights, same input
(max-abs, cosine, top-1 agreement).

The backends are those of `backends.registry` (the names `--backend` takes); an engine backend
(tensorrt) gets a row per precision (`precisions`). A backend this machine lacks gives rows that
say "not available: <reason>"; none vanish. With device="cuda" on a machine where torch sees no
GPU, the torch-* rows say so and the others run. torch-compile is opt-in on the CPU, where one
compilation takes minutes.

Artifacts come from `export.export()` into a work directory (default: the user cache) and are
reused while their manifest matches (variant, resolution, weights, opset) and the export code is
unchanged (work.py). Without a checkpoint, a seeded random checkpoint is written first, so the
reference and every artifact hold the same weights across processes and runs.

This module plans and orchestrates; the rows and the report are in report.py, the figure in plot.py.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


from ..artifacts import ENGINE_GRAPH, PRECISIONS, export_steps, graph_file
from ..backends.base import Backend
from ..backends.registry import (
    BACKENDS,
    EngineCandidate,
    check_backends,
    check_device,
    open_backend,
    problem,
)
from ..engine.build import check_precisions
from ..errors import InvalidArgumentError, TransNeXtDeployError, one_line
from ..machine import available_cpus
from ..memory import release_free_memory
from ..progress import Progress, no_progress
from ..resolution import pair
from .measure import Timing, measure_case
from .report import BenchError, BenchReport, BenchRow, case_label, machine_info
from .work import (
    bench_input,
    default_work_dir,
    ensure_artifacts,
    polygraphy_commands,
    random_checkpoint,
    save_polygraphy_data,
)

CPU_OPT_IN = ("torch-compile",)  # skipped on the CPU unless asked for by name
DEFAULT_VARIANT = "tiny"
DEFAULT_RESOLUTIONS = (224, 384)
DEFAULT_BATCHES = (1,)
REFERENCE = "PyTorch, plain (published) attention, fp32, CPU, same weights and input"


@dataclass
class BenchOptions:
    variant: str = DEFAULT_VARIANT
    resolutions: Sequence[int | tuple[int, int]] = DEFAULT_RESOLUTIONS
    batches: Sequence[int] = DEFAULT_BATCHES
    backends: Sequence[str] | None = None  # None: all (torch-compile skipped on the CPU unless named)
    precisions: Sequence[str] = PRECISIONS  # of the engine backends: a row each
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


# ---------------------------------------------------------------------------------------------
# options


@dataclass(frozen=True)
class Case:
    """One backend as measured: an engine backend at one precision, any other as it is."""

    backend: str
    precision: str | None = None

    @property
    def label(self) -> str:
        return case_label(self.backend, self.precision)


@dataclass
class _Plan:
    variant: str
    resolutions: list[tuple[int, int]]
    batches: list[int]
    cases: list[Case]
    explicit: set[str]
    threads: int
    device: str  # cpu or cuda


def check_options(options: BenchOptions) -> _Plan:
    """Refuse bad options before any work (no model is built)."""
    from ..models import VARIANTS, resolve_variant
    from ..models.checkpoint import check_checkpoint_option
    from ..models.config import check_input_size

    try:
        variant = resolve_variant(options.variant, "size")
        backends = check_backends(options.backends or ["all"])
        wanted = check_precisions(options.precisions)
        precisions = [p for p in PRECISIONS if p in wanted]
        resolutions = list(dict.fromkeys(pair(r) for r in options.resolutions))
        if not resolutions:
            raise InvalidArgumentError("no resolution given")
        for h, w in resolutions:
            if h < 1 or w < 1:
                raise InvalidArgumentError(f"resolution {h}x{w} must be positive")
            try:
                check_input_size(VARIANTS[variant], h, w, variant)
            except InvalidArgumentError as exc:
                raise InvalidArgumentError(f"unsupported resolution {h}x{w}: {exc}") from None
        check_checkpoint_option(options.checkpoint)
    except TransNeXtDeployError as exc:  # a bad option, said as bench's own error
        raise BenchError(str(exc)) from None
    explicit = {b for b in options.backends or () if b != "all"}
    batches = list(dict.fromkeys(int(b) for b in options.batches))
    for value, least, what in ((min(batches, default=0), 1, "batch sizes"), (options.runs, 1, "runs"),
                               (options.warmup, 0, "warmup"), (options.min_runs, 1, "min_runs")):
        if value < least:
            raise BenchError(f"{what} must be >= {least}, got {value if what != 'batch sizes' else list(options.batches)}")
    if not options.max_seconds > 0:
        raise BenchError(f"max_seconds must be > 0, got {options.max_seconds}")
    threads = options.threads if options.threads is not None else available_cpus()
    if threads < 1:
        raise BenchError(f"threads must be >= 1, got {threads}")
    device = _torch_device(options.device)
    cases = [Case(b, p) for b in backends for p in (precisions if BACKENDS[b].engine else [None])]
    return _Plan(variant, resolutions, batches, cases, explicit, threads, device)


def _torch_device(device: str) -> str:
    """Where the torch backends run: "auto" resolved. "cuda" stays "cuda" when torch sees no GPU: the
    torch backends then get "not available" rows saying so."""
    import torch

    try:
        check_device(device)
    except InvalidArgumentError as exc:
        raise BenchError(str(exc)) from None
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


# ---------------------------------------------------------------------------------------------
# availability


def backend_availability(backends: Sequence[str], device: str, explicit: set[str] | None = None,
                         plugin_library: str | os.PathLike | None = None, threads: int | None = None
                         ) -> dict[str, tuple[str, str] | None]:
    """None for a backend that can run here, else (status, reason)."""
    explicit = set(BACKENDS) if explicit is None else explicit
    result: dict[str, tuple[str, str] | None] = {}
    for b in backends:
        if b in CPU_OPT_IN and device == "cpu" and b not in explicit:
            result[b] = ("skipped", ("opt-in on the CPU, where compiling one shape takes minutes; "
                                     "ask for it with --backend torch-compile"))
            continue
        # bench builds its engines: for an engine backend the plugin library must be here too
        reason = problem(b, device=device, threads=threads, plugin_library=plugin_library,
                         need_plugin=BACKENDS[b].engine)
        result[b] = ("not available", reason) if reason else None
    return result


# ---------------------------------------------------------------------------------------------
# what the backends are loaded from


class _ArtifactSource:
    """An exported artifact and its PyTorch models, as `backends.registry.open_backend` loads from."""

    def __init__(self, artifact: Path | None, plain, fast, batches: Sequence[int],
                 plugin_library: str | os.PathLike | None):
        self.artifact, self.plain, self.fast = artifact, plain, fast
        self.batches, self.plugin_library = batches, plugin_library

    def graph(self, file: str) -> Path:
        assert self.artifact is not None
        return self.artifact / file

    def model(self, attention: str):
        if attention == "plain":
            return self.plain
        return self.fast if attention == "fast" else copy.deepcopy(self.fast).set_attention(attention)

    def engines(self, runtime: str, precision: str | None = None) -> Iterator[EngineCandidate | str]:
        """The `runtime` engine of the custom-op graph at `precision`, built (or reused) for a batch
        profile that covers every batch size."""
        from ..artifacts import BATCH_PROFILE
        from ..engine import build_engine

        biggest = max(self.batches)
        profile = BATCH_PROFILE if biggest <= BATCH_PROFILE[2] else (1, biggest, biggest)
        built = build_engine(self.graph(graph_file(ENGINE_GRAPH, precision or PRECISIONS[0])), runtime=runtime,
                             batch_profile=profile, plugin_library=self.plugin_library)
        yield EngineCandidate(built.path, self.plugin_library, max_batch=profile[2],
                              description=("engine reused" if built.reused else
                                           f"engine built in {built.metadata['build_seconds']} s"))


def _load(case: Case, source: _ArtifactSource, plan: _Plan) -> Backend:
    backend = open_backend(case.backend, source, device=plan.device, threads=plan.threads, precision=case.precision)
    if case.backend == "torch-fused":
        from ..ops.fused_op import implementation

        backend.notes = (f"fused op: {implementation(plan.device)}",)
    elif BACKENDS[case.backend].engine:
        backend.notes = (*backend.notes, "input already on the GPU: no host copies in the timing")
    return backend


# ---------------------------------------------------------------------------------------------
# the run


class _Steps:
    """Progress in units of work: the planned total, and how much is done."""

    def __init__(self, progress: Progress, total: float):
        self.progress, self.total, self.done = progress, total, 0.0

    def __call__(self, description: str, advance: float = 0.0, total: float | None = None) -> None:
        self.done += advance
        self.progress(description, advance=advance, total=self.total)


def _checkpoint(options: BenchOptions, plan: _Plan, work_dir: Path) -> tuple[Path, str]:
    """The checkpoint every artifact and the reference use, and how to describe its weights."""
    from ..models.checkpoint import OFFICIAL, resolve_checkpoint

    if options.checkpoint is None:
        path = random_checkpoint(plan.variant, options.seed, work_dir)
        return path, f"seeded random weights (seed {options.seed}): speed and agreement only, not accuracy"
    path = resolve_checkpoint(options.checkpoint, plan.variant)
    return path, (f"official weights {path.name}" if options.checkpoint == OFFICIAL else f"checkpoint {path}")


def _timing(options: BenchOptions) -> Timing:
    return Timing(options.runs, options.warmup, options.min_runs, options.max_seconds, options.memory)


def _run_resolution(resolution: tuple[int, int], plan: _Plan, options: BenchOptions, checkpoint: Path,
                    artifact: Path | None, availability: dict, work_dir: Path, steps: _Steps
                    ) -> tuple[list[BenchRow], list[dict]]:
    """Every case at one resolution: the reference per batch, then each backend loaded and measured."""
    from ..backends.pytorch import TorchBackend
    from ..export import ExportOptions, build_model

    label = f"{resolution[0]}x{resolution[1]}"
    fast, _ = build_model(ExportOptions(plan.variant, checkpoint=str(checkpoint)), resolution)
    plain = copy.deepcopy(fast).set_attention("plain")
    rows: list[BenchRow] = []
    poly: list[dict] = []
    cases = {}
    for batch in plan.batches:
        steps(f"{label} b{batch}: PyTorch reference (plain, fp32, CPU)")
        x = bench_input(resolution, batch, options.seed)
        reference = TorchBackend(plain)(x)[0]  # on the CPU, in float32, whatever --device says
        cases[batch] = (x, reference)
        if artifact is not None:
            sub = work_dir / "polygraphy" / f"{artifact.name}_b{batch}"
            inputs, outputs = save_polygraphy_data(sub, x, reference)
            poly.append({"resolution": list(resolution), "batch": batch, "inputs": str(inputs),
                         "reference": str(outputs),
                         "commands": polygraphy_commands(artifact, inputs, outputs, batch, resolution)})
        steps(f"{label} b{batch}: reference done", 1)

    source = _ArtifactSource(artifact, plain, fast, plan.batches, options.plugin_library)
    loaded: dict[Case, Backend] = {}
    try:
        for case in plan.cases:
            unavailable = availability[case.backend]
            if unavailable is None:
                steps(f"{label}: loading {case.label}")
                try:
                    loaded[case] = _load(case, source, plan)
                    continue
                except Exception as exc:  # noqa: BLE001 - a backend that cannot load is reported, not fatal
                    unavailable = ("not available", one_line(exc))
            rows += [BenchRow(case.backend, resolution, b, *unavailable, precision=case.precision)
                     for b in plan.batches]
            steps(f"{label}: {case.label} {unavailable[0]}", len(plan.batches))
        for batch in plan.batches:
            rows += measure_case(loaded, resolution, batch, cases[batch], plan.threads, _timing(options),
                                 lambda what, b=batch: steps(f"{label} b{b}: {what}"))
            steps(f"{label} b{batch}: done", len(loaded))
    finally:
        for backend in loaded.values():
            backend.close()
        loaded.clear()
        del fast, plain, source  # the source holds the models too: drop every reference before the release
        release_free_memory()
    return rows, poly


def run_bench(options: BenchOptions, progress: Progress = no_progress) -> BenchReport:
    """Run the benchmark; every requested backend x resolution x batch gets a row."""
    import torch

    from .. import __version__
    from ..engine import plan_engines

    started = time.perf_counter()
    plan = check_options(options)
    work_dir = Path(options.work_dir) if options.work_dir is not None else default_work_dir()
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot create work directory {work_dir}: {exc.strerror or exc}") from None
    progress("checking which backends this machine has")
    backends = list(dict.fromkeys(c.backend for c in plan.cases))
    availability = backend_availability(backends, plan.device, plan.explicit, options.plugin_library,
                                        plan.threads)
    needs_artifacts = any(availability[b] is None and BACKENDS[b].graph is not None for b in backends)
    engines = plan_engines(plugin_library=options.plugin_library) if needs_artifacts else None
    n_res, n_batch = len(plan.resolutions), len(plan.batches)
    export_units = n_res * len(export_steps(PRECISIONS, engines.precisions)) if engines is not None else 0
    steps = _Steps(progress, export_units + n_res * n_batch * (1 + len(plan.cases)))

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(plan.threads)
    try:
        steps("writing the seeded random checkpoint" if options.checkpoint is None else "finding the checkpoint")
        checkpoint, weights_note = _checkpoint(options, plan, work_dir)
        artifacts: dict[tuple[int, int], Path] = {}
        if needs_artifacts:
            steps("checking exported artifacts")
            before = steps.done
            artifacts = ensure_artifacts(plan.variant, plan.resolutions, checkpoint, work_dir, plan.threads,
                                         lambda what, advance=0.0, total=None: steps(f"export {what}", advance),
                                         engines)
            steps("artifacts ready", export_units - (steps.done - before))  # reused artifacts skip their steps
        rows: list[BenchRow] = []
        poly: list[dict] = []
        for resolution in plan.resolutions:
            more_rows, more_poly = _run_resolution(resolution, plan, options, checkpoint, artifacts.get(resolution),
                                                   availability, work_dir, steps)
            rows += more_rows
            poly += more_poly
    finally:
        torch.set_num_threads(previous_threads)

    order = {c.label: i for i, c in enumerate(plan.cases)}
    rows.sort(key=lambda r: (r.batch, order[r.label], r.resolution))
    meta = {
        "variant": plan.variant,
        "resolutions": [list(r) for r in plan.resolutions],
        "batches": plan.batches,
        "backends": backends,
        "cases": [c.label for c in plan.cases],
        "runs": options.runs, "warmup": options.warmup, "min_runs": options.min_runs,
        "max_seconds": options.max_seconds,
        "reference": REFERENCE,
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


__all__ = [
    "CPU_OPT_IN",
    "BenchError",
    "BenchOptions",
    "BenchReport",
    "BenchRow",
    "Case",
    "backend_availability",
    "check_options",
    "run_bench",
]
