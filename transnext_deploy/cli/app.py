"""The `transnext-deploy` application: the Typer app, the consoles, the one-line error handling and
the option helpers the command modules share. The command modules import this one; it imports none
of them (they are registered in `transnext_deploy.cli`).
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Sequence
from functools import wraps

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text
from typer.core import TyperGroup

from .. import __version__
from ..artifacts import DEBUG_ENV
from ..errors import TransNeXtDeployError, one_line

console = Console(stderr=True)  # progress, notes and errors; tables go to stdout


class UserError(TransNeXtDeployError):
    """An error in the command's input that no library call reports; one line."""


def one_line_errors(fn: Callable) -> Callable:
    """Report the package's errors (bad input, a missing tool...) as one `error:` line and exit 1;
    anything else is a bug and keeps its traceback. TRANSNEXT_DEPLOY_DEBUG=1 re-raises every error."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TransNeXtDeployError as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            say(one_line(exc), label="error", style="bold red")
            raise typer.Exit(code=1) from None

    return wrapper


def say(text: str, *, label: str | None = None, style: str | None = None) -> None:
    """One line on stderr, printed as it is: never parsed as markup (brackets such as
    `transnext-deploy[tensorrt]` survive), never wrapped (commands stay copyable when stderr is a
    file or a pipe, and a terminal folds them itself). `label` (`note`, `error`...) is coloured."""
    line = Text.assemble((f"{label}:", style or "yellow"), " ", text) if label else Text(text, style=style or "")
    console.print(line, highlight=False, soft_wrap=True)


def note(text: str, label: str = "note") -> None:
    """A yellow `note:` line on stderr."""
    say(text, label=label)


def output_console() -> Console:
    """The console of tables and results on stdout: the terminal's width (or $COLUMNS); for a pipe or
    a file without $COLUMNS, wide enough that nothing is wrapped or cut."""
    import sys

    return Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 240)


class StepProgress:
    """Progress on stderr. On a terminal: rich's spinner, description, bar and elapsed time,
    erased when done. Otherwise (CI, `| tee`, nohup): one plain line per step with the elapsed
    time, `[  12.3 s] 224x224: tracing to standard ONNX (2/5)`; updates that do not advance
    (the rounds inside one bench case, a download's bytes) print at most every `quiet_s` seconds.

    with StepProgress("export transnext_micro", total=5) as progress:
        progress.update("building the PyTorch model", advance=1)
    """

    def __init__(self, title: str, total: float | None = None, *, columns: Sequence | None = None,
                 quiet_s: float = 10.0, counts: bool = True, steps: bool = True):
        """`steps=False`: off a terminal, every update is printed at most every quiet_s, however much
        it advanced (a line per classified image would flood a log)."""
        self.title, self.total, self.columns, self.quiet_s, self.counts = title, total, columns, quiet_s, counts
        self.steps = steps
        self.terminal = console.is_terminal
        self.completed = 0.0
        self._progress = None
        self._task = None
        self._start = self._last_line = 0.0
        self._last_text = None

    def __enter__(self) -> StepProgress:
        self._start = time.perf_counter()
        if self.terminal:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            columns = self.columns or (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                       TimeElapsedColumn())
            self._progress = Progress(*columns, console=console, transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task(escape(self.title), total=self.total)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc_info)

    def update(self, description: str, *, advance: float = 0.0, completed: float | None = None,
               total: float | None = None, step: bool | None = None) -> None:
        """A new description and/or amount done. Off a terminal it is printed when it is a step:
        `step`, by default whether the amount done grew; anything else at most every quiet_s."""
        before = self.completed
        self.completed = completed if completed is not None else self.completed + advance
        if total is not None:
            self.total = total
        if self._progress is not None:
            self._progress.update(self._task, description=escape(description), completed=self.completed,
                                  total=self.total)
            return
        now = time.perf_counter()
        if description == self._last_text:
            return
        if step is None:
            step = self.steps and self.completed > before
        if not step and self._last_text is not None and now - self._last_line < self.quiet_s:
            return
        self._last_text, self._last_line = description, now
        count = f" ({self.completed:g}/{self.total:g})" if self.total and self.counts else ""
        say(f"[{now - self._start:7.1f} s] {description}{count}")


def split_values(values: list[str]) -> list[str]:
    """Repeated options, each possibly comma-separated: -r 224 -r 384 or -r 224,384."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def trailing_values(ctx: typer.Context, values: list[str] | None, option: str) -> list[str]:
    """An option that takes several values after one flag (`--compute-capability 86 89 120`): the
    first is the option's, the others arrive as the command's extra arguments (the command allows
    them). Comma-separated and repeated forms work too. Any other extra argument is an error."""
    extra = list(ctx.args)
    if extra and not values:
        raise UserError(f"unexpected argument {' '.join(extra)}")
    return split_values([*(values or []), *extra])


def whole_numbers(values: list[str], option: str) -> list[int]:
    try:
        return [int(v) for v in split_values(values)]
    except ValueError:
        raise UserError(f"{option} takes whole numbers, got {', '.join(values)}") from None


def _plain_flags(params: list) -> None:
    """Show on/off options (--version, --json, --help, ...) as bare flags in the help.

    typer's rich help prints a type such as `<bool>` after every option, flags included, although
    a flag takes no value; an empty metavar leaves the type column blank for them.
    """
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


def unwrap_paragraphs(text: str) -> str:
    """A docstring as help: the source's line breaks inside a paragraph joined, so the help reflows
    to the terminal instead of breaking sentences where the source did; blank lines still separate
    paragraphs."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _plain_help(command) -> None:
    """Once per command: its intro unwrapped, and every help text escaped, since typer's help reads
    rich markup and would eat `[tensorrt]` or `[1]`."""
    if getattr(command, "_help_prepared", False):
        return
    command._help_prepared = True
    if command.help:
        command.help = escape(unwrap_paragraphs(command.help))
    for param in command.params:
        if getattr(param, "help", None):
            param.help = escape(param.help)


class PlainFlagsGroup(TyperGroup):
    def get_params(self, ctx):
        params = super().get_params(ctx)
        _plain_flags(params)
        _plain_help(self)
        return params

    def get_command(self, ctx, cmd_name):
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            _plain_flags(cmd.get_params(ctx))  # its options, and its --help (created once, then cached)
            _plain_help(cmd)
        return cmd


app = typer.Typer(
    name="transnext-deploy",
    cls=PlainFlagsGroup,
    help="Take TransNeXt from PyTorch to ONNX and TensorRT, validated against the PyTorch reference.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
) -> None:
    """Take TransNeXt from PyTorch to ONNX and TensorRT, validated against the PyTorch reference."""


__all__ = ["DEBUG_ENV", "StepProgress", "UserError", "app", "console", "escape", "note",
           "one_line_errors", "output_console", "say", "split_values", "trailing_values", "unwrap_paragraphs", "whole_numbers"]
