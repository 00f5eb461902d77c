"""`package`: export, validate and assemble a deployable bundle (layout: `bundle.py`).

The graphs come from the export API (`export.export`, validated against PyTorch as always), the
plugin sources and CMake files from `plugin_build.plugin_source_dir()`, the class names from the
package data (`data/imagenet_classes.txt`). Plugin libraries and TensorRT engines are added when
this machine can build them: the host library whenever a C++ compiler (or the wheel's prebuilt
copy) is there; the TensorRT plugin and the engines only where TensorRT and a CUDA GPU are, since
an engine is built on (and for) the GPU it will run on. Whatever is skipped is said, once, in the
manifest and in the result's notes.

Everything is assembled in a temporary directory next to the output and moved into place (or
packed into the .tar.gz) only when every step succeeded: a failure leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..artifacts import (
    GRAPH_FILES,
    MANIFEST_FILE,
    PLUGIN_DYNAMIC_LIBRARY,
    PLUGIN_FILE,
    PLUGIN_LIBRARY,
    VALIDATION_FILE,
    engine_metadata_name,
)
from ..files import publish_directory, sha256sum
from .format import (
    FORMAT,
    FORMAT_VERSION,
    LABELS_FILE,
    LIB_DIR,
    PLUGINS_DIR,
    TAR_SUFFIXES,
    file_entries,
    is_tarball,
    model_dir,
    write_tarball,
)
from ..engine.build import check_hardware_level
from ..errors import TransNeXtDeployError, one_line
from ..progress import Progress, no_progress
from .images import preprocessing_spec

LABELS_RESOURCE = "imagenet_classes.txt"
# Build outputs and caches that may sit in a checkout's plugins/ but are not sources.
_NOT_SOURCES = shutil.ignore_patterns("build", "build-*", "__pycache__", "*.o", "*.so", "*.a", ".*")


class PackageError(TransNeXtDeployError):
    """A bundle that cannot be made; str() is one line."""


@dataclass
class PackageOptions:
    variant: str
    output: str | os.PathLike
    resolutions: Sequence[int | tuple[int, int]] = ()
    mode: str = "classify"
    checkpoint: str | None = None
    engines: Sequence[str] | None = None  # None: fp16 and fp32 where the runtime can build them here; () none
    runtime: str = "tensorrt"  # or "tensorrt-rtx", which builds ahead of time for compute_capabilities
    compute_capabilities: Sequence[str] = ()  # tensorrt-rtx: the GPUs the engines are for (no GPU needed)
    cuda_archs: Sequence[str] | None = None  # for the TensorRT plugin library built with the engines
    version_compatible: bool = False
    hardware_compatibility: str = "none"
    fixed_pool_size: int | None = None  # linear inference mode (ExportOptions.fixed_pool_size)
    threads: int = 2
    seed: int = 0
    export_options: dict = field(default_factory=dict)  # further ExportOptions fields (atol, position_bias...)


@dataclass
class PackageResult:
    path: str
    manifest: dict
    notes: list[str]
    seconds: float


def labels_path() -> Path:
    """The ImageNet-1k class names shipped with the package (torchvision's order, 1000 lines)."""
    return Path(__file__).resolve().parent.parent / "data" / LABELS_RESOURCE


def read_labels(path: Path | None = None) -> list[str]:
    return (path or labels_path()).read_text(encoding="utf-8").splitlines()


def _check(options: PackageOptions) -> Path:
    output = Path(options.output).expanduser()
    check_hardware_level(options.runtime, options.hardware_compatibility)
    if output.exists() and not is_tarball(output):
        if not output.is_dir():
            raise PackageError(f"{output} exists and is not a directory")
        if any(output.iterdir()) and not (output / MANIFEST_FILE).is_file():
            raise PackageError(f"{output} is a non-empty directory that is not a bundle: not overwriting it")
    elif output.exists() and not output.is_file():
        raise PackageError(f"{output} exists and is not a file")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PackageError(f"cannot create {output.parent}: {exc.strerror or exc}") from None
    if not os.access(output.parent, os.W_OK | os.X_OK):
        raise PackageError(f"{output.parent} is not writable")
    return output


def _export_options(options: PackageOptions, directory: Path):
    from ..export import ExportOptions

    return ExportOptions(variant=options.variant, resolutions=list(options.resolutions), mode=options.mode,
                         checkpoint=options.checkpoint, output_dir=directory, threads=options.threads,
                         seed=options.seed, fixed_pool_size=options.fixed_pool_size, **options.export_options)


def _engine_plan(options: PackageOptions) -> tuple[tuple[str, ...], str | None]:
    """(precisions to build, why none are built)."""
    from ..engine import check_precisions
    from ..engine.compatibility import PRECISION_PREFERENCE
    from ..engine.tensorrt import check_compute_capabilities, get_runtime, status

    if options.engines is not None and not options.engines:
        return (), "no engines asked for (--engines none)"
    wanted = PRECISION_PREFERENCE if options.engines is None else check_precisions(options.engines)
    ahead_of_time = bool(check_compute_capabilities(options.runtime, options.compute_capabilities))
    found = status(options.runtime, need_plugin=False, need_gpu=not ahead_of_time)
    reason = None if found.available else found.reason
    if reason is None and _existing_plugin(options) is None:
        from ..plugin.build import missing_for

        missing = missing_for("plugin")
        if missing:
            reason = "the TensorRT plugin library is neither built nor buildable here: " + "; ".join(missing)
    if reason is not None:
        if options.engines is not None:
            raise PackageError(f"cannot build the {', '.join(wanted)} engines asked for: {reason}")
        return (), (f"{get_runtime(options.runtime).title} engines skipped: {reason}; build them on the target GPU, "
                    "or with tensorrt-rtx for named compute capabilities (README, Package)")
    return wanted, None


def _existing_plugin(options: PackageOptions) -> Path | None:
    """The plugin library the runtime loads, already built here (build directory or
    $TRANSNEXT_AA_PLUGIN), unless --cuda-arch asks for a build for given architectures."""
    from ..engine.tensorrt import plugin_candidates

    return None if options.cuda_archs else plugin_candidates(options.runtime)[0]


def _copy_sources(root: Path) -> None:
    from ..plugin.locations import plugin_source_dir

    shutil.copytree(plugin_source_dir(), root / PLUGINS_DIR, ignore=_NOT_SOURCES)


def _library_entry(path: Path, root: Path) -> dict:
    import platform

    target = root / LIB_DIR / path.name
    target.parent.mkdir(exist_ok=True)
    shutil.copy2(path, target)
    return {"file": f"{LIB_DIR}/{path.name}", "sha256": sha256sum(target),
            "platform": f"{platform.system().lower()}-{platform.machine()}"}


def _host_library(root: Path) -> tuple[dict | None, str | None]:
    from ..plugin.build import ensure_host_library

    try:
        return _library_entry(ensure_host_library(), root), None
    except (TransNeXtDeployError, OSError) as exc:
        return None, f"host library not built: {one_line(exc)}"


def _plugin_libraries(root: Path, options: PackageOptions, work: Path) -> dict[str, dict]:
    """The TensorRT plugin (static and loadLibrary variants) for the engines: the one built here, or
    built now (for --cuda-arch, default the CMake list); raises when the build fails."""
    from ..plugin.build import build_plugin, normalize_cuda_archs

    existing = _existing_plugin(options)
    if existing is not None:
        libraries = {}
        for kind, name in (("plugin", PLUGIN_LIBRARY), ("plugin_dynamic", PLUGIN_DYNAMIC_LIBRARY)):
            if existing.with_name(name).is_file():
                libraries[kind] = _library_entry(existing.with_name(name), root)
        return libraries
    try:
        result = build_plugin(targets=("plugin",), cuda_archs=normalize_cuda_archs(options.cuda_archs),
                              build_dir=work / "plugin-build")
    except TransNeXtDeployError as exc:
        raise PackageError(f"the TensorRT plugin library could not be built for the engines: {exc}") from None
    return {kind: _library_entry(path, root) for kind, path in result.libraries.items()}


def _engines(directory: Path, relative: str, precisions: Sequence[str], options: PackageOptions,
             plugins: dict[str, dict], root: Path, progress: Progress) -> list[dict]:
    from ..engine import build_engines_for_artifact, read_engine_metadata
    from ..engine.tensorrt import get_runtime

    kind = get_runtime(options.runtime).plugin_kind  # the library this runtime loads
    library = root / plugins[kind]["file"]
    dynamic = root / plugins["plugin_dynamic"]["file"] if "plugin_dynamic" in plugins else None
    paths = build_engines_for_artifact(directory, precisions, runtime=options.runtime,
                                       compute_capabilities=options.compute_capabilities, plugin_library=library,
                                       progress=progress, version_compatible=options.version_compatible,
                                       hardware_compatibility=options.hardware_compatibility,
                                       serialize_plugin=dynamic if options.version_compatible else None)
    entries = []
    for path in paths:
        meta = read_engine_metadata(path)
        (path.parent / engine_metadata_name(path.name)).unlink()  # folded into the one manifest
        entries.append({
            "file": f"{relative}/{path.name}", "precision": meta["precision"],
            "runtime": meta["runtime"], "runtime_version": meta["runtime_version"],
            "compute_capabilities": meta["compute_capabilities"], "gpu": (meta.get("gpu") or {}).get("name"),
            "built_ahead_of_time": meta["built_ahead_of_time"],
            "version_compatible": meta.get("version_compatible", False),
            "hardware_compatibility": meta.get("hardware_compatibility", "none"),
            "plugin_library": {"file": plugins[kind]["file"], "sha256": plugins[kind]["sha256"]},
            "serialized_plugin": meta.get("serialized_plugin"), "batch_profile": meta["batch_profile"],
            "graph": meta["graph"], "layers": meta["layers"], "plugin_layers": meta["plugin_layers"],
        })
    return entries


def _model_entry(resolution: tuple[int, int], directory: Path, relative: str, export_manifest: dict,
                 engines: list[dict]) -> dict:
    """The manifest's entry of one resolution: its graphs, validation, preprocessing, contract, engines."""
    validation = json.loads((directory / VALIDATION_FILE).read_text())
    h, w = resolution
    return {
        "name": f"{h}x{w}", "resolution": [h, w], "directory": relative,
        "graphs": {name: f"{relative}/{name}" for name in GRAPH_FILES if (directory / name).is_file()},
        "validation": {"file": f"{relative}/{VALIDATION_FILE}", "passed": validation["passed"],
                       "atol": validation["atol"], "rtol": validation["rtol"],
                       "max_abs": {g: v.get("max_abs") for g, v in validation["graphs"].items()},
                       "skipped": validation["skipped"]},
        "preprocessing": preprocessing_spec(h, w),
        "input": {"name": next(iter(export_manifest["inputs"])),
                  "shape": next(iter(export_manifest["inputs"].values())), "dtype": "float32"},
        "outputs": export_manifest["outputs"],
        "custom_op": export_manifest["custom_op"],
        "commands": export_manifest["commands"],
        "engines": engines,
    }


def _labels(root: Path, models: list[dict]) -> dict:
    """The class names, copied into the bundle; their count must be the model's."""
    names = read_labels()
    classes = models[0]["outputs"]["logits"][1]
    if len(names) != classes:
        raise PackageError(f"the model has {classes} classes but {labels_path().name} has {len(names)} "
                           "names (a bundle's labels must match its classes)")
    shutil.copy2(labels_path(), root / LABELS_FILE)
    return {"file": LABELS_FILE, "count": len(names),
            "source": "ImageNet-1k class names in torchvision's order (index = logit index)"}


def _bundle_manifest(first: dict, options: PackageOptions, models: list[dict], labels: dict | None, plugin: dict,
                     engines_skipped: str | None, root: Path) -> dict:
    """The bundle's one manifest; `first` is the first resolution's export manifest."""
    classify = first["mode"] == "classify"
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "created_by": f"transnext-deploy {__version__}",
        "variant": first["variant"], "mode": first["mode"], "pretrain_size": first["pretrain_size"],
        "position_bias": first["position_bias"], "opset": first["opset"], "weights": first["weights"],
        **({"fixed_pool_size": options.fixed_pool_size} if options.fixed_pool_size is not None else {}),
        "resolutions": [m["resolution"] for m in models],
        "input": {"name": models[0]["input"]["name"], "dtype": "float32", "layout": "NCHW",
                  "shape": ["batch", 3, "height", "width"], "color": "RGB",
                  "values": "ImageNet-normalised: (rgb / 255 - mean) / std, see each model's preprocessing"},
        "output": ({"name": "logits", "shape": ["batch", models[0]["outputs"]["logits"][1]], "dtype": "float32",
                    "meaning": "class scores before softmax; index i is labels line i"} if classify else
                   {"names": list(models[0]["outputs"]), "dtype": "float32",
                    "meaning": "NCHW feature maps of the four stages, strides 4, 8, 16, 32"}),
        "labels": labels,
        "models": models,
        "engines_skipped": engines_skipped,
        "plugin": plugin,
        "tool_versions": first["tool_versions"],
        "files": file_entries(root),
    }


def package(options: PackageOptions, progress: Progress = no_progress) -> PackageResult:
    """Export, validate and assemble a bundle at options.output (a directory, or a .tar.gz)."""
    from ..engine import EnginePlan
    from ..export import check_options, export

    start = time.perf_counter()
    output = _check(options)
    precisions, engines_skipped = _engine_plan(options)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        root = work / "bundle"
        root.mkdir()
        export_dir = work / "export"
        export_options = check_options(_export_options(options, export_dir))
        classify = export_options.mode == "classify"
        notes: list[str] = []
        results = export(export_options, progress=progress,
                         engines=EnginePlan((), None))
        progress("assembling the bundle", advance=1)
        _copy_sources(root)
        host, host_skipped = _host_library(root)
        libraries = {"host": host} if host else {}
        skipped = {"host": host_skipped} if host_skipped else {}
        if precisions:
            progress("building the TensorRT plugin library", advance=1)
            libraries.update(_plugin_libraries(root, options, work))
        else:
            skipped["plugin"] = ("TensorRT plugin library not built: it is built with the engines, on the target "
                                 "(`cmake -S plugins`, or `transnext-deploy build-plugin --target plugin`)")
        models, export_manifests = [], []
        for result in results:
            relative = model_dir(result.resolution)
            directory = root / relative
            directory.parent.mkdir(exist_ok=True)
            shutil.move(result.directory, directory)
            export_manifest = json.loads((directory / MANIFEST_FILE).read_text())
            (directory / MANIFEST_FILE).unlink()  # its facts go into the bundle's one manifest
            export_manifests.append(export_manifest)
            engines = []
            if precisions:
                engines = _engines(directory, relative, precisions, options, libraries, root, progress)
            models.append(_model_entry(result.resolution, directory, relative, export_manifest, engines))
            notes += result.notes
        labels = _labels(root, models) if classify else None
        progress("writing the manifest", advance=1)
        manifest = _bundle_manifest(export_manifests[0], options, models, labels, {
            "sources": PLUGINS_DIR, "libraries": libraries, "skipped": skipped, "custom_op_graph": PLUGIN_FILE},
            engines_skipped, root)
        (root / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        if is_tarball(output):
            progress("writing the tarball", advance=1)
            write_tarball(root, output)
        else:
            publish_directory(root, output)
    except OSError as exc:
        raise PackageError(f"cannot write the bundle {output}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if engines_skipped:
        notes.append(engines_skipped)
    notes += list(skipped.values())
    return PackageResult(str(output), manifest, notes, round(time.perf_counter() - start, 1))


__all__ = ["TAR_SUFFIXES", "PackageError", "PackageOptions", "PackageResult",
           "labels_path", "package", "read_labels"]
