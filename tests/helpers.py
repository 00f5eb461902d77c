"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

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
