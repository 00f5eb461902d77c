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
unchanged. Without a checkpoint, a seeded random checkpoint is written first, so the reference and
every artifact hold the same weights across processes and runs.

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
import ctypes
import gc
import hashlib
import json
import math
import os
import platform
import re
import shlex
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

BACKENDS = ("torch-plain", "torch-fast", "torch-fused", "torch-compile", "ort-cpu", "ort-cpu-custom", "ort-cuda",
            "tensorrt-fp32", "tensorrt-fp16")
TORCH_BACKENDS = ("torch-plain", "torch-fast", "torch-fused", "torch-compile")  # run where --device says
CPU_OPT_IN = ("torch-compile",)  # skipped on the CPU unless asked for by name
DEFAULT_VARIANT = "tiny"
DEFAULT_RESOLUTIONS = (224, 384)
DEFAULT_BATCHES = (1,)
REFERENCE = "pytorch-plain-fp32"
INPUT_NAME = "images"
MIB = 1 << 20


class BenchError(ValueError):
    """Bad benchmark options; str() is one line."""


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


@dataclass
class BenchRow:
    backend: str
    resolution: tuple[int, int]
    batch: int
    status: str  # "ok", "not available" (missing here), "skipped" (opt-in), "failed" (raised while running)
    reason: str = ""
    device: str = ""
    graph: str = ""
    runs: int = 0
    warmup: int = 0
    first_call_ms: float | None = None
    latency_ms: dict = field(default_factory=dict)  # p50, p90, p99, mean, min, max
    times_ms: list[float] = field(default_factory=list)  # every timed pass, in order
    throughput_img_s: float | None = None
    memory_mib: float | None = None
    memory_method: str = ""
    accuracy: dict = field(default_factory=dict)  # max_abs, mean_abs, relative, cosine, top1_agreement
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def status_text(self) -> str:
        return self.status if self.ok else f"{self.status}: {self.reason}"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["resolution"] = list(self.resolution)
        d["status_text"] = self.status_text
        return d


@dataclass
class BenchReport:
    meta: dict
    rows: list[BenchRow]
    polygraphy: list[dict]
    seconds: float

    def as_dict(self) -> dict:
        return {"meta": self.meta, "rows": [r.as_dict() for r in self.rows], "polygraphy": self.polygraphy,
                "seconds": self.seconds}

    def write_json(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2, default=_json_default))
        return path


def load_report(path: str | os.PathLike) -> BenchReport:
    """A report written by `BenchReport.write_json` (e.g. to plot it again)."""
    data = json.loads(Path(path).read_text())
    names = set(BenchRow.__dataclass_fields__)
    rows = []
    for d in data["rows"]:
        d = {k: v for k, v in d.items() if k in names}
        d["resolution"] = tuple(d["resolution"])
        rows.append(BenchRow(**d))
    return BenchReport(data["meta"], rows, data.get("polygraphy", []), data.get("seconds", 0.0))


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


Progress = Callable[[str, float, "float | None"], None]  # (description, completed, total or None: unknown)


# ---------------------------------------------------------------------------------------------
# options


def _pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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
    """Refuse bad options before any work."""
    from .models import VARIANTS, create_model

    variant = options.variant.removeprefix("transnext_")
    if variant not in VARIANTS:
        raise BenchError(f"unknown size {options.variant!r}; choose one of {', '.join(VARIANTS)}")
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
    resolutions = [_pair(r) for r in options.resolutions]
    if not resolutions:
        raise BenchError("no resolution given")
    for h, w in resolutions:
        if h < 1 or w < 1:
            raise BenchError(f"resolution {h}x{w} must be positive")
        try:
            create_model(variant, img_size=(h, w))
        except ValueError as exc:
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

    if device not in ("auto", "cpu", "cuda"):
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
            reason = _custom_op_problem(threads)
        elif b == "ort-cuda":
            reason = _ort_cuda_problem()
        elif b.startswith("tensorrt-"):
            if trt_status is None:
                from .engine import tensorrt_status

                trt_status = tensorrt_status(plugin_library)
            reason = None if trt_status.available else trt_status.reason
        result[b] = ("not available", reason) if reason else None
    return result


def _fused_op_problem(device: str) -> str | None:
    """On CUDA the op needs the kernel library; on the CPU it always runs (host library or decomposition)."""
    from .ops.fused_op import implementation

    description = implementation(device)
    return description.removeprefix("not available: ") if description.startswith("not available") else None


def _custom_op_problem(threads: int | None) -> str | None:
    try:
        from .runtime import register_cpu_custom_op

        register_cpu_custom_op(threads)  # the op's own threads (first registration in the process wins)
    except Exception as exc:  # noqa: BLE001 - any failure to provide the op is the reason
        return "the CPU custom op cannot be registered: " + _one_line(exc)
    return None


def _ort_cuda_problem() -> str | None:
    import onnxruntime as ort

    from .engine import cuda_devices

    problems = []
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        problems.append(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (a CPU build; "
                        "install onnxruntime-gpu)")
    _, no_gpu = cuda_devices()
    if no_gpu:
        problems.append(no_gpu)
    return "; ".join(problems) or None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# ---------------------------------------------------------------------------------------------
# artifacts


def default_work_dir() -> Path:
    from .checkpoint import cache_dir

    return cache_dir() / "bench"


def _code_fingerprint() -> str:
    """sha256 of the sources that decide what an export contains."""
    root = Path(__file__).resolve().parent
    files = sorted([root / "export.py", root / "rewrite.py", *root.glob("models/*.py"), *root.glob("ops/*.py")])
    digest = hashlib.sha256()
    for f in files:
        if f.is_file():
            digest.update(f.name.encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()


def random_checkpoint(variant: str, seed: int, work_dir: Path) -> Path:
    """A seeded random checkpoint, written once: export and reference then share weights exactly."""
    import torch

    from .models import create_model

    path = work_dir / f"transnext_{variant}_random_seed{seed}.pth"
    if path.is_file():
        return path
    torch.manual_seed(seed)
    model = create_model(variant)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"model": model.state_dict()}, tmp)
    os.replace(tmp, path)
    return path


def _reusable(directory: Path, key: dict) -> bool:
    manifest_path = directory / "manifest.json"
    key_path = directory.parent / f"{directory.name}.bench-key.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        stored_key = json.loads(key_path.read_text())
    except (OSError, ValueError):
        return False
    if stored_key != key:
        return False
    if (manifest.get("variant"), manifest.get("resolution"), manifest.get("mode")) != \
            (key["variant"], key["resolution"], "classify"):
        return False
    if (manifest.get("weights") or {}).get("sha256") != key["weights_sha256"]:
        return False
    for name, info in (manifest.get("files") or {}).items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != info.get("bytes"):
            return False
    from .export import PLUGIN_FILE, STANDARD_FILE

    return all((directory / f).is_file() for f in (STANDARD_FILE, PLUGIN_FILE))


def ensure_artifacts(variant: str, resolutions: Sequence[tuple[int, int]], checkpoint: str | os.PathLike,
                     work_dir: Path, threads: int = 2,
                     progress: Callable[[tuple[int, int], str], None] | None = None) -> dict[tuple[int, int], Path]:
    """Exported artifact directories for every resolution, exporting only those not already there."""
    from .checkpoint import sha256sum
    from .export import DEFAULT_OPSET, ExportOptions, artifact_name, export

    weights_sha = sha256sum(checkpoint)
    fingerprint = _code_fingerprint()
    found, missing, keys = {}, [], {}
    for r in resolutions:
        directory = work_dir / artifact_name(variant, "classify", r)
        keys[r] = {"variant": variant, "resolution": list(r), "weights_sha256": weights_sha, "opset": DEFAULT_OPSET,
                   "code": fingerprint}
        if _reusable(directory, keys[r]):
            found[r] = directory
        else:
            missing.append(r)
    if missing:
        options = ExportOptions(variant, resolutions=missing, checkpoint=str(checkpoint), output_dir=work_dir,
                                threads=threads, opset=DEFAULT_OPSET)
        for result in export(options, progress=progress):
            r = tuple(result.resolution)
            directory = Path(result.directory)
            (directory.parent / f"{directory.name}.bench-key.json").write_text(json.dumps(keys[r], indent=2))
            found[r] = directory
    return {r: found[r] for r in resolutions}


# ---------------------------------------------------------------------------------------------
# memory


def _proc_status_kib(key: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _release_free_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _RssProbe:
    method = "peak RSS growth during the warm-up passes over the loaded backend (VmHWM)"

    def start(self) -> None:
        _release_free_memory()
        self.base = _proc_status_kib("VmRSS")
        self.ok = self.base is not None and _reset_high_water_mark()

    def stop(self) -> float | None:
        peak = _proc_status_kib("VmHWM")
        if not self.ok or peak is None:
            return None
        return max(0.0, (peak - self.base) / 1024)


class _TorchCudaProbe:
    method = "torch CUDA allocator peak over the memory allocated before the passes"

    def __init__(self, extra_bytes: int = 0, method: str | None = None):
        self.extra = extra_bytes
        if method:
            self.method = method

    def start(self) -> None:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self.base = torch.cuda.memory_allocated()

    def stop(self) -> float | None:
        import torch

        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - self.base + self.extra) / MIB


class _DriverProbe:
    method = "growth of the GPU memory in use (cudaMemGetInfo) from before loading the backend"

    def __init__(self, free_before_load: int | None):
        self.before = free_before_load

    def start(self) -> None:
        pass

    def stop(self) -> float | None:
        free = _cuda_free_bytes()
        if free is None or self.before is None:
            return None
        return max(0.0, (self.before - free) / MIB)


class _NoProbe:
    method = "not measured"

    def start(self) -> None:
        pass

    def stop(self) -> None:
        return None


def _cuda_free_bytes() -> int | None:
    try:
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.mem_get_info()[0])
    except Exception:  # noqa: BLE001
        pass
    return None


# ---------------------------------------------------------------------------------------------
# backends: load once per resolution, then call on a prepared input


class _Backend:
    graph = "eager"
    device = "cpu"
    notes: tuple[str, ...] = ()

    def prepare(self, x: np.ndarray):
        return x

    def __call__(self, prepared):
        raise NotImplementedError

    def to_numpy(self, out) -> np.ndarray:
        return np.asarray(out)

    def probe(self):
        return _RssProbe()

    def close(self) -> None:
        pass


class _TorchBackend(_Backend):
    def __init__(self, model, device: str, compile_model: bool = False):
        import torch

        self.torch = torch
        self.device = device
        self.model = model.to(device)
        if compile_model:
            self.model = torch.compile(self.model, dynamic=False)
            self.graph = "torch.compile (inductor)"

    def prepare(self, x):
        return self.torch.from_numpy(x).to(self.device)

    def __call__(self, prepared):
        if self.graph != "eager":  # torch.compile: keep dynamo's warnings out of the progress display
            with warnings.catch_warnings(), self.torch.inference_mode():
                warnings.simplefilter("ignore")
                out = self.model(prepared)
        else:
            with self.torch.inference_mode():
                out = self.model(prepared)
        if self.device == "cuda":
            self.torch.cuda.synchronize()
        return out

    def to_numpy(self, out):
        return out.float().cpu().numpy()

    def probe(self):
        return _TorchCudaProbe() if self.device == "cuda" else _RssProbe()


class _OrtCpuBackend(_Backend):
    def __init__(self, path: Path, threads: int):
        from .runtime import cpu_session

        self.graph = path.name
        self.session = cpu_session(path, threads=threads)

    def __call__(self, prepared):
        return self.session.run(None, {INPUT_NAME: prepared})[0]


class _OrtCudaBackend(_Backend):
    device = "cuda"
    notes = ("numpy in and out: host<->device copies are inside the timing",)

    def __init__(self, path: Path):
        import onnxruntime as ort

        self.free_before = _cuda_free_bytes()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.graph = path.name
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        if "CUDAExecutionProvider" not in self.session.get_providers():
            raise RuntimeError("onnxruntime fell back to the CPU: the CUDA execution provider did not load")

    def __call__(self, prepared):
        return self.session.run(None, {INPUT_NAME: prepared})[0]

    def probe(self):
        return _DriverProbe(self.free_before)


class _TensorRTBackend(_Backend):
    device = "cuda"

    def __init__(self, artifact: Path, precision: str, batches: Sequence[int], plugin_library):
        from .engine import DEFAULT_BATCH_PROFILE, TensorRTRunner, build_engine
        from .export import PLUGIN_FILE

        biggest = max(batches)
        profile = DEFAULT_BATCH_PROFILE if biggest <= DEFAULT_BATCH_PROFILE[2] else (1, biggest, biggest)
        built = build_engine(artifact / PLUGIN_FILE, precision, batch_profile=profile, plugin_library=plugin_library)
        self.graph = built.path.name
        self.notes = (("engine reused" if built.reused else f"engine built in {built.metadata['build_seconds']} s"),
                      "input already on the GPU: no host copies in the timing")
        self.runner = TensorRTRunner(built.path, plugin_library)
        self.on_torch = self.runner._torch is not None

    def prepare(self, x):
        if self.on_torch:
            import torch

            return torch.from_numpy(x).cuda()
        return x

    def __call__(self, prepared):
        return self.runner.infer_device(prepared)[0] if self.on_torch else self.runner(prepared)[0]

    def to_numpy(self, out):
        return out.float().cpu().numpy() if self.on_torch else np.asarray(out)

    def probe(self):
        scratch = self.runner.device_memory_bytes or 0
        if self.on_torch:
            return _TorchCudaProbe(scratch, "execution-context scratch (engine.device_memory_size) + I/O tensors "
                                            "(torch allocator peak)")
        return _NoProbe()

    def close(self):
        self.runner.close()


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


def _measure_case(loaded: dict[str, _Backend], resolution: tuple[int, int], batch: int, case, plan: _Plan,
                  options: BenchOptions, tick: Callable[[str], None]) -> list[BenchRow]:
    """One resolution x batch for every loaded backend: per backend its warm-up passes (memory is
    measured around them), then timed passes interleaved across backends round by round, in
    alternating order (ABBA), so load from elsewhere on the machine hits every backend alike."""
    from .validation import error_stats, top1_agreement

    x, reference = case
    rows: dict[str, BenchRow] = {}
    state: dict[str, dict] = {}
    for name, backend in loaded.items():
        row = rows[name] = BenchRow(name, resolution, batch, "ok", graph=backend.graph, warmup=options.warmup,
                                    device=_device_label(backend.device, plan.threads), notes=list(backend.notes))
        if name == "torch-plain" and backend.device == "cpu":
            row.notes.append("this is the reference")
        probe = backend.probe() if options.memory else _NoProbe()
        row.memory_method = probe.method
        st = state[name] = {"backend": backend, "probe": probe, "times": [], "out": None, "first": None}
        try:
            st["prepared"] = backend.prepare(x)
            if options.warmup:
                probe.start()
                for i in range(options.warmup):
                    tick(f"{name} warm-up {i + 1}/{options.warmup}")
                    start = time.perf_counter()
                    st["out"] = backend(st["prepared"])
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
                st["out"] = st["backend"](st["prepared"])
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
        output = st["backend"].to_numpy(st["out"])
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
            row.notes.append(f"{len(times)} of {options.runs} runs: time budget reached "
                             f"({options.max_seconds:g} s per backend)")
    return [rows[name] for name in loaded]


def _fail(row: BenchRow, name: str, exc: BaseException) -> None:
    row.status, row.reason = "failed", _one_line(exc)
    row.memory_mib = None
    if name == "torch-compile":
        row.status, row.reason = "not available", "torch.compile failed: " + row.reason


# ---------------------------------------------------------------------------------------------
# inputs, reference, polygraphy


def bench_input(resolution: tuple[int, int], batch: int, seed: int) -> np.ndarray:
    """A batch of ImageNet-normalised images: the sample photo shipped with matplotlib first (when
    installed), then seeded uniform noise."""
    from .export import IMAGENET_MEAN, IMAGENET_STD, validation_inputs

    h, w = resolution
    named = validation_inputs(resolution, seed)
    first = named.get("photo_grace_hopper", named["uniform_image"])
    g = np.random.default_rng(seed + 1)
    rest = ((g.random((batch - 1, h, w, 3), dtype=np.float32) - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(np.concatenate([first, rest])[:batch], dtype=np.float32)


def _save_polygraphy_data(directory: Path, x: np.ndarray, reference: np.ndarray) -> tuple[Path, Path]:
    from polygraphy.comparator import IterationResult, RunResults
    from polygraphy.json import save_json
    from polygraphy.logger import G_LOGGER

    directory.mkdir(parents=True, exist_ok=True)
    inputs, outputs = directory / "inputs.json", directory / "reference.json"
    previous = G_LOGGER.module_severity
    G_LOGGER.module_severity = G_LOGGER.ERROR  # no "[I] Saving ..." lines amid the progress display
    try:
        save_json([{INPUT_NAME: x}], str(inputs))
        results = RunResults()
        results.append((REFERENCE, [IterationResult({"logits": reference}, runner_name=REFERENCE)]))
        results.save(str(outputs))
    finally:
        G_LOGGER.module_severity = previous
    return inputs, outputs


def polygraphy_commands(artifact: Path, inputs: Path, outputs: Path, batch: int, resolution: tuple[int, int]
                        ) -> dict[str, str]:
    """`polygraphy run` command lines that repeat this comparison against the saved PyTorch outputs."""
    from .engine import ENGINE_TOLERANCES
    from .export import FUNCTION_FILE, PLUGIN_FILE, STANDARD_FILE

    fp32, fp16 = (f"--atol {t.atol:g} --rtol {t.rtol:g}" for t in (ENGINE_TOLERANCES["fp32"], ENGINE_TOLERANCES["fp16"]))
    h, w = resolution
    shape = f"{INPUT_NAME}:[{batch},3,{h},{w}]"
    data = f"--load-inputs {shlex.quote(str(inputs))} --load-outputs {shlex.quote(str(outputs))}"
    trt_shapes = f"--trt-min-shapes {shape} --trt-opt-shapes {shape} --trt-max-shapes {shape}"
    def q(name: str) -> str:
        return shlex.quote(str(artifact / name))

    return {
        "ort-cpu": f"polygraphy run {q(STANDARD_FILE)} --onnxrt {data} {fp32}",
        "ort-cpu-function-form": f"polygraphy run {q(FUNCTION_FILE)} --onnxrt {data} {fp32}",
        # polygraphy leaves TF32 off unless --tf32 is given, like the fp32 engines built here
        "tensorrt-fp32": f"polygraphy run {q(PLUGIN_FILE)} --trt --plugins $TRANSNEXT_AA_PLUGIN {trt_shapes} {data} "
                         f"{fp32}",
        "tensorrt-fp16": f"polygraphy run {q(PLUGIN_FILE)} --trt --fp16 --plugins $TRANSNEXT_AA_PLUGIN {trt_shapes} "
                         f"{data} {fp16}",
    }


# ---------------------------------------------------------------------------------------------
# the run


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it, else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float | None:
    """The 1-minute load average (None where the OS does not tell): above the thread count, other
    work shared the CPUs with the timed runs."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _machine(threads: int, device: str) -> dict:
    import onnxruntime as ort
    import torch

    info = {"cpu": cpu_name(), "cpus_available": available_cpus(), "threads": threads, "torch_device": device,
            "torch": torch.__version__, "onnxruntime": ort.__version__, "python": platform.python_version()}
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    load = load_average()
    if load is not None:
        info["load_average_1min"] = load
    return info


def run_bench(options: BenchOptions, progress: Progress | None = None) -> BenchReport:
    """Run the benchmark; every requested backend x resolution x batch gets a row."""
    import torch

    from . import __version__
    from .export import ExportOptions, build_model

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

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(plan.threads)
    n_res, n_batch = len(plan.resolutions), len(plan.batches)
    export_units = 5 * n_res if needs_artifacts else 0
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
            from .checkpoint import download_weights, official_weights

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
            artifacts = ensure_artifacts(plan.variant, plan.resolutions, checkpoint, work_dir, plan.threads, on_export)
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
                with torch.inference_mode():
                    reference = plain(torch.from_numpy(x)).numpy()
                cases[batch] = (x, reference)
                if resolution in artifacts:
                    sub = work_dir / "polygraphy" / f"{artifacts[resolution].name}_b{batch}"
                    inputs, outputs = _save_polygraphy_data(sub, x, reference)
                    poly.append({"resolution": list(resolution), "batch": batch, "inputs": str(inputs),
                                 "reference": str(outputs),
                                 "commands": polygraphy_commands(artifacts[resolution], inputs, outputs, batch,
                                                                 resolution)})
                step(f"{label} b{batch}: reference done", 1)

            loaded: dict[str, _Backend] = {}
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
                        rows += [BenchRow(name, resolution, b, "not available", _one_line(exc)) for b in plan.batches]
                        step(f"{label}: {name} not available", len(plan.batches))
                for batch in plan.batches:
                    rows += _measure_case(loaded, resolution, batch, cases[batch], plan, options,
                                          lambda what, b=batch, lab=label: step(f"{lab} b{b}: {what}"))
                    step(f"{label} b{batch}: done", len(loaded))
            finally:
                for backend in loaded.values():
                    backend.close()
                loaded.clear()
                _release_free_memory()
            del fast, plain
            _release_free_memory()
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
        "machine": _machine(plan.threads, plan.device),
        "transnext_deploy": __version__,
        "throughput": "batch / mean latency",
        "latency": "wall time of one call, host perf_counter; CUDA work synchronised before the clock stops",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return BenchReport(meta, rows, poly, round(time.perf_counter() - started, 1))


def _device_label(device: str, threads: int) -> str:
    return f"cpu ({threads} threads)" if device == "cpu" else device


def _load_backend(name: str, plain, fast, artifact: Path | None, plan: _Plan, options: BenchOptions) -> _Backend:
    from .export import PLUGIN_FILE, STANDARD_FILE

    if name == "torch-plain":
        return _TorchBackend(plain, plan.device)
    if name == "torch-fast":
        return _TorchBackend(fast, plan.device)
    if name == "torch-fused":
        from .ops.fused_op import implementation

        backend = _TorchBackend(copy.deepcopy(fast).set_attention("fused"), plan.device)
        backend.notes = (f"fused op: {implementation(plan.device)}",)
        return backend
    if name == "torch-compile":
        backend = _TorchBackend(copy.deepcopy(fast), plan.device, compile_model=True)
        return backend
    assert artifact is not None
    if name == "ort-cpu":
        return _OrtCpuBackend(artifact / STANDARD_FILE, plan.threads)
    if name == "ort-cpu-custom":
        return _OrtCpuBackend(artifact / PLUGIN_FILE, plan.threads)
    if name == "ort-cuda":
        return _OrtCudaBackend(artifact / STANDARD_FILE)
    if name.startswith("tensorrt-"):
        return _TensorRTBackend(artifact, name.split("-", 1)[1], plan.batches, options.plugin_library)
    raise BenchError(f"unknown backend {name!r}")


# ---------------------------------------------------------------------------------------------
# plot

_COLORS = {
    "torch-plain": "#c0392b", "torch-fast": "#e67e22", "torch-fused": "#a04000", "torch-compile": "#f1c40f",
    "ort-cpu": "#2471a3", "ort-cpu-custom": "#5dade2", "ort-cuda": "#8e44ad",
    "tensorrt-fp32": "#1e8449", "tensorrt-fp16": "#58d68d",
}


def plot_report(report: BenchReport, path: str | os.PathLike) -> Path:
    """PNG: per batch size, latency (p50, band to p90) vs resolution on a log axis, one line per
    backend, and below it the speed-up over eager PyTorch with the published attention."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    meta = report.meta
    batches = meta["batches"]
    backends = meta["backends"]
    resolutions = [tuple(r) for r in meta["resolutions"]]
    xs = list(range(len(resolutions)))
    labels = [f"{h}²" if h == w else f"{h}×{w}" for h, w in resolutions]
    ok = [r for r in report.rows if r.ok]
    baseline = "torch-plain"

    width_in = max(11.5, 5.6 * len(batches) + 3.4)
    fig, axes = plt.subplots(2, len(batches), figsize=(width_in, 8.4), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 2]})
    legend: dict[str, str] = {}
    for col, batch in enumerate(batches):
        ax, bar_ax = axes[0][col], axes[1][col]
        ax.set_facecolor("#fbfbfb")
        plotted, texts = [], []
        for b in backends:
            pts = {tuple(r.resolution): r for r in ok if r.backend == b and r.batch == batch}
            if not pts:
                continue
            idx = [i for i, res in enumerate(resolutions) if res in pts]
            p50 = [pts[resolutions[i]].latency_ms["p50"] for i in idx]
            p90 = [pts[resolutions[i]].latency_ms["p90"] for i in idx]
            color = _COLORS.get(b, "#555555")
            ax.plot([xs[i] for i in idx], p50, marker="o", lw=2.2, ms=6, color=color, zorder=3)
            ax.fill_between([xs[i] for i in idx], p50, p90, color=color, alpha=0.13, lw=0, zorder=2)
            texts += [(xs[i], v, color) for i, v in zip(idx, p50)]
            plotted.append(b)
            worst = max(r.accuracy.get("max_abs", float("nan")) for r in ok if r.backend == b)
            legend[b] = "reference" if b == baseline and worst == 0 else f"max-abs {worst:.0e}"
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt_ms(v)))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(xs, labels)
        ax.set_xlim(-0.25, len(xs) - 0.45)
        if texts:
            lo = min(t[1] for t in texts)
            hi = max(t[1] for t in texts)
            ax.set_ylim(lo / 1.35, hi * 1.35)
            _label_points(ax, texts)
        if col == 0:
            ax.set_ylabel("latency per call: p50, band to p90")
        ax.set_title(f"batch {batch}", fontsize=11, loc="left")
        ax.grid(True, which="major", axis="y", alpha=0.35)
        ax.grid(True, which="major", axis="x", alpha=0.15)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)

        base = {tuple(r.resolution): r.latency_ms["p50"] for r in ok if r.backend == baseline and r.batch == batch}
        others = [b for b in plotted if b != baseline]
        if base and others:
            width = 0.8 / len(others)
            for k, b in enumerate(others):
                vals, pos = [], []
                for i, res in enumerate(resolutions):
                    row = next((r for r in ok if r.backend == b and r.batch == batch and tuple(r.resolution) == res),
                               None)
                    if row is not None and res in base:
                        vals.append(base[res] / row.latency_ms["p50"])
                        pos.append(xs[i] - 0.4 + width * (k + 0.5))
                bars = bar_ax.bar(pos, vals, width * 0.88, color=_COLORS.get(b, "#555555"))
                for rect, v in zip(bars, vals):
                    bar_ax.annotate(f"{v:.1f}×", (rect.get_x() + rect.get_width() / 2, v), ha="center",
                                    va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
            bar_ax.axhline(1.0, color="#888", lw=1, ls="--")
            bar_ax.set_xticks(xs, labels)
            bar_ax.set_xlim(-0.5, len(xs) - 0.5)
            if col == 0:
                bar_ax.set_ylabel(f"speed-up over {baseline} (p50)")
            bar_ax.margins(y=0.18)
            for side in ("top", "right"):
                bar_ax.spines[side].set_visible(False)
        else:
            bar_ax.axis("off")
            bar_ax.text(0.5, 0.5, f"no {baseline} row to compare with", ha="center", va="center", color="#888")
        bar_ax.set_xlabel("input resolution")

    handles = [Line2D([], [], color=_COLORS.get(b, "#555555"), marker="o", lw=2.2, label=f"{b}\n{legend[b]}")
               for b in backends if b in legend]
    missing = _missing_summary(report.rows)
    handles += [Line2D([], [], color="#bbbbbb", lw=2.2, ls=":", label=f"{b}\nnot run") for b in missing]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.835, 0.9), frameon=False, fontsize=8.5,
               labelspacing=1.0, title="backend\nworst max-abs vs reference", title_fontsize=8.5,
               alignment="left")
    machine = meta["machine"]
    where = f"{machine['threads']} CPU threads" + (f", torch on {machine['gpu']}" if machine.get("gpu") else "")
    fig.suptitle(f"transnext_{meta['variant']}: latency vs input resolution", fontsize=14, fontweight="bold",
                 x=0.01, y=0.985, ha="left")
    subtitle = (f"{where} · {machine['cpu']} · torch {machine['torch']} · onnxruntime {machine['onnxruntime']} · "
                f"p50 of up to {meta['runs']} runs after {meta['warmup']} warm-up · {meta['weights']}")
    fig.text(0.01, 0.95, _wrap(subtitle, width_in, 8.5), fontsize=8.5, color="#444", va="top", parse_math=False)
    footer = [_wrap(f"{', '.join(names)}: {text}", width_in, 7.5) for text, names in _group_reasons(missing).items()]
    footer_lines = sum(f.count("\n") + 1 for f in footer)
    fig.text(0.01, 0.008, "\n".join(footer), fontsize=7.5, color="#666", va="bottom", ha="left", parse_math=False)
    fig.tight_layout(rect=(0, 0.012 + 0.017 * footer_lines, 0.83, 0.915))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def _wrap(text: str, width_in: float, fontsize: float) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, max(40, int(width_in * 72 / (fontsize * 0.56)))))


def _label_points(ax, texts: list[tuple[float, float, str]]) -> None:
    """Value labels beside each point, nudged apart (in log space) where points crowd."""
    lo, hi = (math.log10(v) for v in ax.get_ylim())
    gap = (hi - lo) * 0.055
    for x in sorted({t[0] for t in texts}):
        column = sorted((t for t in texts if t[0] == x), key=lambda t: t[1])
        placed: list[float] = []
        for _, v, color in column:
            y = math.log10(v)
            if placed and y - placed[-1] < gap:
                y = placed[-1] + gap
            placed.append(y)
            ax.annotate(_fmt_ms(v), (x, v), xytext=(x + 0.05, 10 ** y), textcoords="data", fontsize=8, color=color,
                        va="center", ha="left", fontweight="bold")


def _missing_summary(rows: Sequence[BenchRow]) -> dict[str, str]:
    """backend -> a short reason, for backends with no measured row."""
    measured = {r.backend for r in rows if r.ok}
    out = {}
    for r in rows:
        if not r.ok and r.backend not in measured and r.backend not in out:
            out[r.backend] = f"{r.status}: {short_reason(r.reason)}"
    return out


def _group_reasons(missing: dict[str, str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for backend, text in missing.items():
        grouped.setdefault(text, []).append(backend)
    return grouped


def short_reason(reason: str) -> str:
    """'a (detail); b: more (detail)' -> 'a; b: more': the parenthesised details dropped."""
    previous = None
    while previous != reason:
        previous, reason = reason, re.sub(r"\s*\([^()]*\)", "", reason)
    return "; ".join(p.strip() for p in reason.split(";") if p.strip())


def _fmt_ms(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:.3g} s"
    if v >= 1:
        return f"{v:.3g} ms"
    return f"{v * 1000:.3g} µs"


def _shorten(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def fmt_number(value: float | None, kind: str) -> str:
    """Table formatting shared by the CLI."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "ms":
        return f"{value:.1f}" if value >= 10 else f"{value:.2f}"
    if kind == "ips":
        return f"{value:.1f}" if value >= 10 else f"{value:.2f}"
    if kind == "mib":
        return f"{value:.0f}"
    if kind == "err":
        return "0" if value == 0 else f"{value:.1e}"
    if kind == "cos":
        return f"{value:.6f}"
    if kind == "top1":
        return f"{value:.0%}"
    return str(value)


__all__ = [
    "BACKENDS",
    "BenchError",
    "BenchOptions",
    "BenchReport",
    "BenchRow",
    "TORCH_BACKENDS",
    "backend_availability",
    "bench_input",
    "check_options",
    "ensure_artifacts",
    "load_report",
    "plot_report",
    "polygraphy_commands",
    "run_bench",
]
