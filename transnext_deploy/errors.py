"""The package's exception root and the one-line form every error is reported in.

Every error the package raises on purpose derives from `TransNeXtDeployError`, so a caller (the CLI
first of all) can tell "this input or this machine cannot do it" from a bug: the CLI prints the
first as one line and lets anything else keep its traceback. Errors the public API documents as
`ValueError` (a bad argument to `create_model`, the op, a tolerance...) are `InvalidArgumentError`,
which is both. Each module defines its own subclasses next to the code that raises them.

This module is at the bottom of the package: it imports nothing from it.
"""

from __future__ import annotations


class TransNeXtDeployError(Exception):
    """Root of every error the package raises on purpose; str() is one line."""


class InvalidArgumentError(TransNeXtDeployError, ValueError):
    """A bad argument to a public function or a bad option; a ValueError, as the API documents."""


def one_line(exc: BaseException | str) -> str:
    """The message of `exc` (or a text) on one line, whitespace runs collapsed; an exception with no
    message gives its type's name."""
    if isinstance(exc, str):
        return " ".join(exc.split())
    return " ".join(str(exc).split()) or type(exc).__name__


__all__ = ["InvalidArgumentError", "TransNeXtDeployError", "one_line"]
