#!/usr/bin/env python
"""Linear inference mode vs the default mode: backbone CPU latency and peak memory, in one run.

The linear inference mode of the published code (`fixed_pool_size=N`, paper section 4.1) pools every
aggregated-attention stage to N x N instead of (H // sr) x (W // sr). At the default the pooled
keys grow with the input, so the attention of a stage costs O(pixels^2); with a fixed N it costs
O(pixels * N^2). This script measures what that means for a detection-size backbone input.

For every (variant, size) it builds the backbone twice with the same weights,
`create_model(variant, backbone=True, attention=A)` and the same with `fixed_pool_size=N`, and
times batch-1 forward passes under `torch.inference_mode()` with `torch.set_num_threads(--threads)`:
warm-up passes first (the first call at a size builds the stage geometry; the fast model also keeps
each block's position bias, which later calls reuse while the weights are unchanged), then the
timed passes interleaved (default, linear, linear, default, ...) so drift and other load on the
machine hit both modes alike; the median of --runs passes is reported.

Peak memory is measured apart, in a fresh Python process per (variant, size, mode), as in
benchmarks/bench_attention.py: after the model and its input exist, freed heap memory is returned
to the OS, the kernel's resident-set high-water mark is reset (/proc/self/clear_refs), and the
number is how far the resident set grew during one forward pass. "first" is the first call, which
also builds and keeps the per-size tables and the fast model's cached position biases (one
(heads, N, P) tensor per block); "steady" is a later call (activations and temporaries only).

    python benchmarks/bench_linear_mode.py                     # micro at 800x1333 and 512x512, N = 7
    python benchmarks/bench_linear_mode.py --variants tiny --sizes 800x1333 --runs 7 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from transnext_deploy import __version__, create_model
from transnext_deploy.machine import cpu_name, load_average
from transnext_deploy.memory import peak_rss_growth_mib
from transnext_deploy.resolution import parse_resolution

MODES = ("default", "linear")


def build(variant: str, mode: str, pool: int, attention: str, position_bias: str):
    torch.manual_seed(0)  # both modes get the same weights
    return create_model(variant, backbone=True, attention=attention, position_bias=position_bias,
                        fixed_pool_size=pool if mode == "linear" else None).eval()


def stage_facts(model, size: tuple[int, int]) -> list[dict]:
    """Per aggregated-attention stage: token grid, pool grid, and query-key scores per head (N * (L + P))."""
    facts = []
    for i, geo in enumerate(model.geometry(*size)):
        n, p = geo.grid[0] * geo.grid[1], geo.pool_grid[0] * geo.pool_grid[1]
        ws = model.config.window_sizes[i]
        local = ws * ws if ws else 0
        facts.append({"stage": i + 1, "grid": list(geo.grid), "pool": list(geo.pool_grid),
                      "scores_per_head": n * (local + p if ws else n)})
    return facts


# ----------------------------------------------------------------------------------- memory probe


def memory_probe(variant: str, size: tuple[int, int], mode: str, pool: int, attention: str, position_bias: str,
                 threads: int) -> dict:
    """Runs in its own process (see module docstring)."""
    torch.set_num_threads(threads)
    model = build(variant, mode, pool, attention, position_bias)
    x = torch.randn(1, 3, *size)
    with torch.inference_mode():
        first = peak_rss_growth_mib(lambda: model(x))
        steady = peak_rss_growth_mib(lambda: model(x)) if first is not None else None
    return {"first_mib": first, "steady_mib": steady}


def run_memory_probe(args, variant: str, size: tuple[int, int], mode: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-probe", variant, f"{size[0]}x{size[1]}", mode,
           "--pool", str(args.pool), "--attention", args.attention, "--position-bias", args.position_bias,
           "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"memory probe {variant}@{size[0]}x{size[1]} {mode} failed: {tail}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------- timing


def time_case(args, variant: str, size: tuple[int, int]) -> dict:
    models = {mode: build(variant, mode, args.pool, args.attention, args.position_bias) for mode in MODES}
    x = torch.randn(1, 3, *size)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    with torch.inference_mode():
        for _ in range(max(1, args.warmup)):
            for mode in MODES:
                models[mode](x)
        for i in range(args.runs):
            for mode in MODES if i % 2 == 0 else MODES[::-1]:  # each mode runs first equally often
                start = time.perf_counter()
                models[mode](x)
                times[mode].append((time.perf_counter() - start) * 1000)
    median = {mode: statistics.median(times[mode]) for mode in MODES}
    return {"variant": variant, "size": list(size), "default_ms": median["default"], "linear_ms": median["linear"],
            "time_ratio": median["default"] / median["linear"], "times_ms": times,
            "stages": {mode: stage_facts(models[mode], size) for mode in MODES}}


def _mib(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def _ratio(a, b) -> str:
    return "-" if a is None or b is None or b <= 0 else f"{a / b:.1f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["micro"], help="default: micro")
    parser.add_argument("--sizes", nargs="+", default=["800x1333", "512x512"],
                        help="backbone input sizes, SIDE or HEIGHTxWIDTH (default: 800x1333 512x512)")
    parser.add_argument("--pool", type=int, default=7, help="fixed_pool_size N of the linear mode (default 7, "
                                                            "the paper's choice for 224-trained weights)")
    parser.add_argument("--attention", default="fast", choices=("fast", "fused", "plain"),
                        help="attention implementation of both models (default fast, the exported form)")
    parser.add_argument("--position-bias", default="extrapolate", choices=("extrapolate", "interpolate"),
                        help="position-bias mode of both models (default extrapolate)")
    parser.add_argument("--runs", type=int, default=5, help="timed passes per mode (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes per mode first (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every number to this JSON file")
    parser.add_argument("--memory-probe", nargs=3, metavar=("VARIANT", "SIZE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.pool < 1:
        parser.error("--pool must be at least 1")

    if args.memory_probe:
        variant, size, mode = args.memory_probe
        print(json.dumps(memory_probe(variant, parse_resolution(size), mode, args.pool, args.attention,
                                      args.position_bias, args.threads)))
        return 0

    sizes = [parse_resolution(s) for s in args.sizes]
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    load_start = load_average()
    print(f"transnext-deploy {__version__}, torch {torch.__version__}, {args.threads} threads, {cpu_name()}, "
          f"os.cpu_count()={os.cpu_count()}")
    print(f"backbone, batch 1, fp32, attention {args.attention}, position bias {args.position_bias}, inference_mode; "
          f"default = pool grids (H // sr) x (W // sr), linear = fixed_pool_size {args.pool}; median of {args.runs} "
          f"interleaved runs after {args.warmup} warm-up runs; peak = resident-set growth during one forward pass, "
          "fresh process per mode")
    results = []
    for variant in args.variants:
        for size in sizes:
            case = time_case(args, variant, size)
            if not args.no_memory:
                for mode in MODES:
                    case[f"{mode}_memory"] = run_memory_probe(args, variant, size, mode)
            results.append(case)
            print(f"  done {variant}@{size[0]}x{size[1]}", file=sys.stderr, flush=True)

    header = (f"{'case':<18} {'default ms':>10} {'linear ms':>10} {'time':>7} {'default peak MiB':>17} "
              f"{'linear peak MiB':>16} {'steady peak':>11} {'first peak':>10}  {'stage-1 pool default/linear':>28}")
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        mem = {mode: r.get(f"{mode}_memory") or {} for mode in MODES}
        pools = [r["stages"][mode][0]["pool"] for mode in MODES]
        print(f"{r['variant'] + '@' + 'x'.join(map(str, r['size'])):<18} {r['default_ms']:>10.0f} "
              f"{r['linear_ms']:>10.0f} {r['time_ratio']:>6.1f}x "
              f"{_mib(mem['default'].get('steady_mib')) + ' (' + _mib(mem['default'].get('first_mib')) + ')':>17} "
              f"{_mib(mem['linear'].get('steady_mib')) + ' (' + _mib(mem['linear'].get('first_mib')) + ')':>16} "
              f"{_ratio(mem['default'].get('steady_mib'), mem['linear'].get('steady_mib')):>11} "
              f"{_ratio(mem['default'].get('first_mib'), mem['linear'].get('first_mib')):>10}  "
              f"{'x'.join(map(str, pools[0])) + ' / ' + 'x'.join(map(str, pools[1])):>28}")
        for mode in MODES:
            if "error" in mem[mode]:
                print(f"  {mem[mode]['error']}")
    print("time, steady peak, first peak: default / linear. Peak MiB: steady-state call (first call, which also "
          "builds the per-size tables and keeps the cached position biases)")
    elapsed = time.perf_counter() - started
    load = load_average()
    print(f"{elapsed:.0f} s in all; load average (1 min) {load_start} at the start, {load} at the end "
          f"(above {args.threads} means other work shared the CPUs and the timings are noisier)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "torch": torch.__version__, "threads": args.threads, "cpu": cpu_name(), "runs": args.runs,
            "warmup": args.warmup, "pool": args.pool, "attention": args.attention,
            "position_bias": args.position_bias, "seconds": elapsed, "load_average_1min": [load_start, load],
            "results": results}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
