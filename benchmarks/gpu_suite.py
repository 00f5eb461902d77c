#!/usr/bin/env python
"""The GPU suite: one command, one GPU, at most ~5 minutes, no network; writes JSON and a PNG.

    python -m transnext_deploy.cli build-plugin --target cuda --cuda-arch 90 && \\
        PYTHONPATH=. python benchmarks/gpu_suite.py --out results/ [--tensorrt-include DIR] [--published-source DIR]

Sections, in this order, each one recorded in the JSON whatever happens to the others:
  lifecycle  the plugin life-cycle driver (plugins/aggregated_attention/lifecycle/):
             the TensorRT plugin's IPluginV3 life cycle on the GPU against the host library, no
             libnvinfer. Built here when needed; needs nvcc and the TensorRT headers
             (--tensorrt-include or $TENSORRT_INCLUDE_DIR), otherwise skipped with the reason.
             With --device cpu it runs the driver's --no-gpu interface checks.
  kernel     per call: the kernel (torch.ops.transnext.aggregated_attention) vs the PyTorch
             decomposition (aggregated_attention_core), for the variant's three aggregated-
             attention stages at each resolution, batch 1 and 32, fp32 and fp16, with effective
             GB/s = bytes moved per the kernel's traffic model (aggregatedAttentionKernel.cu) / time.
  model      whole model: img/s at --batch and batch-1 latency for attention plain, fast and fused
             (and the published model with --published-source), fp32 and fp16 (autocast), eager,
             CUDA graph and torch.compile.
Timing: CUDA events around each call (perf_counter on the CPU), warm-up first, medians. A time
budget (--budget) orders the work by priority; what does not fit is recorded as skipped with the
reason, so the run always ends in time. --device cpu --quick is a dry run of every code path on
small CPU shapes (it is what the tests run).

Imports only torch, numpy and this package (PYTHONPATH=. from a checkout); matplotlib draws the PNG
when installed, otherwise benchmarks/simple_png.py does.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # simple_png, published_model
from published_model import load_published  # noqa: E402
from simple_png import bar_chart  # noqa: E402

from transnext_deploy import __version__, artifacts, create_model  # noqa: E402
from transnext_deploy import plugin as plugin_build  # noqa: E402
from transnext_deploy.compare import error_stats  # noqa: E402
from transnext_deploy.models import VARIANTS  # noqa: E402
from transnext_deploy.models.position_bias import stage_grids  # noqa: E402
from transnext_deploy.ops import fused_op  # noqa: E402
from transnext_deploy.ops.aggregated_attention import aggregated_attention_core  # noqa: E402
from transnext_deploy.ops.contract import INPUT_NAMES, input_shapes  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
IMPLS = ("plain", "fast", "fused")
MODES = ("eager", "cudagraph", "compile")


class Budget:
    """Seconds left of the run; work that would not fit is skipped with a recorded reason."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.started = time.perf_counter()

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.started)

    def refuse(self, needs: float) -> str | None:
        left = self.left()
        return None if left >= needs else f"skipped: time budget ({left:.0f} s left, needs ~{needs:.0f} s)"


def one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:400]


# --------------------------------------------------------------------------------------------- timing


def measure(fn, device: str, *, warmup: int, reps: int, max_seconds: float) -> dict:
    """Median (and spread) of `reps` calls after `warmup`; stops early once max_seconds are spent
    (after 3 calls). CUDA: events around each call on the current stream."""
    for _ in range(warmup):
        fn()
    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
    times: list[float] = []
    started = time.perf_counter()
    for _ in range(reps):
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        if len(times) >= 3 and time.perf_counter() - started > max_seconds:
            break
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "reps": len(times)}


# --------------------------------------------------------------------------------------------- (a) lifecycle


def lifecycle_section(args, budget: Budget) -> dict:
    headers = args.tensorrt_include or next(iter(os.environ.get("TENSORRT_INCLUDE_DIR", "").split(os.pathsep)), "")
    if not headers:
        return {"status": "skipped", "reason": "no TensorRT headers: pass --tensorrt-include DIR (a folder with "
                                               "NvInfer.h) or set TENSORRT_INCLUDE_DIR; the driver needs them to compile"}
    if not (Path(headers) / "NvInfer.h").is_file():
        return {"status": "skipped", "reason": f"{headers} has no NvInfer.h"}
    refused = budget.refuse(60)
    if refused:
        return {"status": "skipped", "reason": refused}
    arch = "".join(map(str, torch.cuda.get_device_capability())) if args.device == "cuda" else "80"
    build_dir = Path(args.build_dir) / "lifecycle"
    started = time.perf_counter()
    try:
        built = plugin_build.build_plugin(targets=("lifecycle",), cuda_archs=[arch], build_dir=build_dir,
                                          tensorrt_include_dir=headers, jobs=os.cpu_count() or 2)
    except plugin_build.PluginBuildError as exc:
        return {"status": "skipped", "reason": f"cannot build the driver: {exc}"}
    build_s = time.perf_counter() - started
    cmd = [str(built.libraries["lifecycle"])]
    if args.device == "cpu":
        cmd.append("--no-gpu")
    if args.quick:
        cmd.append("--quick")
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=max(30.0, budget.left() - 30))
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": "the driver ran out of the time budget", "command": cmd}
    result = parse_lifecycle(proc.stdout)
    result.update(command=" ".join(cmd), returncode=proc.returncode, build_seconds=round(build_s, 1),
                  run_seconds=round(time.perf_counter() - started, 1), tensorrt_include=headers,
                  status="ok" if proc.returncode == 0 else "failed")
    if proc.returncode != 0:
        result["reason"] = f"driver exit status {proc.returncode}: " + (result["failures"][:3] or [proc.stdout[-500:]])[0]
    return result


_CASE = re.compile(r"^(PASS|FAIL) (\S+) (fp32|fp16) \[(.*?)\] enqueue vs host library: max-abs (\S+) relative (\S+) "
                   r"\(tolerance (\S+)\)")


def parse_lifecycle(output: str) -> dict:
    """The driver's lines as records: numerical cases, refusals, failures and the summary."""
    cases, refusals, failures = [], [], []
    summary = device = None
    for line in output.splitlines():
        match = _CASE.match(line)
        if match:
            ok, name, precision, shape, max_abs, rel, tol = match.groups()
            cases.append({"case": name, "precision": precision, "shape": shape, "max_abs": float(max_abs),
                          "relative": float(rel), "tolerance": float(tol), "ok": ok == "PASS"})
        elif line.startswith(("PASS refuse", "FAIL refuse")):
            what, _, message = line[5:].partition(": ")
            refusals.append({"check": what, "ok": line.startswith("PASS"), "message": message})
        if line.startswith("FAIL"):
            failures.append(line)
        elif line.startswith("summary:"):
            summary = line
        elif line.startswith("device:"):
            device = line.split(":", 1)[1].strip()
    worst = {p: max((c["relative"] for c in cases if c["precision"] == p), default=None) for p in ("fp32", "fp16")}
    return {"device": device, "summary": summary, "cases": cases, "refusals": refusals, "failures": failures,
            "worst_relative": worst, "life_cycles": sum(" life cycle: " in ln for ln in output.splitlines())}


# --------------------------------------------------------------------------------------------- (b) kernel


def stage_shapes(variant: str, resolution: int) -> list[dict]:
    config = VARIANTS[variant]
    shapes = []
    for i, (grid, window) in enumerate(zip(stage_grids(resolution, resolution), config.window_sizes)):
        if not window or config.sr_ratios[i] == 1:
            continue
        ph, pw = grid[0] // config.sr_ratios[i], grid[1] // config.sr_ratios[i]
        nh = config.num_heads[i]
        shapes.append({"stage": i + 1, "num_heads": nh, "head_dim": config.embed_dims[i] // nh, "height": grid[0],
                       "width": grid[1], "window_size": window, "pool_height": ph, "pool_width": pw})
    return shapes


def kernel_inputs(shape: dict, batch: int, dtype: torch.dtype, device: str) -> tuple[list, dict]:
    attrs = {k: shape[k] for k in ("num_heads", "height", "width", "window_size", "pool_height", "pool_width")}
    shapes = input_shapes(batch, shape["head_dim"], **attrs)
    g = torch.Generator().manual_seed(0)
    tensors = [torch.randn(shapes[n], generator=g).to(device=device, dtype=dtype) for n in INPUT_NAMES]
    tensors[4] = tensors[4].abs() + 0.25  # temperature_scale = softplus(...) > 0
    return tensors, attrs


def ensure_cuda_library(args, notes: list[str]) -> str | None:
    """Why the op cannot run its CUDA kernel (None when it can); builds the library once if allowed."""
    problem = fused_op.implementation("cuda")
    if not problem.startswith("not available"):
        return None
    if args.no_build:
        return problem
    arch = "".join(map(str, torch.cuda.get_device_capability()))
    try:
        built = plugin_build.build_plugin(targets=("cuda",), cuda_archs=[arch], build_dir=args.build_dir,
                                          jobs=os.cpu_count() or 2)
    except plugin_build.PluginBuildError as exc:
        return f"{problem}; building it failed: {exc}"
    os.environ[artifacts.CUDA_LIBRARY_ENV] = str(built.libraries["cuda_api"])
    notes.append(f"built libtransnext_aa_cuda.so for sm_{arch} in {built.build_dir}")
    problem = fused_op.implementation("cuda")
    return problem if problem.startswith("not available") else None


def kernel_section(args, budget: Budget, notes: list[str]) -> dict:
    device = args.device
    kernel_problem = ensure_cuda_library(args, notes) if device == "cuda" else None
    rows = []
    for resolution in args.resolutions:
        for shape in stage_shapes(args.variant, resolution):
            for batch in args.kernel_batches:
                for name, dtype in DTYPES.items():
                    row = {"resolution": resolution, "batch": batch, "dtype": name, **shape,
                           "implementation": fused_op.implementation(device, dtype)}
                    rows.append(row)
                    refused = budget.refuse(8 + args.reserve)
                    if refused:
                        row["status"] = refused
                        continue
                    try:
                        kernel_case(row, shape, batch, dtype, device, args, kernel_problem)
                    except Exception as exc:  # noqa: BLE001 - recorded, the suite goes on
                        row["status"] = f"failed: {one_line(exc)}"
                    finally:
                        if device == "cuda":
                            torch.cuda.empty_cache()
    return {"rows": rows, "traffic_model": "aggregatedAttentionKernel.cu: q, kv, output once; pooled kv once per "
                                           "block of 128 queries; pool_bias once per batch element; parameters once",
            "kernel_problem": kernel_problem}


def kernel_case(row: dict, shape: dict, batch: int, dtype: torch.dtype, device: str, args, kernel_problem) -> None:
    tensors, attrs = kernel_inputs(shape, batch, dtype, device)
    values = [attrs[k] for k in ("num_heads", "height", "width", "window_size", "pool_height", "pool_width")]
    nbytes = fused_op.kernel_traffic_bytes(batch, shape["height"], shape["width"], shape["num_heads"] * shape["head_dim"],
                                           shape["num_heads"], shape["window_size"], shape["pool_height"],
                                           shape["pool_width"], tensors[0].element_size())
    row["traffic_bytes"] = nbytes
    timing = dict(warmup=3, reps=args.reps, max_seconds=1.5)
    with torch.inference_mode():
        decomposition = aggregated_attention_core(*tensors, **attrs)
        row["decomposition"] = measure(lambda: aggregated_attention_core(*tensors, **attrs), device, **timing)
        if kernel_problem:
            row["status"] = f"kernel not available: {kernel_problem}"
            return
        out = fused_op.aggregated_attention(*tensors, *values)
        row["kernel"] = measure(lambda: fused_op.aggregated_attention(*tensors, *values), device, **timing)
    row["kernel_vs_decomposition"] = error_stats(decomposition, out).as_dict()
    for key in ("kernel", "decomposition"):
        row[key]["gb_s"] = nbytes / (row[key]["median_ms"] / 1000) / 1e9
    row["speedup"] = row["decomposition"]["median_ms"] / row["kernel"]["median_ms"]
    row["status"] = "ok"


# --------------------------------------------------------------------------------------------- (c) model


def model_section(args, budget: Budget, notes: list[str]) -> dict:
    device, res = args.device, args.model_resolution
    torch.manual_seed(0)
    base = create_model(args.variant, img_size=res).eval()
    models = {impl: copy.deepcopy(base).set_attention(impl).to(device) for impl in IMPLS}
    if args.published_source:
        try:
            factory, published_notes = load_published(Path(args.published_source), args.variant)
            notes.extend(published_notes)
            models["published"] = factory(img_size=res, pretrain_size=224).eval().to(device)
        except Exception as exc:  # noqa: BLE001
            notes.append(f"published model not loaded: {one_line(exc)}")
    rows: list[dict] = []
    agreement = model_agreement(models, res, device)
    dtypes = args.model_dtypes
    batches = (args.batch, 1)
    # Priority: every eager and CUDA-graph number first (seconds each), then compiles (tens of seconds
    # each): fp16 throughput first, as the issue compares.
    plan = [(m, d, mode, b) for mode in ("eager", "cudagraph") for d in dtypes for m in models for b in batches]
    plan += [(m, d, "compile", b) for d in sorted(dtypes, key=lambda d: d != "fp16") for b in args.compile_batches
             for m in args.compile_models if m in models]
    compile_estimate = args.compile_estimate
    for impl, dtype_name, mode, batch in plan:
        row = {"model": impl, "dtype": dtype_name, "mode": mode, "batch": batch, "resolution": res}
        rows.append(row)
        if mode == "cudagraph" and device != "cuda":
            row["status"] = "skipped: CUDA graphs need a CUDA device"
            continue
        refused = budget.refuse((compile_estimate if mode == "compile" else 6) + args.reserve)
        if refused:
            row["status"] = refused
            continue
        try:
            model_case(row, models[impl], DTYPES[dtype_name], mode, batch, res, device, args)
        except Exception as exc:  # noqa: BLE001 - recorded, the suite goes on
            row["status"] = f"failed: {one_line(exc)}"
            if args.verbose:
                traceback.print_exc()
        if mode == "compile" and "compile_s" in row:
            compile_estimate = max(row["compile_s"] * 1.2, 5.0)
        if device == "cuda":
            torch.cuda.empty_cache()
    return {"rows": rows, "agreement_fp32_batch1": agreement, "resolution": res, "variant": args.variant,
            "fp16": "torch.autocast(float16); the published model and ours alike"}


def model_agreement(models: dict, res: int, device: str) -> dict:
    """Max-abs / relative error of each model's logits against attention='plain' (fp32, batch 1)."""
    x = torch.randn(1, 3, res, res, generator=torch.Generator().manual_seed(1)).to(device)
    out = {}
    with torch.inference_mode():
        try:
            reference = models["plain"](x)
        except Exception as exc:  # noqa: BLE001
            return {"error": one_line(exc)}
        for name in ("fast", "fused"):
            try:
                stats = error_stats(reference, models[name](x))
                out[name] = {"max_abs": stats.max_abs, "relative": stats.relative}
            except Exception as exc:  # noqa: BLE001
                out[name] = {"error": one_line(exc)}
    return out


def model_case(row: dict, model, dtype: torch.dtype, mode: str, batch: int, res: int, device: str, args) -> None:
    x = torch.randn(batch, 3, res, res, device=device)
    fp16 = dtype == torch.float16
    # CUDA graphs replay the autocast casts of the weights too: the cast cache must be off.
    autocast = (torch.autocast(device, dtype=torch.float16, cache_enabled=False) if fp16 else nullcontext())
    timing = dict(warmup=args.model_warmup, reps=args.model_reps, max_seconds=args.max_seconds)

    def run(m):
        with torch.inference_mode(), autocast:
            return m(x)

    if mode == "eager":
        result = measure(lambda: run(model), device, **timing)
    elif mode == "compile":
        compiled = torch.compile(model, backend=args.compile_backend, dynamic=False)
        started = time.perf_counter()
        run(compiled)
        if device == "cuda":
            torch.cuda.synchronize()
        row["compile_s"] = round(time.perf_counter() - started, 1)
        result = measure(lambda: run(compiled), device, **timing)
    else:
        result = cuda_graph_timing(model, x, autocast, timing)
    row.update(result)
    row["img_s"] = batch / (result["median_ms"] / 1000)
    row["status"] = "ok"


def cuda_graph_timing(model, x, autocast, timing: dict) -> dict:
    """Capture one forward pass (after warm-up on a side stream, as torch.cuda.graphs asks) and time replays."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.inference_mode(), autocast:
        for _ in range(3):
            model(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), autocast, torch.cuda.graph(graph):
        model(x)
    return measure(graph.replay, "cuda", **timing)


# --------------------------------------------------------------------------------------------- output


def machine(device: str) -> dict:
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "transnext_deploy": __version__, "device": device, "cpus": os.cpu_count()}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["capability"] = "sm_" + "".join(map(str, torch.cuda.get_device_capability()))
    return info


def write_png(report: dict, path: Path) -> str:
    """Bars: kernel vs decomposition time per kernel case; img/s per model case. Returns how it was drawn."""
    kernel = [r for r in report["kernel"].get("rows", []) if r.get("status") == "ok"]
    model = [r for r in report["model"].get("rows", []) if r.get("status") == "ok" and r["batch"] != 1]
    groups = [
        ("kernel vs decomposition, speed-up per call",
         [(f"s{r['stage']}@{r['resolution']} b{r['batch']} {r['dtype']}", r["speedup"]) for r in kernel], "x"),
        (f"whole model img/s, batch {report['args']['batch']}",
         [(f"{r['model']} {r['dtype']} {r['mode']}", r["img_s"]) for r in model], ""),
    ]
    title = f"transnext gpu suite: {report['machine'].get('gpu', report['machine']['device'])}"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        bar_chart(path, title, groups)
        return "simple_png (matplotlib not installed)"
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, max(4, 0.28 * max(len(g[1]) for g in groups) + 1.5)))
    for ax, (label, bars, unit) in zip(axes, groups):
        names = [b[0] for b in bars][::-1]
        values = [b[1] for b in bars][::-1]
        ax.barh(names, values, color="#2471a3")
        for i, v in enumerate(values):
            ax.annotate(f"{v:.3g}{unit}", (v, i), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
        ax.set_title(label, fontsize=10)
        ax.tick_params(axis="y", labelsize=7)
        if not bars:
            ax.text(0.5, 0.5, "no measurement", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return "matplotlib"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results", help="Folder for gpu_suite.json and gpu_suite.png (default: results).")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cuda (default) for the real run; cpu for a dry run of the code paths on small shapes.")
    p.add_argument("--quick", action="store_true",
                   help="Smoke run: one resolution, batch 1 kernel cases, fewer repetitions, driver --quick.")
    p.add_argument("--budget", type=float, default=250.0,
                   help="Seconds of work the run plans for (default 250: with start-up and a last compile running over, under 5 minutes).")
    p.add_argument("--tensorrt-include", default=None,
                   help="TensorRT include folder (NvInfer.h) for the life-cycle driver. Default: first entry of "
                        "$TENSORRT_INCLUDE_DIR; without headers that section is skipped.")
    p.add_argument("--published-source", default=None,
                   help="Checkout of the published TransNeXt code (or its classification/ folder): its "
                        "classification/transnext.py is imported from there (and only it, with the attention module "
                        "it imports) and timed too.")
    p.add_argument("--variant", default="tiny", choices=list(VARIANTS), help="Model variant (default tiny).")
    p.add_argument("--batch", type=int, default=None, help="Throughput batch (default 64 on cuda, 2 on cpu).")
    p.add_argument("--build-dir", default=None, help="Where libraries and the driver are built if needed "
                                                      "(default: the build directory of `build-plugin`).")
    p.add_argument("--no-build", action="store_true", help="Never build libtransnext_aa_cuda.so here.")
    p.add_argument("--compile-backend", default="inductor",
                   help="torch.compile backend (default inductor; 'eager' makes a cheap dry run).")
    p.add_argument("--verbose", action="store_true", help="Print tracebacks of failed cases.")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error(f"--device cuda: torch {torch.__version__} sees no CUDA device (use --device cpu for a dry run)")
    if args.budget <= 0:
        p.error("--budget must be > 0")
    cpu = args.device == "cpu"
    args.build_dir = args.build_dir or str(plugin_build.default_build_dir())
    args.batch = args.batch or (2 if cpu else 64)
    if args.batch < 1:
        p.error("--batch must be >= 1")
    args.resolutions = [64] if cpu else ([224] if args.quick else [224, 384])
    args.kernel_batches = [1] if (cpu or args.quick) else [1, 32]
    args.model_resolution = 64 if cpu else 224
    args.model_dtypes = ["fp32"] if cpu else list(DTYPES)  # fp16 autocast on the CPU is slow and not the point
    args.reps = 5 if cpu or args.quick else 30
    args.model_reps = 3 if cpu or args.quick else 15
    args.model_warmup = 1 if cpu else 2
    args.max_seconds = 2.0
    args.compile_estimate = 30.0 if cpu else 75.0
    # On the CPU one compile exercises the path; on the GPU every model, fastest-to-matter first.
    args.compile_models = ["fused"] if cpu else ["fused", "fast", "published", "plain"]
    args.compile_batches = [args.batch] if cpu else [args.batch, 1]
    args.reserve = 5.0  # kept for writing the outputs
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    budget = Budget(args.budget)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    if args.device == "cpu":
        notes.append("--device cpu: a dry run of the code paths on small shapes; no number here is a GPU result")
    report = {"machine": machine(args.device), "args": {k: v for k, v in vars(args).items()},
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "notes": notes}
    for name, section in (("lifecycle", lambda: lifecycle_section(args, budget)),
                          ("kernel", lambda: kernel_section(args, budget, notes)),
                          ("model", lambda: model_section(args, budget, notes))):
        print(f"[gpu_suite] {name} ({budget.left():.0f} s of budget left)", flush=True)
        try:
            report[name] = section()
        except Exception as exc:  # noqa: BLE001 - a broken section is recorded, the others still run
            report[name] = {"status": f"failed: {one_line(exc)}", "rows": []}
            if args.verbose:
                traceback.print_exc()
    report["seconds"] = round(time.perf_counter() - budget.started, 1)
    png = out / "gpu_suite.png"
    try:
        report["png"] = {"path": str(png), "drawn_with": write_png(report, png)}
    except Exception as exc:  # noqa: BLE001
        report["png"] = {"path": None, "note": f"no PNG: {one_line(exc)}"}
    path = out / "gpu_suite.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"[gpu_suite] wrote {path} and {report['png']['path']} in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
