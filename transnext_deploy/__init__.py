"""transnext-deploy: TransNeXt from PyTorch to ONNX and TensorRT, validated at every step.

The package reads like the pipeline (README, Layout): `models/` (the PyTorch reference), `ops/` (the
fused op), `export/` (trace, fuse, validate), `plugin/` (build the libraries), `engine/` (TensorRT
engines), `backends/` (one interface per runtime), `bundle/` (package and run a deployable bundle),
`serving/` (Triton), `bench/`, `cli/`.

Importing the package imports neither torch nor the model code: `create_model`, `list_models`,
`TransNeXt` and `VARIANTS` load `models` on first use, so a process that only runs bundles
(`bundle.runtime`, `predict`, `serve`) never pays for torch.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

_MODEL_API = ("VARIANTS", "TransNeXt", "create_model", "list_models")

# Import paths of modules that moved into the packages above, kept working: the old name is the
# same module object as the new one (patching one patches the other).
MOVED_MODULES = {
    "checkpoint": "models.checkpoint",
    "images": "bundle.images",
    "plugin_build": "plugin",
    "plugin_host": "ops.host",
    "rewrite": "export.rewrite",
    "runtime": "bundle.runtime",
    "triton_repository": "serving.repository",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves `transnext_deploy.<old name>` to the module it moved to."""

    def find_spec(self, fullname, path=None, target=None):
        prefix, _, name = fullname.rpartition(".")
        if prefix == __name__ and name in MOVED_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(f"{__name__}.{MOVED_MODULES[spec.name.rpartition('.')[2]]}")

    def exec_module(self, module) -> None:
        pass  # the target module was executed by its own import


if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModuleFinder())  # before path-based finders, which would look for the old file


def __getattr__(name: str):
    if name in _MODEL_API:
        from . import models

        return getattr(models, name)
    if name in MOVED_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["VARIANTS", "TransNeXt", "create_model", "list_models", "__version__"]
