"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from transnext_deploy import create_model
from transnext_deploy.engine.tensorrt import module_problem


def perturb_(model: torch.nn.Module, scale: float = 0.05, seed: int = 0) -> None:
    """Move every parameter away from its initial value (several start at exactly zero or one)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale * (p.abs().mean() + 0.1))


def perturbed_checkpoint(path: Path, name: str, seed: int = 0, **kwargs) -> Path:
    """A checkpoint ({'model': state_dict}) of `name` with every parameter perturbed."""
    torch.manual_seed(seed)
    model = create_model(name, **kwargs)
    perturb_(model, seed=seed)
    torch.save({"model": model.state_dict()}, path)
    return path


# A progress line of the CLI when stderr is not a terminal (cli.app.StepProgress).
PROGRESS_LINE = re.compile(r"^\[ *\d+\.\d s\] \S")


def error_line(stderr: str) -> str:
    """The `error: ...` line of a failed command: the last line of stderr, the only one besides
    progress lines, with no blank line anywhere. Returns it."""
    lines = stderr.splitlines()
    assert lines and all(line.strip() for line in lines), f"blank line in stderr: {stderr!r}"
    others = [line for line in lines if not PROGRESS_LINE.match(line)]
    assert len(others) == 1 and others[0] == lines[-1], stderr
    assert lines[-1].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[-1]


REPO = Path(__file__).resolve().parents[1]
# The TensorRT headers every developer machine and CI have beside the checkout (their README).
SHARED_HEADERS = REPO.parent / "shared" / "third_party" / "tensorrt-headers"


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(p) for p in path.parent.name.split(".") if p.isdigit())


def tensorrt_header_dirs() -> list[Path]:
    """Directories with NvInfer.h: $TENSORRT_INCLUDE_DIR (os.pathsep-separated), else every
    `<version>/include` of ../shared/third_party/tensorrt-headers, oldest first."""
    value = os.environ.get("TENSORRT_INCLUDE_DIR", "")
    if value:
        return [Path(p) for p in value.split(os.pathsep) if p]
    return sorted((d for d in SHARED_HEADERS.glob("*/include") if (d / "NvInfer.h").is_file()), key=_version_key)


NO_HEADERS = ("no TensorRT headers: set TENSORRT_INCLUDE_DIR (directories with NvInfer.h, os.pathsep-separated) or "
              f"provide {SHARED_HEADERS}")


RTX = module_problem("tensorrt-rtx")
needs_rtx = pytest.mark.skipif(RTX is not None, reason=f"needs TensorRT-RTX: {RTX}")


def rtx_plugin_build_problem() -> str | None:
    """Why the plugin cannot be built here for TensorRT-RTX engines (TensorRT-RTX, TensorRT headers,
    nvcc as the build finds it), or None."""
    from transnext_deploy.plugin.toolchain import PluginBuildError, find_nvcc

    if RTX:
        return f"needs TensorRT-RTX: {RTX}"
    if not tensorrt_header_dirs():
        return NO_HEADERS
    try:
        find_nvcc()
    except PluginBuildError as exc:
        return f"needs nvcc to build the plugin: {exc}"
    return None
