#!/usr/bin/env python
"""Engine build time and size per graph and precision, side by side in one run (TensorRT-RTX).

TensorRT-RTX builds engines ahead of time on a machine without a GPU, so this runs anywhere it is
installed (`pip install 'transnext-deploy[tensorrt-rtx]'`). It exports a variant at one resolution
(random weights: the numbers do not depend on them), builds the plugin for the target compute
capability when none is given (needs nvcc and TensorRT headers: $TENSORRT_INCLUDE_DIR, or
--tensorrt-include), and builds an engine from each of the three graphs in fp32 and fp16 through
`transnext_deploy.engine.build_engine`, as `build-engine --runtime tensorrt-rtx` does:

    standard   model[.fp16].onnx             standard ops, no plugin
    function   model.aa_function[.fp16].onnx the one local function, inlined by the parser, no plugin
    plugin     model.aa_plugin[.fp16].onnx   one plugin layer per aggregated-attention block

Each build is fresh (no engine reused) and the builds run one after another in this process,
the graphs interleaved (standard, function, plugin for fp32, then again for fp16) so that load on
the machine hits every graph alike. Printed per graph and precision:
network layers and plugin layers after parsing, build seconds, engine MB; and the ratios of each
graph to the plugin graph. Build time on a busy 2-core machine is a lower bound of what an idle
one does better; sizes do not depend on load.

    python benchmarks/bench_engine_build.py                                # micro at 224, SM86
    python benchmarks/bench_engine_build.py --variant tiny --resolution 224 --compute-capability 89 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from transnext_deploy import __version__
from transnext_deploy.artifacts import GRAPHS, PRECISIONS, graph_file
from transnext_deploy.engine import build_engine
from transnext_deploy.engine.tensorrt import check_compute_capabilities, import_runtime, module_problem
from transnext_deploy.machine import cpu_name, load_average
from transnext_deploy.resolution import parse_resolution

RUNTIME = "tensorrt-rtx"


def plugin_library(args, workdir: Path) -> Path:
    if args.plugin:
        return Path(args.plugin)
    from transnext_deploy.plugin.build import build_plugin

    include = args.tensorrt_include or os.environ.get("TENSORRT_INCLUDE_DIR", "").split(os.pathsep)[-1] or None
    result = build_plugin(targets=("plugin",), cuda_archs=[args.compute_capability], build_dir=workdir / "plugin",
                          jobs=os.cpu_count() or 2, tensorrt_include_dir=include)
    return result.libraries["plugin_dynamic"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="micro")
    parser.add_argument("--resolution", default="224", help="SIDE or HEIGHTxWIDTH (default 224)")
    parser.add_argument("--compute-capability", default="86", help="the one compute capability to build for")
    parser.add_argument("--plugin", help="libtransnext_aa_plugin_dynamic.so (default: built here for the target)")
    parser.add_argument("--tensorrt-include", help="TensorRT include directory for the plugin build")
    parser.add_argument("--graphs", default=",".join(GRAPHS), help="comma-separated, of " + ", ".join(GRAPHS))
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--workdir", help="keep the artifact and engines here (default: a temporary directory)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()

    problem = module_problem(RUNTIME)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    trt = import_runtime(RUNTIME)
    (cc,) = check_compute_capabilities(RUNTIME, [args.compute_capability])
    args.compute_capability = cc
    graphs = [g for g in args.graphs.split(",") if g]
    precisions = [p for p in args.precisions.split(",") if p]
    resolution = parse_resolution(args.resolution)

    with tempfile.TemporaryDirectory(prefix="bench_engine_build_") as tmp:
        workdir = Path(args.workdir or tmp)
        from transnext_deploy.export import ExportOptions, export

        start = time.perf_counter()
        (result,) = export(ExportOptions(args.variant, resolutions=[resolution], output_dir=workdir / "artifacts",
                                         precisions=precisions))
        artifact = Path(result.directory)
        print(f"exported {args.variant} at {resolution[0]}x{resolution[1]} in {time.perf_counter() - start:.0f} s",
              file=sys.stderr)
        library = plugin_library(args, workdir) if "plugin" in graphs else None

        rows = []
        for precision in precisions:
            for graph in graphs:
                source = artifact / graph_file(graph, precision)
                print(f"building {source.name} ...", file=sys.stderr)
                built = build_engine(source, runtime=RUNTIME, compute_capabilities=[cc], rebuild=True,
                                     plugin_library=library if graph == "plugin" else None)
                meta = built.metadata
                rows.append({"graph": graph, "precision": precision, "file": source.name,
                             "graph_mb": round(source.stat().st_size / 1e6, 1), "layers": meta["layers"],
                             "plugin_layers": meta["plugin_layers"], "build_seconds": meta["build_seconds"],
                             "engine_mb": round(meta["engine_bytes"] / 1e6, 1)})

    header = f"{'graph':<9} {'precision':<9} {'layers':>7} {'plugin':>6} {'build s':>8} {'engine MB':>9} " \
             f"{'build / plugin':>14} {'size / plugin':>13}"
    print(f"{args.variant} {resolution[0]}x{resolution[1]}, {RUNTIME} {trt.__version__}, SM{cc}, "
          f"transnext-deploy {__version__}, {cpu_name()}, load {load_average()}")
    print(header)
    for row in rows:
        plugin = next((r for r in rows if r["graph"] == "plugin" and r["precision"] == row["precision"]), None)
        build_ratio = f"{row['build_seconds'] / plugin['build_seconds']:.1f}x" if plugin else "-"
        size_ratio = f"{row['engine_mb'] / plugin['engine_mb']:.2f}x" if plugin else "-"
        print(f"{row['graph']:<9} {row['precision']:<9} {row['layers']:>7} {row['plugin_layers']:>6} "
              f"{row['build_seconds']:>8.1f} {row['engine_mb']:>9.1f} {build_ratio:>14} {size_ratio:>13}")
    if args.json:
        Path(args.json).write_text(json.dumps({"variant": args.variant, "resolution": list(resolution),
                                               "runtime": RUNTIME, "runtime_version": trt.__version__,
                                               "compute_capability": cc, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
