"""The aggregated-attention libraries under `plugins/`: where they are (`locations`), the tools a
build needs (`toolchain`), and building them with CMake (`build`). Everything is re-exported here:
`transnext_deploy.plugin` (and its old name `transnext_deploy.plugin_build`) is the API."""

from .build import *  # noqa: F403
from .build import __all__ as _build
from .locations import *  # noqa: F403
from .locations import __all__ as _locations
from .toolchain import *  # noqa: F403
from .toolchain import __all__ as _toolchain

__all__ = [*_build, *_locations, *_toolchain]
