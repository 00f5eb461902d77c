"""The aggregated-attention libraries under `plugins/`: find them, find the tools, build them with CMake."""

from .build import *  # noqa: F403
from .build import __all__  # noqa: F401
