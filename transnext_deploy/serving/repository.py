"""A Triton model repository for a production Triton Inference Server, written from a bundle.

    <out>/transnext_tensor/config.pbtxt      inputs, outputs, max batch, dynamic batching
    <out>/transnext_tensor/1/model.plan      the bundle's TensorRT engine, when it has one
    <out>/transnext_tensor/1/model.onnx      else the standard ONNX graph, for the onnxruntime backend
    <out>/transnext_tensor/labels.txt        class names (classification), Triton's classification extension
    <out>/plugins/libtransnext_aa_plugin.so  the TensorRT plugin library the engine needs (engines only)
    <out>/README.md                          how to start tritonserver on it (plugin preloading included)

The model takes what `serve`'s `transnext_tensor` takes, under the same names: preprocessed float32
images `images` [-1, 3, H, W] (the bundle's preprocessing) -> `logits` [-1, C] (or the backbone's
feature maps), so a client of one works with the other.

Why the standard graph for onnxruntime and not the custom-op graph: the standard graph runs on any
onnxruntime build a Triton release ships, on CPU and GPU instances alike, with nothing loaded into
the server. The custom-op graph would need the package's host library loaded into Triton's own
onnxruntime (`model_operations`), built against that onnxruntime's C API rather than the one this
package was built with, and it has a CPU kernel only, so a GPU instance would copy every block's
tensors to the host and back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import LOGITS_OUTPUT, STANDARD_FILE, TENSOR_MODEL, TRITON_PLUGINS_DIR
from ..bundle.format import LABELS_FILE  # beside config.pbtxt as in the bundle: Triton's classification extension
from ..engine.compatibility import by_preference, engine_targets, engine_version
from ..errors import InvalidArgumentError, TransNeXtDeployError
from ..files import publish_directory
from .config import TensorConfig, model_config


class RepositoryError(TransNeXtDeployError):
    """The bundle cannot be turned into a Triton model repository as asked."""


@dataclass(frozen=True)
class RepositoryResult:
    path: str
    platform: str  # "tensorrt_plan" | "onnxruntime_onnx"
    model_file: str  # the bundle file that became the model
    max_batch: int
    notes: list[str]


def _dims(shape: list) -> list[int]:
    """A manifest shape without its batch entry; named (dynamic) sizes become -1."""
    return [d if isinstance(d, int) else -1 for d in shape[1:]]


TRITON_ENGINE_RUNTIME = "tensorrt"  # Triton's TensorRT backend runs TensorRT plans, not TensorRT-RTX ones


def _triton_engines(model: dict) -> list[dict]:
    return [e for e in model.get("engines") or [] if e.get("runtime", "tensorrt") == TRITON_ENGINE_RUNTIME]


def _pick_engine(model: dict, precision: str | None) -> dict | None:
    engines = by_preference(_triton_engines(model))
    if precision is None:
        return engines[0] if engines else None
    chosen = next((e for e in engines if e["precision"] == precision), None)
    if chosen is None:
        have = ", ".join(e["precision"] for e in engines) or "none"
        raise RepositoryError(f"the bundle has no {precision} {TRITON_ENGINE_RUNTIME} engine for {model['name']} "
                              f"(engines: {have})")
    return chosen


def tensor_model_config(model: dict, *, platform: str, max_batch: int, labels: bool) -> str:
    """config.pbtxt of the repository's one model, `transnext_tensor`."""
    inputs = [TensorConfig(model["input"]["name"], "TYPE_FP32", _dims(model["input"]["shape"]))]
    outputs = [TensorConfig(name, "TYPE_FP32", _dims(shape), LABELS_FILE if labels and name == LOGITS_OUTPUT else None)
               for name, shape in model["outputs"].items()]
    return model_config(TENSOR_MODEL, platform=platform, max_batch=max_batch, inputs=inputs, outputs=outputs,
                        instance_kind="KIND_GPU" if platform == "tensorrt_plan" else None)


def _readme(platform: str, model: dict, engine: dict | None, plugin: str | None) -> str:
    h, w = model["resolution"]
    pre = model.get("preprocessing", {})
    lines = [
        "# Triton model repository written by `transnext-deploy package --triton`",
        "",
        f"Model `{TENSOR_MODEL}` ({platform}): input `{model['input']['name']}` float32 [batch, 3, {h}, {w}], "
        f"preprocessed as the bundle's manifest says ({pre.get('description', 'see manifest.json')}); outputs "
        + ", ".join(f"`{name}`" for name in model["outputs"]) + ".",
        "",
    ]
    if engine is not None:
        lines += [
            f"The engine was built with TensorRT {engine_version(engine)} on {engine.get('gpu')} "
            f"(compute capability {', '.join(engine_targets(engine))}): serve it with a Triton release whose "
            "TensorRT is that version"
            + (" or newer (it is version-compatible; start Triton with "
               "`--backend-config=tensorrt,version-compatible=true`)" if engine.get("version_compatible") else "")
            + ", on that GPU model.",
            "",
            "The engine's aggregated-attention layers are the plugin's, so the TensorRT backend must have the "
            "plugin library loaded before it deserializes the plan. Either preload it:",
            "",
            "```sh",
            f"LD_PRELOAD=$PWD/{plugin} tritonserver --model-repository=$PWD",
            "```",
            "",
            "or let the TensorRT backend load it (Triton 23.07 and later; several libraries separated by `;`):",
            "",
            "```sh",
            f'tritonserver --model-repository=$PWD --backend-config=tensorrt,plugins="$PWD/{plugin}"',
            "```",
        ]
    else:
        lines += [
            "The graph is the standard-ops ONNX graph: Triton's onnxruntime backend runs it on CPU or GPU "
            "instances with nothing else to load.",
            "",
            "```sh",
            "tritonserver --model-repository=$PWD",
            "```",
        ]
    return "\n".join(lines) + "\n"


def check_repository_target(out_dir: str | os.PathLike, max_batch: int) -> Path:
    """The checks write_model_repository makes before reading the bundle (the CLI makes them before packaging)."""
    if max_batch < 1:
        raise InvalidArgumentError(f"the Triton max batch must be at least 1, got {max_batch}")
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RepositoryError(f"{out} exists and is not an empty directory: the Triton repository needs a "
                              "directory of its own")
    return out


def write_model_repository(bundle_dir: str | os.PathLike, out_dir: str | os.PathLike, max_batch: int = 16, *,
                           resolution: tuple[int, int] | None = None, precision: str | None = None,
                           prefer_engine: bool = True) -> RepositoryResult:
    """Write a Triton model repository for `bundle_dir` (a bundle directory or .tar.gz) into `out_dir`.

    The TensorRT plan (`platform: "tensorrt_plan"`, fp16 first, `precision` to choose) when the
    bundle has engines for the model and `prefer_engine`; else the standard ONNX graph
    (`platform: "onnxruntime_onnx"`). `resolution` picks one model of a multi-resolution bundle
    (default: the first). `out_dir` must not exist or be empty; it is written whole or not at all.
    """
    from ..bundle.format import open_bundle

    out = check_repository_target(out_dir, max_batch)
    opened = open_bundle(bundle_dir)
    try:
        manifest = opened.manifest
        models = manifest["models"]
        model = models[0] if resolution is None else next(
            (m for m in models if tuple(m["resolution"]) == tuple(resolution)), None)
        if model is None:
            raise RepositoryError(f"the bundle has no {resolution[0]}x{resolution[1]} model "
                                  f"(it has {', '.join(m['name'] for m in models)})")
        engine = _pick_engine(model, precision) if prefer_engine or precision else None
        notes: list[str] = []
        if engine is not None:
            platform, source, target = "tensorrt_plan", engine["file"], "model.plan"
            profile_max = int(engine["batch_profile"]["max"])
            if max_batch > profile_max:
                raise RepositoryError(f"max batch {max_batch} is more than the engine's optimisation profile "
                                      f"allows ({profile_max}); rebuild the engines or lower it")
            plugin = engine["plugin_library"]["file"]
        else:
            platform, source, target, plugin = "onnxruntime_onnx", model["graphs"][STANDARD_FILE], STANDARD_FILE, None
            if _triton_engines(model):
                notes.append("the bundle has TensorRT engines; the repository uses the ONNX graph as asked")
            elif model.get("engines"):
                notes.append(f"the bundle's engines are not {TRITON_ENGINE_RUNTIME} engines (Triton's TensorRT "
                             "backend cannot run them): the repository serves the standard ONNX graph with "
                             "Triton's onnxruntime backend")
            else:
                notes.append("the bundle has no TensorRT engine for this model: the repository serves the "
                             "standard ONNX graph with Triton's onnxruntime backend")
        labels = manifest.get("labels")
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            version = work / TENSOR_MODEL / "1"
            version.mkdir(parents=True)
            shutil.copy2(opened.path(source), version / target)
            if labels:
                shutil.copy2(opened.path(labels["file"]), work / TENSOR_MODEL / LABELS_FILE)
            plugin_in_repo = None
            if plugin is not None:
                (work / TRITON_PLUGINS_DIR).mkdir()
                plugin_in_repo = f"{TRITON_PLUGINS_DIR}/{Path(plugin).name}"
                shutil.copy2(opened.path(plugin), work / plugin_in_repo)
            (work / TENSOR_MODEL / "config.pbtxt").write_text(
                tensor_model_config(model, platform=platform, max_batch=max_batch, labels=bool(labels)))
            (work / "README.md").write_text(_readme(platform, model, engine, plugin_in_repo))
            publish_directory(work, out)  # an existing `out` is empty (check_repository_target)
        except OSError as exc:
            raise RepositoryError(f"cannot write the Triton repository {out}: {exc.strerror or exc}") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
    finally:
        opened.close()
    return RepositoryResult(str(out), platform, source, max_batch, notes)


__all__ = ["RepositoryError", "RepositoryResult", "check_repository_target", "tensor_model_config",
           "write_model_repository"]
