"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from transnext_deploy import create_model


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
