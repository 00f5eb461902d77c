"""Import the published TransNeXt classifier (DaiShiResearch/TransNeXt, classification/transnext.py)
from a checkout, for side-by-side timing in benchmarks/gpu_suite.py.

Only that file is imported, with the attention module it imports itself (attention_native.py, or
attention_cuda.py where the `swattention` extension is installed); nothing else of the checkout
runs. It needs timm for a few helpers (DropPath, to_2tuple, trunc_normal_, register_model, _cfg) and
pkg_resources to look for swattention: where those are not installed, minimal stand-ins with the
same behaviour for inference are put in place for the import, and the returned notes say so.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Callable


def _timm_stand_in() -> dict[str, types.ModuleType]:
    import torch.nn as nn

    class DropPath(nn.Identity):  # stochastic depth: the identity at inference
        def __init__(self, drop_prob: float = 0.0):
            super().__init__()

    def to_2tuple(x):
        return tuple(x) if isinstance(x, (tuple, list)) else (x, x)

    def register_model(fn):
        return fn

    def _cfg(**kwargs):
        return dict(kwargs)

    timm = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")
    registry = types.ModuleType("timm.models.registry")
    vit = types.ModuleType("timm.models.vision_transformer")
    layers.DropPath, layers.to_2tuple, layers.trunc_normal_ = DropPath, to_2tuple, nn.init.trunc_normal_
    registry.register_model = register_model
    vit._cfg = _cfg
    timm.models, models.layers, models.registry, models.vision_transformer = models, layers, registry, vit
    return {"timm": timm, "timm.models": models, "timm.models.layers": layers, "timm.models.registry": registry,
            "timm.models.vision_transformer": vit}


def _pkg_resources_stand_in() -> dict[str, types.ModuleType]:
    module = types.ModuleType("pkg_resources")

    class DistributionNotFound(Exception):
        pass

    def get_distribution(name):
        if importlib.util.find_spec(name) is None:
            raise DistributionNotFound(name)
        return name

    module.DistributionNotFound, module.get_distribution = DistributionNotFound, get_distribution
    return {"pkg_resources": module}


def load_published(source: Path, variant: str = "tiny") -> tuple[Callable, list[str]]:
    """(the published `transnext_<variant>` factory, notes). `source` is the checkout or its classification/."""
    folder = source / "classification" if (source / "classification" / "transnext.py").is_file() else source
    path = folder / "transnext.py"
    if not path.is_file():
        raise FileNotFoundError(f"no classification/transnext.py under {source}")
    notes = [f"published model: {path}"]
    stand_ins: dict[str, types.ModuleType] = {}
    if importlib.util.find_spec("timm") is None:
        stand_ins.update(_timm_stand_in())
        notes.append("published model: timm not installed, inference stand-ins used for DropPath, to_2tuple, "
                     "trunc_normal_, register_model, _cfg")
    try:
        has_pkg_resources = importlib.util.find_spec("pkg_resources") is not None
    except ValueError:
        has_pkg_resources = False
    if not has_pkg_resources:
        stand_ins.update(_pkg_resources_stand_in())
        notes.append("published model: pkg_resources not installed, a stand-in looks for swattention")
    added = [name for name in stand_ins if name not in sys.modules]
    sys.modules.update({name: stand_ins[name] for name in added})
    sys.path.insert(0, str(folder))  # for its own `from attention_native import AggregatedAttention`
    try:
        spec = importlib.util.spec_from_file_location("published_transnext", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
        for name in added:
            sys.modules.pop(name, None)
    attention = "attention_cuda (swattention)" if "attention_cuda" in sys.modules else "attention_native"
    notes.append(f"published model: aggregated attention from {attention}")
    return getattr(module, f"transnext_{variant}"), notes
