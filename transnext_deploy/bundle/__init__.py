"""The deployable bundle: its format (`format`), making one (`package`), running one (`runtime`), and
the images it takes (`images`). `format`, `runtime` and `images` import neither torch nor the model
code; `package` exports, so it does."""

from .format import BundleError, OpenBundle, open_bundle

__all__ = ["BundleError", "OpenBundle", "open_bundle"]
