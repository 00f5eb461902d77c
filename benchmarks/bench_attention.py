#!/usr/bin/env python
"""Plain vs fast aggregated attention: whole-model CPU latency and peak memory, in one run.

For every (variant, resolution) it builds the classifier twice with the same weights,
`create_model(name, img_size=R, attention="plain")` and `attention="fast"`, and times batch-1
forward passes under `torch.inference_mode()` with `torch.set_num_threads(2)`:

* warm-up passes first (the first call builds the stage geometry; the fast path also caches its
  position bias, which later calls reuse while the weights are unchanged);
* then the timed passes, interleaved: plain, fast, fast-linear, fast-linear, fast, plain, ... so
  drift and noise on the machine hit every implementation alike; the median of --runs passes is
  reported.

"fast-linear" is the fast model with its token projections (q, kv, proj, fc1, fc2) left on
F.linear instead of oneDNN (`transnext_deploy.models.transnext.ONEDNN_PROJECTIONS = False`, see
`token_linear`): plain/fast-linear is what the attention rewrite alone buys, plain/fast what the
fast model as shipped buys.

Peak memory is measured apart, in a fresh Python process per (variant, resolution,
implementation), so the implementations cannot share allocator caches: after the model and its
input exist, freed heap memory is returned to the OS (glibc malloc_trim), the kernel's resident-set
high-water mark is reset (/proc/self/clear_refs), and the reported number is
`VmHWM - VmRSS before the call`: how much the resident set grew at its peak during one forward
pass (activations, temporaries, and anything the call keeps). "first" is the first call
(including the stage geometry and caches it builds and keeps), "steady" a later call. Where the
high-water mark cannot be reset, the first call is measured with getrusage's ru_maxrss instead
and "steady" is left empty.

    python benchmarks/bench_attention.py                      # tiny, micro at 224, 384; ~1.5 min on 2 idle cores
    python benchmarks/bench_attention.py --variants tiny --resolutions 224 --runs 30 --json out.json
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
from transnext_deploy.memory import peak_rss_growth_mib, proc_status_kib, release_free_memory
from transnext_deploy.models import transnext as transnext_module

IMPLS = ("plain", "fast")  # the two implementations of the model (peak memory is probed for these)
TIMED = ("plain", "fast", "fast-linear")
MIB = 1024 * 1024


# ----------------------------------------------------------------------------------- memory probe


def memory_probe(variant: str, resolution: int, impl: str, threads: int) -> dict:
    """Runs in its own process (see module docstring)."""
    import resource

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(variant, img_size=resolution, attention=impl).eval()
    x = torch.randn(1, 3, resolution, resolution)
    with torch.inference_mode():
        first = peak_rss_growth_mib(lambda: model(x))
        method = "VmHWM reset via /proc/self/clear_refs"
        if first is None:  # fall back to the process-lifetime maximum (includes model construction)
            release_free_memory()
            rss = proc_status_kib("VmRSS")
            base_kib = rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            model(x)
            first = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_kib) / 1024
            steady = None
            method = "getrusage ru_maxrss (first call only)"
        else:
            steady = peak_rss_growth_mib(lambda: model(x))
    return {"first_mib": first, "steady_mib": steady, "method": method}


def run_memory_probe(variant: str, resolution: int, impl: str, threads: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-probe", variant, str(resolution), impl,
           "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"memory probe {variant}@{resolution} {impl} failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------- timing


def time_case(variant: str, resolution: int, runs: int, warmup: int) -> dict:
    torch.manual_seed(0)
    models = {"plain": create_model(variant, img_size=resolution, attention="plain").eval()}
    models["fast"] = create_model(variant, img_size=resolution, attention="fast").eval()
    models["fast"].load_state_dict(models["plain"].state_dict())
    x = torch.randn(1, 3, resolution, resolution)
    onednn = transnext_module.ONEDNN_PROJECTIONS

    def run(name: str) -> torch.Tensor:
        transnext_module.ONEDNN_PROJECTIONS = onednn and name != "fast-linear"
        return models["plain" if name == "plain" else "fast"](x)

    times: dict[str, list[float]] = {name: [] for name in TIMED}
    try:
        with torch.inference_mode():
            outputs = {}
            for _ in range(max(1, warmup)):
                for name in TIMED:
                    outputs[name] = run(name)
            ref = outputs["plain"]
            rel_diff = {name: float((outputs[name] - ref).abs().max() / ref.abs().max()) for name in TIMED[1:]}
            for i in range(runs):
                # each implementation runs first, middle and last equally often
                order = TIMED if i % 2 == 0 else TIMED[::-1]
                for name in order:
                    start = time.perf_counter()
                    run(name)
                    times[name].append((time.perf_counter() - start) * 1000)
    finally:
        transnext_module.ONEDNN_PROJECTIONS = onednn
    median = {name: statistics.median(times[name]) for name in TIMED}
    return {
        "variant": variant,
        "resolution": resolution,
        "plain_ms": median["plain"],
        "fast_ms": median["fast"],
        "fast_linear_ms": median["fast-linear"],
        "ratio": median["plain"] / median["fast"],
        "ratio_linear_projections": median["plain"] / median["fast-linear"],
        "onednn_projections": onednn,
        "times_ms": times,
        "max_rel_diff": rel_diff["fast"],
        "max_rel_diff_linear_projections": rel_diff["fast-linear"],
    }


def _fmt_mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["tiny", "micro"], help="default: tiny micro")
    parser.add_argument("--resolutions", nargs="+", type=int, default=[224, 384], help="default: 224 384")
    parser.add_argument("--runs", type=int, default=15, help="timed passes per implementation (default 15)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed passes per implementation first (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every number to this JSON file")
    parser.add_argument("--memory-probe", nargs=3, metavar=("VARIANT", "RES", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_probe:
        variant, resolution, impl = args.memory_probe
        print(json.dumps(memory_probe(variant, int(resolution), impl, args.threads)))
        return 0
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    load_start = load_average()
    print(f"transnext-deploy {__version__}, torch {torch.__version__}, {args.threads} threads, {cpu_name()}, "
          f"os.cpu_count()={os.cpu_count()}")
    print(f"batch 1, fp32, inference_mode; median of {args.runs} interleaved runs after {args.warmup} warm-up "
          "runs; peak = resident-set growth during one forward pass, fresh process per implementation")
    results = []
    for variant in args.variants:
        for resolution in args.resolutions:
            case = time_case(variant, resolution, args.runs, args.warmup)
            if not args.no_memory:
                for impl in IMPLS:
                    case[f"{impl}_memory"] = run_memory_probe(variant, resolution, impl, args.threads)
            results.append(case)
            print(f"  done {variant}@{resolution}", file=sys.stderr, flush=True)

    header = (f"{'case':<12} {'plain ms':>9} {'fast ms':>9} {'plain/fast':>10} {'fast-linear ms':>15} "
              f"{'plain/fast-linear':>17} {'plain peak MiB':>15} {'fast peak MiB':>14}  {'max rel diff':>12}")
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        mem = {impl: r.get(f"{impl}_memory") or {} for impl in IMPLS}

        def peaks(impl: str, mem: dict = mem) -> str:
            m = mem[impl]
            if not m:
                return "-"
            return f"{_fmt_mib(m.get('steady_mib'))} ({_fmt_mib(m.get('first_mib'))})"

        print(f"{r['variant'] + '@' + str(r['resolution']):<12} {r['plain_ms']:>9.1f} {r['fast_ms']:>9.1f} "
              f"{r['ratio']:>9.2f}x {r['fast_linear_ms']:>15.1f} {r['ratio_linear_projections']:>16.2f}x "
              f"{peaks('plain'):>15} {peaks('fast'):>14}  {r['max_rel_diff']:>12.1e}")
    if not args.no_memory:
        print("peak MiB: steady-state call (first call, which also builds the geometry and caches)")
    elapsed = time.perf_counter() - started
    load = load_average()
    print(f"{elapsed:.0f} s in all; load average (1 min) {load_start} at the start, {load} at the end "
          f"(above {args.threads} means other work shared the CPUs and the timings are noisier)")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "torch": torch.__version__, "threads": args.threads, "cpu": cpu_name(), "runs": args.runs,
            "warmup": args.warmup, "seconds": elapsed, "load_average_1min": [load_start, load],
            "results": results}, indent=2))
        print(f"wrote {args.json}")
    key = next((r for r in results if r["variant"] == "tiny" and r["resolution"] == 224), None)
    if key is not None:
        print(f"tiny@224: fast is {key['ratio']:.2f}x faster than plain "
              f"({key['plain_ms']:.1f} ms vs {key['fast_ms']:.1f} ms, median of {args.runs}, {args.threads} threads); "
              f"with F.linear projections {key['ratio_linear_projections']:.2f}x")
    else:
        print("tiny@224: not measured in this run (add --variants tiny --resolutions 224)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
