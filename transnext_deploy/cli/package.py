"""`transnext-deploy package`: the command over `transnext_deploy.bundle.package`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import options
from .app import StepProgress, note, one_line_errors, say, split_values, trailing_values


# Long only by its option declarations; the body hands them to the library.
def package_command(
    ctx: typer.Context,
    size: options.Size,
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="The bundle: a directory, or a .tar.gz / .tgz file. Nothing is written there unless "
                               "every step succeeds.")],
    resolution: Annotated[Optional[list[str]], options.resolutions(  # noqa: UP007
        f"{options.TRAINING_SIZE}; one model each in the bundle")] = None,
    checkpoint: Annotated[Optional[str], options.checkpoint(options.RANDOM_WEIGHTS)] = None,  # noqa: UP007
    mode: Annotated[str, options.mode("logits and the ImageNet-1k class names (what predict needs)")] = "classify",
    engines: Optional[str] = typer.Option(  # noqa: UP007
        None, "--engines",
        help="TensorRT engine precisions to build, comma-separated (fp16,fp32), or 'none'. Given, they are "
             "required. Default: fp16 and fp32 where TensorRT and a CUDA GPU are here, else none (said why)."),
    runtime: options.Runtime = "tensorrt",
    compute_capability: options.ComputeCapabilities = None,
    cuda_arch: options.CudaArchs = None,
    version_compatible: options.VersionCompatible = False,
    hardware_compatibility: options.HardwareCompatibility = "none",
    fixed_pool_size: options.FixedPoolSize = None,
    threads: options.ValidationThreads = 2,
    triton: Optional[Path] = typer.Option(  # noqa: UP007
        None, "--triton", metavar="DIR",
        help="Also write a Triton Inference Server model repository there (a new or empty directory): the "
             "TensorRT plan when engines were built, else the standard ONNX graph for onnxruntime; "
             "config.pbtxt with dynamic batching; a README with the tritonserver command."),
    triton_max_batch: int = typer.Option(16, "--triton-max-batch",
                                         help="max_batch_size of the Triton model (at most the engines' "
                                              "profile maximum, 32)."),
    json_output: Annotated[bool, options.json_flag("the bundle's manifest")] = False,
) -> None:
    """Package TransNeXt as a deployable bundle: validated ONNX graphs, plugin sources, libraries, engines.

    The bundle holds, per resolution, the three ONNX graphs of `export` (validated against PyTorch) and
    their validation report; the plugin sources and CMake files (plugins/); the plugin libraries built
    here (the CPU host library; the TensorRT plugin and the engines only where TensorRT and a CUDA GPU
    are, else it says why); the ImageNet-1k class names (classify); and one manifest.json: variant,
    resolutions, input and output contract, the published evaluation preprocessing, per-engine facts
    (TensorRT version, compute capability, compatibility flags, plugin library sha256), tool versions
    and the sha256 of every file. Run it with `transnext-deploy predict --bundle PATH` or
    `transnext_deploy.bundle.runtime.load(PATH)`.
    """
    from ..export import ExportError
    from ..models.config import MODE
    from ..bundle.package import PackageOptions, package
    from ..resolution import parse_resolution

    if triton is not None:
        from ..serving.repository import check_repository_target

        check_repository_target(triton, triton_max_batch)  # before the export, not after it
    precisions = None
    if engines is not None:
        values = split_values([engines])
        precisions = [] if values == ["none"] else values
    options = PackageOptions(
        variant=size, output=output, resolutions=[parse_resolution(r) for r in split_values(resolution or [])],
        mode=MODE.parse(mode, "--mode"), checkpoint=checkpoint, engines=precisions,
        runtime=runtime, compute_capabilities=trailing_values(ctx, compute_capability, "--compute-capability"),
        cuda_archs=split_values(cuda_arch) if cuda_arch else None, version_compatible=version_compatible,
        hardware_compatibility=hardware_compatibility, fixed_pool_size=fixed_pool_size, threads=threads)
    with StepProgress(f"package transnext_{size}") as progress:
        try:
            result = package(options, progress=progress.update)
        except ExportError as exc:
            raise ExportError(f"nothing written to {output}: {exc}") from None
    for text in result.notes:
        note(text)
    manifest = result.manifest
    engines_built = sum(len(m["engines"]) for m in manifest["models"])
    size_mb = sum(f["bytes"] for f in manifest["files"].values()) / 1e6
    say(f"{result.path}: transnext_{manifest['variant']} {manifest['mode']}, "
        f"{', '.join(m['name'] for m in manifest['models'])}, {len(manifest['files'])} files "
        f"({size_mb:.1f} MB), {engines_built} engine(s), {result.seconds:.0f} s", label="ok", style="green")
    if triton is not None:
        from ..serving.repository import write_model_repository

        repository = write_model_repository(result.path, triton, triton_max_batch)
        for text in repository.notes:
            note(text)
        say(f"{repository.path}: Triton model repository ({repository.platform}, max batch "
            f"{repository.max_batch}); see its README.md", label="ok", style="green")
    if json_output:
        typer.echo(json.dumps(manifest, indent=2))


def register(app: typer.Typer) -> None:
    # extra arguments: the values after --compute-capability (`--compute-capability 86 89 120`)
    app.command("package", context_settings={"allow_extra_args": True})(one_line_errors(package_command))
