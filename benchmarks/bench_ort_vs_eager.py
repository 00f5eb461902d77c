#!/usr/bin/env python
"""onnxruntime CPU on the exported standard graph vs eager PyTorch with the published attention.

For each resolution (default tiny at 224 and 384, batch 1, 2 threads) it times, in one process and
side by side:

* eager: `create_model(..., attention="plain")` — the published math — under torch.inference_mode()
  with torch.set_num_threads(THREADS);
* ort: the exported `model.onnx` (standard ops) in an onnxruntime CPU session with
  intra_op_num_threads=THREADS, inter_op_num_threads=1 (transnext_deploy.backends.onnxrt.cpu_session).

Both hold the same weights (a seeded random checkpoint, or --checkpoint) and run the same image.
After warm-up, the timed passes are interleaved ABBA (eager, ort, ort, eager, ...) so drift and
other load on the machine hit both alike, with a short pause before each
(transnext_deploy.bench.measure.settle) so the other runtime's spinning worker threads are idle when the
clock starts; the ratio is median(eager) / median(ort), i.e. how many times faster onnxruntime is.
Artifacts are exported with `transnext_deploy.export` into the bench work directory and reused on
later runs (the first run includes the export, about a minute per resolution for tiny).

With more than one thread it also times onnxruntime with one thread in the same rounds and prints
the ratio ("ort scaling"): how much the second core gave at the time of the run (see below).

--naive also exports the published model as it is (plain attention, torch.onnx.export, no
rewrite) and times it the same way: the route this project replaces.

    python benchmarks/bench_ort_vs_eager.py                       # tiny, 224 and 384, 2 threads
    python benchmarks/bench_ort_vs_eager.py --runs 30 --naive --json out.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from transnext_deploy import __version__
from transnext_deploy.artifacts import STANDARD_FILE
from transnext_deploy.backends.onnxrt import cpu_session
from transnext_deploy.bench.measure import settle
from transnext_deploy.bench.work import bench_input, default_work_dir, ensure_artifacts, random_checkpoint
from transnext_deploy.export import ExportOptions, build_model
from transnext_deploy.machine import cpu_name, load_average

TARGETS = {224: 2.5, 384: 3.0}  # issue 5: onnxruntime-CPU(exported graph) / eager(plain) speed-up


def naive_session(model, resolution, threads):
    """The published model exported as it is: plain attention traced by torch.onnx.export."""
    h, w = resolution
    model.geometry(h, w)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, h, w),), buffer, dynamo=False, opset_version=17,
                          input_names=["images"], output_names=["logits"])
    import onnx

    return cpu_session(onnx.load_from_string(buffer.getvalue()), threads=threads)


def measure(resolution, artifact: Path, checkpoint: Path, args) -> dict:
    plain, _ = build_model(ExportOptions(args.variant, checkpoint=str(checkpoint)), resolution)
    plain.set_attention("plain")
    x = bench_input(resolution, 1, args.seed)
    xt = torch.from_numpy(x)
    runners = {"eager": lambda: plain(xt), "ort": None}
    session = cpu_session(artifact / STANDARD_FILE, threads=args.threads)
    runners["ort"] = lambda: session.run(None, {"images": x})[0]
    if args.threads > 1:
        single = cpu_session(artifact / STANDARD_FILE, threads=1)
        runners["ort-1-thread"] = lambda: single.run(None, {"images": x})[0]
    if args.naive:
        naive = naive_session(plain, resolution, args.threads)
        runners["naive-ort"] = lambda: naive.run(None, {"images": x})[0]
    names = list(runners)
    times = {n: [] for n in names}
    with torch.inference_mode():
        outputs = {}
        for _ in range(args.warmup):
            for n in names:
                outputs[n] = runners[n]()
        ref = outputs["eager"].numpy() if args.warmup else plain(xt).numpy()
        max_abs = {n: float(np.abs(np.asarray(outputs[n]) - ref).max()) for n in names if n != "eager" and n in outputs}
        for i in range(args.runs):
            order = names if i % 2 == 0 else names[::-1]
            for n in order:
                settle()
                start = time.perf_counter()
                runners[n]()
                times[n].append((time.perf_counter() - start) * 1000)
    med = {n: statistics.median(times[n]) for n in names}
    result = {"resolution": list(resolution), "median_ms": med, "times_ms": times, "max_abs_vs_eager": max_abs,
              "speedup_ort_over_eager": med["eager"] / med["ort"]}
    if "ort-1-thread" in med:
        result["ort_thread_scaling"] = med["ort-1-thread"] / med["ort"]
    if args.naive:
        result["speedup_naive_over_eager"] = med["eager"] / med["naive-ort"]
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="tiny", help="default: tiny")
    parser.add_argument("--resolutions", nargs="+", type=int, default=[224, 384], help="default: 224 384")
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads (default 2)")
    parser.add_argument("--runs", type=int, default=15, help="timed passes per runner (default 15)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed passes per runner first (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", type=Path, help="weights (default: a seeded random checkpoint)")
    parser.add_argument("--work-dir", type=Path, default=None, help="artifact cache (default: the bench cache)")
    parser.add_argument("--naive", action="store_true", help="also time the published model exported as is")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every number to this file")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 1:
        parser.error("--runs and --warmup must be at least 1")

    torch.set_num_threads(args.threads)
    work_dir = args.work_dir or default_work_dir()
    work_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint or random_checkpoint(args.variant, args.seed, work_dir)
    resolutions = [(r, r) for r in args.resolutions]
    started = time.perf_counter()
    print(f"transnext-deploy {__version__}, torch {torch.__version__}, onnxruntime "
          f"{__import__('onnxruntime').__version__}, {args.threads} threads, {cpu_name()}, "
          f"os.cpu_count()={os.cpu_count()}, load average {load_average()}")
    print(f"transnext_{args.variant}, batch 1, fp32; median of {args.runs} interleaved runs after {args.warmup} "
          "warm-up runs each", flush=True)
    artifacts = ensure_artifacts(args.variant, resolutions, checkpoint, work_dir, args.threads,
                                 progress=lambda r, s: print(f"  export {r[0]}x{r[1]}: {s}", file=sys.stderr,
                                                             flush=True))
    export_seconds = time.perf_counter() - started
    results = []
    for r in resolutions:
        results.append(measure(r, artifacts[r], checkpoint, args))
        print(f"  measured {r[0]}x{r[1]}", file=sys.stderr, flush=True)

    cols = ["eager plain ms", "ort ms", "ort speed-up", "target", "max-abs", "ort scaling"]
    if args.naive:
        cols[3:3] = ["naive ort ms", "naive speed-up"]
    print()
    print(f"{'resolution':<11}" + "".join(f"{c:>16}" for c in cols))
    for res in results:
        h = res["resolution"][0]
        med = res["median_ms"]
        target = TARGETS.get(h)
        verdict = "-" if target is None else (f">={target:g}x " + ("met" if res["speedup_ort_over_eager"] >= target
                                                                   else "MISSED"))
        cells = [f"{med['eager']:.1f}", f"{med['ort']:.1f}", f"{res['speedup_ort_over_eager']:.2f}x"]
        if args.naive:
            cells += [f"{med['naive-ort']:.1f}", f"{res['speedup_naive_over_eager']:.2f}x"]
        scaling = res.get("ort_thread_scaling")
        cells += [verdict, f"{res['max_abs_vs_eager']['ort']:.1e}", "-" if scaling is None else f"{scaling:.2f}x"]
        print(f"{h}x{h:<7}" + "".join(f"{c:>16}" for c in cells))
    elapsed = time.perf_counter() - started
    print(f"{elapsed:.0f} s in all ({export_seconds:.0f} s exporting/checking artifacts); load average now "
          f"{load_average()} (above {args.threads} means other work shared the CPUs and the timings are noisier)")
    if args.threads > 1:
        print(f"ort scaling: onnxruntime with 1 thread / with {args.threads}, timed in the same rounds. Its matrix "
              "products run near a core's peak, so where the CPUs share a physical core (a virtual machine's vCPUs "
              "placed on SMT siblings) this falls towards 1x, and its lead over eager PyTorch shrinks with it.")
    for res in results:
        h = res["resolution"][0]
        print(f"tiny@{h}" if args.variant == "tiny" else f"{args.variant}@{h}", end=": ")
        print(f"onnxruntime CPU (exported graph) / PyTorch eager (plain attention) = "
              f"{res['speedup_ort_over_eager']:.2f}x faster")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"variant": args.variant, "threads": args.threads, "runs": args.runs,
                                         "warmup": args.warmup, "cpu": cpu_name(), "seconds": elapsed,
                                         "targets": TARGETS, "results": results}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
