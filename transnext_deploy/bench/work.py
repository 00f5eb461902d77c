"""What bench measures on: exported artifacts kept in a work directory and reused, the seeded
random checkpoint, the input batches, and the polygraphy data and command lines that repeat a
comparison outside this tool."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..cache import cache_dir
from ..compare import ENGINE_TOLERANCES
from ..artifacts import (
    ENGINE_GRAPH,
    FUNCTION_FILE,
    INPUT_NAME,
    MANIFEST_FILE,
    PLUGIN_ENV,
    PLUGIN_FILE,
    PRECISIONS,
    STANDARD_FILE,
    artifact_name,
    graph_file,
    normalize_images,
)
from ..files import sha256sum
from ..engine import EnginePlan
from ..progress import Progress, no_progress
from .report import case_label

REFERENCE = "pytorch-plain-fp32"  # the runner name of the saved reference outputs


def default_work_dir() -> Path:
    return cache_dir() / "bench"


def _code_fingerprint() -> str:
    """sha256 of the sources that decide what an export contains."""
    root = Path(__file__).resolve().parent.parent
    files = sorted([root / "artifacts.py", *root.glob("export/*.py"), *root.glob("models/*.py"),
                    *root.glob("ops/*.py")])
    digest = hashlib.sha256()
    for f in files:
        if f.is_file():
            digest.update(f.relative_to(root).as_posix().encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()


def random_checkpoint(variant: str, seed: int, work_dir: Path) -> Path:
    """A seeded random checkpoint, written once: export and reference then share weights exactly."""
    import torch

    from ..models import create_model

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
    manifest_path = directory / MANIFEST_FILE
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
    return all((directory / f).is_file() for f in (STANDARD_FILE, PLUGIN_FILE))


def ensure_artifacts(variant: str, resolutions: Sequence[tuple[int, int]], checkpoint: str | os.PathLike,
                     work_dir: Path, threads: int = 2, progress: Progress = no_progress,
                     engines: EnginePlan | None = None) -> dict[tuple[int, int], Path]:
    """Exported artifact directories for every resolution, exporting (with `engines`, see
    export.export) only those not already there."""
    from ..export import DEFAULT_OPSET, ExportOptions, export

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
        for result in export(options, progress=progress, engines=engines):
            r = tuple(result.resolution)
            directory = Path(result.directory)
            (directory.parent / f"{directory.name}.bench-key.json").write_text(json.dumps(keys[r], indent=2))
            found[r] = directory
    return {r: found[r] for r in resolutions}


def bench_input(resolution: tuple[int, int], batch: int, seed: int) -> np.ndarray:
    """A batch of ImageNet-normalised images: the sample photo shipped with matplotlib first (when
    installed), then seeded uniform noise."""
    from ..export import validation_inputs

    h, w = resolution
    named = validation_inputs(resolution, seed)
    first = named.get("photo_grace_hopper", named["uniform_image"])
    g = np.random.default_rng(seed + 1)
    rest = normalize_images(g.random((batch - 1, h, w, 3), dtype=np.float32))
    return np.ascontiguousarray(np.concatenate([first, rest])[:batch], dtype=np.float32)


def save_polygraphy_data(directory: Path, x: np.ndarray, reference: np.ndarray) -> tuple[Path, Path]:
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
    """`polygraphy run` command lines that repeat this comparison against the saved PyTorch outputs,
    by case label (bench.report.case_label), plus the function-form graph on onnxruntime."""
    h, w = resolution
    shape = shlex.quote(f"{INPUT_NAME}:[{batch},3,{h},{w}]")  # zsh would glob the brackets
    data = f"--load-inputs {shlex.quote(str(inputs))} --load-outputs {shlex.quote(str(outputs))}"
    trt_shapes = f"--trt-min-shapes {shape} --trt-opt-shapes {shape} --trt-max-shapes {shape}"

    def q(name: str) -> str:
        return shlex.quote(str(artifact / name))

    def tolerance(precision: str) -> str:
        t = ENGINE_TOLERANCES[precision]
        return f"--atol {t.atol:g} --rtol {t.rtol:g}"

    return {
        "onnxruntime-cpu": f"polygraphy run {q(STANDARD_FILE)} --onnxrt {data} {tolerance('fp32')}",
        "onnxruntime-cpu-function-form": f"polygraphy run {q(FUNCTION_FILE)} --onnxrt {data} {tolerance('fp32')}",
        # strongly typed: the precision is the graph's; polygraphy leaves TF32 off unless --tf32 is given
        **{case_label("tensorrt", p): f"polygraphy run {q(graph_file(ENGINE_GRAPH, p))} --trt --strongly-typed "
                                      f"--plugins \"${PLUGIN_ENV}\" {trt_shapes} {data} {tolerance(p)}"
           for p in PRECISIONS},
    }


__all__ = [
    "bench_input",
    "default_work_dir",
    "ensure_artifacts",
    "polygraphy_commands",
    "random_checkpoint",
    "save_polygraphy_data",
]
