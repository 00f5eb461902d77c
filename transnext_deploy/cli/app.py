"""The `transnext-deploy` application: the Typer app, the consoles, the one-line error handling and
the option helpers the command modules share. The command modules import this one; it imports none
of them (they are registered in `transnext_deploy.cli`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import wraps

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from .. import __version__
from ..errors import TransNeXtDeployError, one_line

DEBUG_ENV = "TRANSNEXT_DEPLOY_DEBUG"
SIZE_HELP = "Variant: micro, tiny, small, base or micro_AAAA."
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
            console.print(f"[bold red]error:[/] {escape(one_line(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1) from None

    return wrapper


def note(text: str, label: str = "note") -> None:
    """A yellow `note:` line on stderr."""
    console.print(f"[yellow]{label}:[/] {escape(text)}", highlight=False, soft_wrap=True)


def split_values(values: list[str]) -> list[str]:
    """Repeated options, each possibly comma-separated: -r 224 -r 384 or -r 224,384."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


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


class PlainFlagsGroup(TyperGroup):
    def get_params(self, ctx):
        params = super().get_params(ctx)
        _plain_flags(params)
        return params

    def get_command(self, ctx, cmd_name):
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            _plain_flags(cmd.get_params(ctx))  # its options, and its --help (created once, then cached)
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


__all__ = ["DEBUG_ENV", "SIZE_HELP", "UserError", "app", "console", "note", "one_line_errors", "split_values",
           "whole_numbers"]
