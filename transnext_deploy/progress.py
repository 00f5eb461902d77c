"""The one shape of progress reporting: the library calls it, a caller (the CLI) shows it.

    progress(description, *, advance=0.0, total=None)

`description` says what is being done now; `advance` is how many units of work finished with this
call (0 for an update within a step, such as a round of a bench case); `total`, when given, is how
many units the whole job has (a job may announce it late, or revise it). The CLI's
`StepProgress.update` takes exactly these arguments, so a command passes it as it is.

At the bottom of the package: it imports nothing from it.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def __call__(self, description: str, *, advance: float = 0.0, total: float | None = None) -> None: ...


def no_progress(description: str, *, advance: float = 0.0, total: float | None = None) -> None:
    """The progress of a caller that shows none."""


__all__ = ["Progress", "no_progress"]
