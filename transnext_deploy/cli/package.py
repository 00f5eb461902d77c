"""`transnext-deploy package`: the command over `transnext_deploy.bundle.package`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..engine import HARDWARE_COMPATIBILITY
from .app import SIZE_HELP, StepProgress, UserError, note, one_line_errors, say, split_values


def package_command(
    size: str = typer.Option(..., "--size", "-s", help=SIZE_HELP),
    resolution: list[str] = typer.Option(  # noqa: B008
        [], "--resolution", "-r",
        help="Input size, SIDE or HEIGHTxWIDTH; repeat (or comma-separate) for several models in one bundle. "
             "Default: the variant's training size (224; 256 for micro_AAAA)."),
    checkpoint: Optional[str] = typer.Option(  # noqa: UP007
        None, "--checkpoint", "-c",
        help="Official .pth (bare or wrapped state dict), or 'official' to download it. "
             "Default: random weights, for structure and speed only."),
    mode: str = typer.Option("classify", "--mode", "-m",
                             help="classify: logits and the ImageNet-1k class names (what predict needs); "
                                  "backbone: the four NCHW stage features."),
    engines: Optional[str] = typer.Option(  # noqa: UP007
        None, "--engines",
        help="TensorRT engine precisions to build, comma-separated (fp16,fp32), or 'none'. Given, they are "
             "required. Default: fp16 and fp32 where TensorRT and a CUDA GPU are here, else none (said why)."),
    cuda_arch: Optional[list[str]] = typer.Option(  # noqa: UP007
        None, "--cuda-arch", metavar="ARCH",
        help="CUDA architectures of the TensorRT plugin library built with the engines (repeat, or "
             "comma-separate: 80,86,87). Default: the CMake default list."),
    version_compatible: bool = typer.Option(
        False, "--version-compatible",
        help="Build engines that also run on later TensorRT versions of the same major version (TensorRT's "
             "lean runtime inside; the loadLibrary plugin library is serialized into them)."),
    hardware_compatibility: str = typer.Option(
        "none", "--hardware-compatibility",
        help="Engines for: none (the packaging GPU's compute capability), ampere_plus (any Ampere or later "
             "GPU), same_compute_capability (TensorRT >= 10.13). Slower engines for wider reach."),
    fixed_pool_size: Optional[int] = typer.Option(  # noqa: UP007
        None, "--fixed-pool-size",
        help="Linear inference mode: every attention stage pools to an N x N grid whatever the input size."),
    output: Path = typer.Option(..., "--output", "-o",  # noqa: B008
                                help="The bundle: a directory, or a .tar.gz / .tgz file. Nothing is written "
                                     "there unless every step succeeds."),
    threads: int = typer.Option(2, "--threads", help="onnxruntime threads used for validation."),
    triton: Optional[Path] = typer.Option(  # noqa: UP007
        None, "--triton", metavar="DIR",
        help="Also write a Triton Inference Server model repository there (a new or empty directory): the "
             "TensorRT plan when engines were built, else the standard ONNX graph for onnxruntime; "
             "config.pbtxt with dynamic batching; a README with the tritonserver command."),
    triton_max_batch: int = typer.Option(16, "--triton-max-batch",
                                         help="max_batch_size of the Triton model (at most the engines' "
                                              "profile maximum, 32)."),
    json_output: bool = typer.Option(False, "--json", help="Print the bundle's manifest as JSON on stdout."),
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

    if hardware_compatibility not in HARDWARE_COMPATIBILITY:
        raise UserError(f"--hardware-compatibility must be one of {', '.join(HARDWARE_COMPATIBILITY)}, "
                        f"got {hardware_compatibility!r}")
    if triton is not None:
        from ..serving.repository import check_repository_target

        check_repository_target(triton, triton_max_batch)  # before the export, not after it
    precisions = None
    if engines is not None:
        values = split_values([engines])
        precisions = [] if values == ["none"] else values
    options = PackageOptions(
        variant=size, output=output, resolutions=[parse_resolution(r) for r in split_values(resolution)],
        mode=MODE.parse(mode, "--mode"), checkpoint=checkpoint, engines=precisions,
        cuda_archs=split_values(cuda_arch) if cuda_arch else None, version_compatible=version_compatible,
        hardware_compatibility=hardware_compatibility, fixed_pool_size=fixed_pool_size, threads=threads)
    with StepProgress(f"package transnext_{size}") as progress:
        try:
            result = package(options, progress=lambda step: progress.update(step, step=True))
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
    app.command("package")(one_line_errors(package_command))
