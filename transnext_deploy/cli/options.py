"""The options several commands share, declared once (as polygraphy's argument groups are).

Each is a `typing.Annotated` type a command puts on a parameter, `size: options.Size`, with the
default in the signature; an option whose help names a command-specific default is a function of
that text. The vocabulary comes from the library (`backends.registry`, `engine`, `artifacts`), so
the help and the checks say the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..artifacts import PLUGIN_DYNAMIC_LIBRARY, PLUGIN_ENV, PLUGIN_LIBRARY
from ..backends.registry import BUNDLE_BACKENDS, DEVICES
from ..engine.compatibility import HARDWARE_COMPATIBILITY
from ..engine.tensorrt import RTX_COMPUTE_CAPABILITIES

SIZE_HELP = "Variant: micro, tiny, small, base or micro_AAAA."
RESOLUTION_HELP = "Input size, SIDE or HEIGHTxWIDTH; repeat or comma-separate for several."

Size = Annotated[str, typer.Option("--size", "-s", help=SIZE_HELP)]


def resolutions(default: str) -> typer.models.OptionInfo:
    return typer.Option("--resolution", "-r", metavar="RES", help=f"{RESOLUTION_HELP} Default: {default}.")




def checkpoint(default: str) -> typer.models.OptionInfo:
    return typer.Option("--checkpoint", "-c", help=f"Official .pth (bare or wrapped state dict), or 'official' to "
                                                   f"download it. Default: {default}.")


RANDOM_WEIGHTS = "random weights, for structure and speed only"
TRAINING_SIZE = "the variant's training size (224; 256 for micro_AAAA)"


def mode(what_classify_gives: str) -> typer.models.OptionInfo:
    return typer.Option("--mode", "-m", help=f"classify: {what_classify_gives}; backbone: the four NCHW stage "
                                             "features.")


FixedPoolSize = Annotated[Optional[int], typer.Option(  # noqa: UP007
    "--fixed-pool-size",
    help="Linear inference mode (paper, section 4.1): every aggregated-attention stage pools to N x N whatever "
         "the resolution, so attention cost grows linearly with the pixels; the paper uses 7 with 224-trained "
         "weights (README, Linear inference mode). Every stage grid must be larger than N. Default: pool grids "
         "of (H // sr) x (W // sr).")]
ValidationThreads = Annotated[int, typer.Option("--threads", help="onnxruntime threads used for validation.")]
GraphPrecisions = Annotated[Optional[list[str]], typer.Option(  # noqa: UP007
    "--precision", "-p", metavar="PRECISION",
    help="The graphs to write: fp32 always, fp16 too unless only fp32 is named (fp16 compute, LayerNorm in fp32, "
         "validated against PyTorch with its own tolerance; what fp16 TensorRT engines are built from). Repeat or "
         "comma-separate. Default: fp32 and fp16.")]


def json_flag(what: str) -> typer.models.OptionInfo:
    return typer.Option("--json", help=f"Print {what} as JSON on stdout (progress stays on stderr).")


# ------------------------------------------------------------------------------------------ engines

Runtime = Annotated[str, typer.Option(
    "--runtime", metavar="RUNTIME",
    help="tensorrt (TensorRT 10.x/11.x: builds for the GPU it runs on) or tensorrt-rtx (TensorRT for RTX: builds "
         "ahead of time, without a GPU, for --compute-capability).")]
ComputeCapabilities = Annotated[Optional[list[str]], typer.Option(  # noqa: UP007
    "--compute-capability", metavar="CC",
    help=f"tensorrt-rtx: the compute capabilities to build for, any of {' '.join(RTX_COMPUTE_CAPABILITIES)}; several "
         "after one flag (86 89 120), comma-separated or repeated. Default: the GPU here (none: an error).")]

Plugin = Annotated[Optional[Path], typer.Option(  # noqa: UP007
    "--plugin", help=f"TensorRT plugin library ({PLUGIN_LIBRARY}). Default: ${PLUGIN_ENV}, else the build "
                     "directory of `transnext-deploy build-plugin`.")]
VersionCompatible = Annotated[bool, typer.Option(
    "--version-compatible",
    help="Build engines that later TensorRT versions of the same major version also run (TensorRT's lean runtime "
         f"inside); the loadLibrary plugin library ({PLUGIN_DYNAMIC_LIBRARY}) is serialised into them.")]
HardwareCompatibility = Annotated[str, typer.Option(
    "--hardware-compatibility", metavar="LEVEL",
    help=f"{' | '.join(HARDWARE_COMPATIBILITY)}. none: engines for this GPU's compute capability; ampere_plus: every "
         "GPU of compute capability 8.0 or later (not on Jetson); same_compute_capability (TensorRT >= 10.13): every "
         "GPU of this one's compute capability. Wider reach, slower engines. TensorRT only: tensorrt-rtx engines run "
         "on the --compute-capability they are built for.")]
CudaArchs = Annotated[Optional[list[str]], typer.Option(  # noqa: UP007
    "--cuda-arch", metavar="ARCH",
    help="CUDA architecture to compile the plugin for; repeat or comma-separate for several (75 80 86 87 89 90; "
         "sm_87 and 8.7 are accepted too). Default: the CMake default list.")]

# ------------------------------------------------------------------------------------------ running a bundle

Bundle = Annotated[Path, typer.Option("--bundle", "-b", help="A bundle directory or .tar.gz made by "
                                                             "`transnext-deploy package`.")]


def device(meaning: str) -> typer.models.OptionInfo:
    return typer.Option("--device", help=f"{' | '.join(DEVICES)}. {meaning}")


Device = Annotated[str, device("Where the model may run; auto: the best backend this machine has (the choice and "
                               "the reasons are printed).")]
Backend = Annotated[Optional[str], typer.Option(  # noqa: UP007
    "--backend", metavar="NAME",
    help=f"Only this backend: {', '.join(BUNDLE_BACKENDS)} (best first; README, Python runtime). Default: the best "
         "on --device.")]
RuntimeThreads = Annotated[Optional[int], typer.Option(  # noqa: UP007
    "--threads", help="CPU threads for onnxruntime. Default: the CPUs this process may use, at most 8.")]


def top(what: str) -> typer.models.OptionInfo:
    return typer.Option("--top", "-k", help=f"K: the classes {what}.")


__all__ = [
    "Backend",
    "ComputeCapabilities",
    "Runtime",
    "Bundle",
    "RANDOM_WEIGHTS",
    "TRAINING_SIZE",
    "checkpoint",
    "CudaArchs",
    "Device",
    "FixedPoolSize",
    "GraphPrecisions",
    "HardwareCompatibility",
    "Plugin",
    "RuntimeThreads",
    "SIZE_HELP",
    "Size",
    "ValidationThreads",
    "VersionCompatible",
    "device",
    "json_flag",
    "mode",
    "resolutions",
    "top",
]
