"""How far the exported ONNX graphs are from PyTorch in float32, and how far float16 would be.

The defaults of `transnext-deploy export --atol/--rtol` (and the engines' fp16 tolerance) come from
this script. For each variant, resolution and mode it builds the model with realistic weights,
exports the three graphs exactly as `export` does (model.onnx, model.aa_plugin.onnx on the host
library, model.aa_function.onnx), runs them in onnxruntime on the CPU on export's validation inputs
and compares every output element with PyTorch:

- weights: the seeded random initialisation with every parameter moved by noise (scale `--noise`,
  0.05 as in the tests), and for a classifier the head scaled so that max |logits| on these inputs is
  `--logit-scale` (30 by default, the size trained ImageNet classifiers give);
- reported per case and graph: max |b| (the reference), the worst |a - b|, and the smallest atol
  that passes |a - b| <= atol + rtol * |b| at rtol = 0, 1e-5, 1e-4 and 1e-3; then the worst over
  everything and each case's ratio to the bound of the current defaults;
- `--fp16`: the same comparison for the PyTorch model run under float16 autocast on the CPU (fp16
  matmuls and convolutions, fp32 softmax and normalisation, as TensorRT's fp16 mode runs them) against
  float32: an estimate of what an fp16 engine can be held to, since there is no GPU here.

Cost, measured on 2 cores shared with other work: the default (micro and tiny at 224 and 384, both
modes) about 30 minutes; small at 224, both modes, about 15. One case alone (micro 224 classify)
takes about a minute on an idle machine.

    python benchmarks/measure_export_noise.py                        # micro, tiny; 224 and 384
    python benchmarks/measure_export_noise.py --variants small --resolutions 224 --fp16
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch

from transnext_deploy import create_model
from transnext_deploy.artifacts import FUNCTION_FILE, INPUT_NAME, PLUGIN_FILE, STANDARD_FILE
from transnext_deploy.backends.onnxrt import cpu_session
from transnext_deploy.export import DEFAULT_ATOL, DEFAULT_RTOL, export_standard, output_names, validation_inputs
from transnext_deploy.export.rewrite import function_form, fused_model
from transnext_deploy.compare import Tolerance, allclose_check, smallest_atol

RTOLS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2)


def perturb_(model: torch.nn.Module, noise: float, seed: int) -> None:
    """Move every parameter away from its initial value (several start at exactly zero or one)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * noise * (p.abs().mean() + 0.1))


def build(variant: str, resolution: tuple[int, int], mode: str, noise: float, logit_scale: float, seed: int,
          inputs: dict[str, np.ndarray]):
    torch.manual_seed(seed)
    model = create_model(variant, img_size=resolution, backbone=mode == "backbone").eval()
    perturb_(model, noise, seed)
    if mode == "classify" and logit_scale > 0:
        with torch.no_grad():
            peak = max(float(model(torch.from_numpy(x)).abs().max()) for x in inputs.values())
            model.head.weight.mul_(logit_scale / peak)
            model.head.bias.mul_(logit_scale / peak)
    return model


def references(model, inputs: dict[str, np.ndarray], autocast_fp16: bool = False) -> dict[str, list[np.ndarray]]:
    result = {}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16, enabled=autocast_fp16):
        for label, x in inputs.items():
            out = model(torch.from_numpy(x))
            result[label] = [o.float().numpy() for o in (out if isinstance(out, list) else [out])]
    return result


def compare(refs: dict, outs: dict, names: list[str], tolerance: Tolerance) -> dict:
    """Worst |a-b|, max |b|, smallest atol per rtol and the ratio to `tolerance`'s bound, over every
    input and output; `per_output` splits the same by output name (logits, stage1..4)."""
    def empty():
        return {"max_ref": 0.0, "worst_abs": 0.0, "min_atol": {r: 0.0 for r in RTOLS}, "ratio": 0.0, "worst": None}

    total, per_output = empty(), {n: empty() for n in names}
    for label in refs:
        for name, ref, out in zip(names, refs[label], outs[label]):
            element = allclose_check(ref, out, tolerance)
            for acc in (total, per_output[name]):
                acc["max_ref"] = max(acc["max_ref"], float(np.abs(ref).max()))
                acc["worst_abs"] = max(acc["worst_abs"], float(np.abs(out - ref).max()))
                for r in RTOLS:
                    acc["min_atol"][r] = max(acc["min_atol"][r], smallest_atol(ref, out, r))
                if element.ratio >= acc["ratio"]:
                    acc["ratio"] = element.ratio
                    acc["worst"] = {"input": label, "output": name, **element.as_dict()}
    total["per_output"] = per_output
    return total


def measure_case(variant, resolution, mode, args, tolerance: Tolerance, workdir: Path) -> dict:
    start = time.perf_counter()
    inputs = validation_inputs(resolution, args.seed)
    model = build(variant, resolution, mode, args.noise, args.logit_scale, args.seed, inputs)
    names = output_names(model)
    refs = references(model, inputs)
    standard = export_standard(model, resolution, 17)
    fused, matches = fused_model(standard)
    graphs = {STANDARD_FILE: standard, PLUGIN_FILE: fused, FUNCTION_FILE: function_form(fused)}
    result = {"variant": variant, "resolution": list(resolution), "mode": mode, "graphs": {}}
    for graph_name, proto in graphs.items():
        path = workdir / graph_name
        onnx.save(proto, str(path))
        session = cpu_session(path, threads=args.threads)
        outs = {label: session.run(names, {INPUT_NAME: x}) for label, x in inputs.items()}
        result["graphs"][graph_name] = compare(refs, outs, names, tolerance)
        del session
        path.unlink()
    if args.fp16:
        result["fp16_autocast"] = compare(refs, references(model, inputs, autocast_fp16=True), names, tolerance)
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def _row(label: str, stats: dict) -> str:
    atols = "  ".join(f"{stats['min_atol'][r]:9.2e}" for r in RTOLS)
    return f"{label:<44} {stats['max_ref']:8.2f} {stats['worst_abs']:10.3e}  {atols}  {stats['ratio']:6.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["micro", "tiny"])
    parser.add_argument("--resolutions", nargs="+", type=int, default=[224, 384])
    parser.add_argument("--modes", nargs="+", default=["classify", "backbone"], choices=["classify", "backbone"])
    parser.add_argument("--noise", type=float, default=0.05, help="parameter perturbation scale (tests use 0.05)")
    parser.add_argument("--logit-scale", type=float, default=30.0,
                        help="scale the head so max |logits| is this (0: leave the head as initialised)")
    parser.add_argument("--fp16", action="store_true", help="also measure float16 autocast vs float32 in PyTorch")
    parser.add_argument("--atol", type=float, default=DEFAULT_ATOL, help="tolerance the ratio column is taken to")
    parser.add_argument("--rtol", type=float, default=DEFAULT_RTOL, help="tolerance the ratio column is taken to")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write every number to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tolerance = Tolerance(args.atol, args.rtol)

    header = (f"{'case / graph':<44} {'max|b|':>8} {'max|a-b|':>10}  "
              + "  ".join(f"{'atol@r' + format(r, 'g'):>9}" for r in RTOLS) + f"  {'ratio':>6}")
    print(f"float32 ONNX (onnxruntime CPU) vs PyTorch; atol@rX = smallest passing atol at rtol X; "
          f"ratio = worst |a-b| / (atol + rtol*|b|) at {tolerance}")
    print(header)
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            for side in args.resolutions:
                for mode in args.modes:
                    case = measure_case(variant, (side, side), mode, args, tolerance, Path(tmp))
                    cases.append(case)
                    for graph_name, stats in case["graphs"].items():
                        print(_row(f"{variant} {side} {mode} {graph_name}", stats), flush=True)
                    if "fp16_autocast" in case:
                        print(_row(f"{variant} {side} {mode} torch fp16 autocast", case["fp16_autocast"]), flush=True)

    def overall(key_stats):
        stats = list(key_stats)
        return {"max_ref": max(s["max_ref"] for s in stats), "worst_abs": max(s["worst_abs"] for s in stats),
                "min_atol": {r: max(s["min_atol"][r] for s in stats) for r in RTOLS},
                "ratio": max(s["ratio"] for s in stats)}

    fp32 = overall(g for c in cases for g in c["graphs"].values())
    print("-" * len(header))
    print(_row("float32, every case and graph", fp32))
    for out_name in sorted({n for c in cases for g in c["graphs"].values() for n in g["per_output"]}):
        print(_row(f"  of which {out_name}",
                   overall(g["per_output"][out_name] for c in cases for g in c["graphs"].values()
                           if out_name in g["per_output"])))
    summary = {"fp32": fp32}
    if args.fp16:
        summary["fp16_autocast"] = overall(c["fp16_autocast"] for c in cases)
        print(_row("float16 autocast (PyTorch CPU), every case", summary["fp16_autocast"]))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "cases": cases,
                                         "summary": summary}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
