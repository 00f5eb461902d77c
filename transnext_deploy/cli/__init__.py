"""`transnext-deploy`: a thin command-line layer over the library API.

`app.py` holds the application, its consoles and the one-line error handling; each command group
lives in its own module and is registered here, explicitly. Every command reports a bad input (any
of the package's errors) as one line on stderr and exits 1; set TRANSNEXT_DEPLOY_DEBUG=1 to see
the traceback instead. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from . import about, bench, engine, export, package, plugin, predict, serve, weights
from .app import DEBUG_ENV, UserError, app, console, one_line_errors

for _group in (about, weights, plugin, bench, export, engine, package, predict, serve):
    _group.register(app)

__all__ = ["DEBUG_ENV", "UserError", "app", "console", "one_line_errors"]
