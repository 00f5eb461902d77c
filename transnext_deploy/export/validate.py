"""Export's validation step: every graph against the PyTorch model, element by element, on several
inputs (random, noise, a real photo), in the allclose convention of compare.py."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..artifacts import PRECISIONS, graph_file, graph_precision, normalize_images
from ..backends.onnxrt import OrtCpuBackend, host_library_problem
from ..backends.pytorch import TorchBackend
from ..compare import FP16_TOLERANCE, Tolerance, allclose_check, error_stats, top1_agreement
from ..models.transnext import TransNeXt
from .trace import output_names

CUSTOM_OP_GRAPHS = tuple(graph_file("plugin", p) for p in PRECISIONS)


def validation_inputs(resolution: tuple[int, int], seed: int) -> dict[str, np.ndarray]:
    """Named inputs: random normal (batch 2), ImageNet-normalised uniform noise, and a real photo
    when one ships with an installed package (matplotlib's sample data)."""
    g = np.random.default_rng(seed)
    h, w = resolution
    inputs = {
        "random_normal_batch2": g.standard_normal((2, 3, h, w)).astype(np.float32),
        "uniform_image": normalize_images(g.random((1, h, w, 3), dtype=np.float32)),
    }
    photo = _sample_photo(resolution)
    if photo is not None:
        inputs["photo_grace_hopper"] = photo
    return inputs


def _sample_photo(resolution: tuple[int, int]) -> np.ndarray | None:
    try:
        from matplotlib import cbook
        from PIL import Image

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            image = Image.open(f).convert("RGB").resize((resolution[1], resolution[0]), Image.BILINEAR)
    except Exception:  # noqa: BLE001 - the photo is a bonus input; its absence is reported, not fatal
        return None
    return normalize_images(np.asarray(image, dtype=np.float32)[None] / 255.0)


def validate(model: TransNeXt, graphs: dict[str, Path], resolution: tuple[int, int], tolerance: Tolerance,
             seed: int = 0, threads: int = 2, fp16_tolerance: Tolerance = FP16_TOLERANCE) -> dict:
    """Run every graph on every validation input against PyTorch (float32); each output element
    must satisfy |graph - pytorch| <= atol + rtol * |pytorch|, with `tolerance` for the fp32 graphs
    and `fp16_tolerance` for the fp16 ones. The custom-op graphs are skipped, with the reason, when
    the host library they run on is not available."""
    inputs = validation_inputs(resolution, seed)
    names = output_names(model)
    reference = TorchBackend(model)
    references = {label: reference(x) for label, x in inputs.items()}
    tolerances = {"fp32": tolerance, "fp16": fp16_tolerance}
    report = {"atol": tolerance.atol, "rtol": tolerance.rtol, "fixed_pool_size": model.fixed_pool_size,
              "rule": "|graph - pytorch| <= atol + rtol * |pytorch|, element-wise, every output",
              "tolerances": {p: t.as_dict() for p, t in tolerances.items()},
              "inputs": list(inputs), "graphs": {}, "skipped": {}}
    for graph_name, path in graphs.items():
        tolerance = tolerances[graph_precision(graph_name)]
        if graph_name in CUSTOM_OP_GRAPHS:  # custom nodes without a function body: runs on the host library
            problem = host_library_problem()
            if problem is not None:
                report["graphs"][graph_name] = {"passed": None, "skipped": problem}
                report["skipped"][graph_name] = problem
                continue
        backend = OrtCpuBackend(path, threads=threads)
        per_input = {}
        worst = {"ratio": -1.0}
        max_abs = 0.0
        for label, x in inputs.items():
            got = backend(x)
            entry = {}
            for name, ref, out in zip(names, references[label], got):
                stats = error_stats(ref, out).as_dict()
                if not model.backbone:
                    stats["top1_agreement"] = top1_agreement(ref, out)
                element = allclose_check(ref, out, tolerance).as_dict()
                stats["worst"] = element
                entry[name] = stats
                max_abs = max(max_abs, stats["max_abs"]) if math.isfinite(stats["max_abs"]) else math.inf
                if element["ratio"] > worst["ratio"]:
                    worst = {"input": label, "output": name, **element}
            per_input[label] = entry
        report["graphs"][graph_name] = {"passed": worst["ratio"] <= 1.0, "max_abs": max_abs, "worst": worst,
                                        **tolerance.as_dict(), "inputs": per_input}
    ran = [g for g in report["graphs"].values() if g["passed"] is not None]
    report["passed"] = bool(ran) and all(g["passed"] for g in ran)
    return report


def describe_failure(report: dict) -> str:
    """One line: the graph, output and element furthest past its bound."""
    name, graph = max(((n, g) for n, g in report["graphs"].items() if g["passed"] is False),
                      key=lambda kv: kv[1]["worst"]["ratio"])
    w = graph["worst"]
    return (f"{name} differs from PyTorch beyond atol {graph['atol']:g} + rtol {graph['rtol']:g} * |b|: "
            f"{w['output']}{w['index']} on {w['input']}: |a-b| {w['abs_diff']:.3e} where |b| = {w['ref_abs']:.3e} "
            f"(allowed {w['allowed']:.3e}, {w['ratio']:.2f}x; max-abs {graph['max_abs']:.3e})")


__all__ = ["describe_failure", "validate", "validation_inputs"]
