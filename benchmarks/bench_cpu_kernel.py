#!/usr/bin/env python
"""The fused aggregated-attention op on the CPU: the host library against the PyTorch decomposition.

Part 1, the op alone. For transnext_tiny's aggregated-attention stages at 224 and 384 (batch 1,
head dim 24, window 3; heads 3/6/12 on grids 56/28/14 at 224 and 96/48/24 at 384; pool grid
grid // sr with sr 8/4/2, i.e. P = 49 at 224 and 144 at 384), with 1 and 2 threads, it times side by side:

* decomposition: `aggregated_attention_core` in eager PyTorch (torch.inference_mode,
  torch.set_num_threads(T)) -- what the fast model runs;
* host: `plugin_host.aggregated_attention_host(..., num_threads=T)` on zero-copy numpy views of the
  same tensors -- the library's fast kernel (what the custom-op graph on onnxruntime and
  attention="fused" in PyTorch call);
* reference: the same call with path="reference", the per-query arithmetic the CUDA kernel runs,
  which is how the library computed every call before the fast kernel (one query at a time,
  threads split by (batch, head));
* with --baseline-library PATH, also `transnext_aa_forward_f32` of another build of the library
  (e.g. one built from the sources before the fast kernel), called directly through ctypes.

Part 2, the whole model (tiny at 224, batch 1, 1 and 2 threads): onnxruntime on the custom-op graph
(`model.aa_plugin.onnx`, the op through the host library) and on the standard graph (`model.onnx`),
both through transnext_deploy.backends.onnxrt.cpu_session (--without-spinning adds both with onnxruntime's
worker-thread spinning off),
and eager PyTorch with attention="fast" and, where this checkout has it, attention="fused". Both
graphs are exported with transnext_deploy's export API (random seeded weights) into --work-dir,
by default a temporary directory removed at the end (about a minute).

Timed passes are interleaved across the runners of one row, in alternating order (ABBA), each after
a short pause (transnext_deploy.bench.measure.settle) so that the previous runner's worker threads are idle;
every number is the median of --runs passes after --warmup untimed ones, and every ratio compares
numbers of the same rounds. With one thread every runner computes on the calling thread, so the
script also prints that thread's CPU time, a cross-check that other load on the machine disturbs
much less than wall time. The targets (issue 13): host at least 2x faster than the decomposition
with 2 threads and at least as fast with 1 thread, for every shape; the custom-op graph the fastest
CPU artifact.

    python benchmarks/bench_cpu_kernel.py                      # about 3 minutes on an idle 2-core machine
    python benchmarks/bench_cpu_kernel.py --no-model --runs 31 --json out.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from transnext_deploy import __version__
from transnext_deploy.bench.measure import settle
from transnext_deploy.bench.work import ensure_artifacts, random_checkpoint
from transnext_deploy.machine import cpu_name, load_average
from transnext_deploy.ops.aggregated_attention import aggregated_attention_core
from transnext_deploy.ops.host import aggregated_attention_host, kernel_name, load_host_library

VARIANT = "tiny"
HEAD_DIM = 24
WINDOW = 3
# tiny's aggregated-attention stages: (heads, sr_ratio, stride of the stage's grid)
STAGES = ((3, 8, 4), (6, 4, 8), (12, 2, 16))
TARGET_RATIO = {1: 1.0, 2: 2.0}  # decomposition / host, per thread count


def stage_shapes(resolutions) -> list[dict]:
    shapes = []
    for resolution in resolutions:
        for heads, sr, stride in STAGES:
            grid = resolution // stride
            ph = pw = grid // sr  # the pool grid of a square stage grid
            shapes.append(dict(resolution=resolution, num_heads=heads, height=grid, width=grid, window_size=WINDOW,
                               pool_height=ph, pool_width=pw))
    return shapes


def random_inputs(shape: dict, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    nh, d, L = shape["num_heads"], HEAD_DIM, shape["window_size"] ** 2
    N, P, C = shape["height"] * shape["width"], shape["pool_height"] * shape["pool_width"], nh * HEAD_DIM

    def r(*size, scale=1.0):
        return torch.randn(*size, generator=g) * scale

    return [r(1, N, C), r(1, N, 2 * C), r(1, P, 2 * C), r(nh, d, scale=0.5), F.softplus(r(nh)) + 0.25,
            r(nh, L, scale=0.5), r(nh, d, L, scale=0.3), r(nh, L, scale=0.3), r(nh, N, P, scale=0.5)]


def baseline_runner(path: Path, arrays: list[np.ndarray], attrs: dict, threads: int):
    """transnext_aa_forward_f32 of another build of the library (C API version 1), through ctypes."""
    lib = ctypes.CDLL(str(path.resolve()))
    fn = lib.transnext_aa_forward_f32
    fn.restype = ctypes.c_int32
    fn.argtypes = [*([ctypes.c_void_p] * 10), *([ctypes.c_int64] * 8), ctypes.c_int32, ctypes.c_char_p,
                   ctypes.c_int64]
    out = np.empty_like(arrays[0])
    B, _, C = arrays[0].shape
    args = [*(a.ctypes.data for a in arrays), out.ctypes.data, B, C, attrs["num_heads"], attrs["height"],
            attrs["width"], attrs["window_size"], attrs["pool_height"], attrs["pool_width"], threads, None, 0]

    def run():
        if fn(*args) != 0:
            raise RuntimeError(f"{path}: transnext_aa_forward_f32 failed")
        return out

    return run


def interleaved(runners: dict, runs: int, warmup: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall times and CPU times of the calling thread (ms) of every runner, `runs` rounds in
    alternating order, after `warmup` rounds."""
    names = list(runners)
    for _ in range(warmup):
        for n in names:
            runners[n]()
    times = {n: [] for n in names}
    cpu = {n: [] for n in names}
    for i in range(runs):
        for n in (names if i % 2 == 0 else names[::-1]):
            settle()
            start, start_cpu = time.perf_counter(), time.thread_time()
            runners[n]()
            times[n].append((time.perf_counter() - start) * 1000)
            cpu[n].append((time.thread_time() - start_cpu) * 1000)
    return times, cpu


def measure_kernel(args) -> list[dict]:
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for k, shape in enumerate(stage_shapes(args.resolutions)):
            attrs = {key: value for key, value in shape.items() if key != "resolution"}
            tensors = random_inputs(shape, seed=k)
            arrays = [t.numpy() for t in tensors]  # views: the host reads the tensors' memory
            runners = {
                "decomposition": lambda: aggregated_attention_core(*tensors, **attrs),
                "host": lambda: aggregated_attention_host(*arrays, **attrs, num_threads=threads),
                "reference": lambda: aggregated_attention_host(*arrays, **attrs, num_threads=threads,
                                                               path="reference"),
            }
            if args.portable:
                runners["portable"] = lambda: aggregated_attention_host(*arrays, **attrs, num_threads=threads,
                                                                        path="portable")
            if args.baseline_library is not None:
                runners["baseline"] = baseline_runner(args.baseline_library, arrays, attrs, threads)
            with torch.inference_mode():
                expected = aggregated_attention_core(*tensors, **attrs).numpy()
                max_abs = {n: float(np.abs(np.asarray(f()) - expected).max()) for n, f in runners.items()
                           if n != "decomposition"}
                times, cpu = interleaved(runners, args.runs, args.warmup)
            med = {n: statistics.median(t) for n, t in times.items()}
            rows.append({**shape, "threads": threads, "median_ms": med, "times_ms": times,
                         "min_ms": {n: min(t) for n, t in times.items()},
                         "cpu_median_ms": {n: statistics.median(t) for n, t in cpu.items()},
                         "max_abs_vs_decomposition": max_abs,
                         "ratio": {n: med["decomposition"] / med[n] for n in med if n != "decomposition"}})
            print(f"  measured {threads} thread(s), {shape['num_heads']} heads {shape['height']}x{shape['width']}",
                  file=sys.stderr, flush=True)
    return rows


def measure_model(args, work_dir: Path) -> list[dict]:
    from transnext_deploy.artifacts import PLUGIN_FILE, STANDARD_FILE
    from transnext_deploy.backends.onnxrt import cpu_session
    from transnext_deploy.export import ExportOptions, build_model

    resolution = (224, 224)
    checkpoint = random_checkpoint(VARIANT, args.seed, work_dir)
    artifact = ensure_artifacts(VARIANT, [resolution], checkpoint, work_dir, max(args.threads),
                                progress=lambda r, s: print(f"  export {r[0]}x{r[1]}: {s}", file=sys.stderr,
                                                            flush=True))[resolution]
    models = {}
    for implementation in ("fast", "fused"):
        models[implementation], _ = build_model(ExportOptions(VARIANT, checkpoint=str(checkpoint)), resolution)
        models[implementation].set_attention(implementation)
    x = np.random.default_rng(args.seed).standard_normal((1, 3, *resolution)).astype(np.float32)
    xt = torch.from_numpy(x)
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        custom = cpu_session(artifact / PLUGIN_FILE, threads=threads)
        standard = cpu_session(artifact / STANDARD_FILE, threads=threads)
        runners = {"ort custom-op graph": lambda: custom.run(None, {"images": x})[0],
                   "ort standard graph": lambda: standard.run(None, {"images": x})[0]}
        if threads > 1 and args.without_spinning:
            quiet_custom = cpu_session(artifact / PLUGIN_FILE, threads=threads, spinning=False)
            quiet_standard = cpu_session(artifact / STANDARD_FILE, threads=threads, spinning=False)
            runners["ort custom-op graph, no spinning"] = lambda: quiet_custom.run(None, {"images": x})[0]
            runners["ort standard graph, no spinning"] = lambda: quiet_standard.run(None, {"images": x})[0]
        for implementation, model in models.items():
            runners[f"torch eager {implementation}"] = lambda model=model: model(xt)
        with torch.inference_mode():
            expected = models["fast"](xt).numpy()
            max_abs = {n: float(np.abs(np.asarray(f()) - expected).max()) for n, f in runners.items()}
            times, cpu = interleaved(runners, args.model_runs, args.warmup)
        med = {n: statistics.median(t) for n, t in times.items()}
        rows.append({"threads": threads, "median_ms": med, "times_ms": times, "max_abs_vs_eager_fast": max_abs,
                     "cpu_median_ms": {n: statistics.median(t) for n, t in cpu.items()}})
        print(f"  measured the model with {threads} thread(s)", file=sys.stderr, flush=True)
    return rows


def print_kernel(rows: list[dict], columns: list[str]) -> bool:
    print("\nThe op alone (ms per call, median; ratio = decomposition / that column; higher is better; min-based:\n"
          "decomposition / host from each one's fastest pass, the least disturbed by other load)")
    head = f"{'threads':>7} {'res':>4} {'heads':>5} {'grid':>6} {'P':>4} "
    head += "".join(f"{c + ' ms':>17}" for c in columns)
    head += "".join(f"{'decomp/' + c:>18}" for c in columns if c != "decomposition")
    print(head + f"{'target':>15}{'min-based':>11}")
    met = True
    for row in rows:
        med, ratio = row["median_ms"], row["ratio"]
        line = (f"{row['threads']:>7} {row['resolution']:>4} {row['num_heads']:>5} "
                f"{str(row['height']) + 'x' + str(row['width']):>6} {row['pool_height'] * row['pool_width']:>4} ")
        line += "".join(f"{med[c]:>17.3f}" for c in columns)
        line += "".join(f"{ratio[c]:>17.2f}x" for c in columns if c != "decomposition")
        target = TARGET_RATIO.get(row["threads"])
        if target is not None:
            ok = ratio["host"] >= target
            met &= ok
            line += f"{'>=' + format(target, 'g') + 'x ' + ('met' if ok else 'MISSED'):>15}"
        fastest = row["min_ms"]
        line += f"{fastest['decomposition'] / fastest['host']:>10.2f}x"
        print(line)
    single = [row for row in rows if row["threads"] == 1]
    if single:
        # With one thread every runner computes on the calling thread, so its CPU time is the work
        # itself, much less disturbed than wall time by other load on the machine.
        print("1 thread, CPU time of the calling thread (ms, median; less sensitive to other load):")
        for row in single:
            cpu = row["cpu_median_ms"]
            print(f"  {row['resolution']} {row['num_heads']:>2} heads {row['height']}x{row['width']}: "
                  + ", ".join(f"{c} {cpu[c]:.3f}" for c in columns)
                  + f"; decomposition / host {cpu['decomposition'] / cpu['host']:.2f}x")
    worst = max(v for row in rows for v in row["max_abs_vs_decomposition"].values())
    print(f"largest |C++ - decomposition| over all outputs: {worst:.1e}")
    return met


def print_model(rows: list[dict]) -> None:
    print(f"\nThe whole model: transnext_{VARIANT} at 224, batch 1 (ms per image, median)")
    for row in rows:
        med = row["median_ms"]
        fastest = min(med, key=med.get)
        cells = ", ".join(f"{n} {t:.1f} ({row['max_abs_vs_eager_fast'][n]:.0e})" for n, t in med.items())
        print(f"  {row['threads']} thread(s): {cells}  [max-abs vs eager fast in brackets]")
        ratio = med["ort standard graph"] / med["ort custom-op graph"]
        print(f"    custom-op graph vs standard graph: {ratio:.2f}x faster; fastest: {fastest}"
              + ("" if fastest.startswith("ort custom-op graph") else "  (the custom-op graph is NOT the fastest)"))
        if row["threads"] == 1:
            cpu = row["cpu_median_ms"]
            print("    CPU time of the calling thread: " + ", ".join(f"{n} {t:.1f}" for n, t in cpu.items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolutions", nargs="+", type=int, default=[224, 384], help="default: 224 384")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="default: 1 2")
    parser.add_argument("--runs", type=int, default=15, help="timed passes per runner and shape (default 15)")
    parser.add_argument("--model-runs", type=int, default=15, help="timed passes per runner for the model (default 15)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed passes per runner first (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--portable", action="store_true", help="also time the portable (no AVX2) kernel")
    parser.add_argument("--baseline-library", type=Path, metavar="PATH",
                        help="also time transnext_aa_forward_f32 of this build of libtransnext_aa_host.so")
    parser.add_argument("--no-model", action="store_true", help="skip the whole-model part")
    parser.add_argument("--without-spinning", action="store_true",
                        help="with more than one thread, also time both graphs with onnxruntime's worker-thread "
                             "spinning off (session.intra_op.allow_spinning=0; on by default)")
    parser.add_argument("--work-dir", type=Path, help="where to export the model (default: a temporary directory)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every number to this file")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 1 or args.model_runs < 1:
        parser.error("--runs, --model-runs and --warmup must be at least 1")
    if min(args.threads) < 1:
        parser.error("--threads must be at least 1")
    if args.baseline_library is not None and not args.baseline_library.is_file():
        parser.error(f"--baseline-library {args.baseline_library} is not a file")

    started = time.perf_counter()
    lib = load_host_library()
    print(f"transnext-deploy {__version__}, torch {torch.__version__}, onnxruntime "
          f"{__import__('onnxruntime').__version__}, {cpu_name()}, load average {load_average()}")
    print(f"host library {lib._name}: kernel {kernel_name('auto')}; median of {args.runs} interleaved passes after "
          f"{args.warmup} warm-up passes", flush=True)
    kernel_rows = measure_kernel(args)
    columns = ["decomposition", "host", "reference"] + (["portable"] if args.portable else []) \
        + (["baseline"] if args.baseline_library is not None else [])
    model_rows = []
    if not args.no_model:
        if args.work_dir is not None:
            args.work_dir.mkdir(parents=True, exist_ok=True)
            model_rows = measure_model(args, args.work_dir)
        else:
            with tempfile.TemporaryDirectory(prefix="bench_cpu_kernel_") as tmp:
                model_rows = measure_model(args, Path(tmp))
    met = print_kernel(kernel_rows, columns)
    print(f"targets (decomposition / host): {', '.join(f'>= {v:g}x with {k} thread(s)' for k, v in TARGET_RATIO.items())}"
          f" -> {'all met' if met else 'NOT all met'}")
    if model_rows:
        print_model(model_rows)
    elapsed = time.perf_counter() - started
    print(f"\n{elapsed:.0f} s in all; load average now {load_average()} (above the thread count means other work "
          "shared the CPUs and the timings are noisier)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cpu": cpu_name(), "kernel": kernel_name("auto"), "seconds": elapsed,
                                         "runs": args.runs, "warmup": args.warmup, "kernel_rows": kernel_rows,
                                         "model_rows": model_rows, "targets": TARGET_RATIO}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
