"""What the command line prints, as a user sees it in a terminal and in CI (`| tee`, nohup, a log
file): progress, notes, errors, help. Real processes where a terminal and a pipe differ."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from helpers import PROGRESS_LINE, error_line
from transnext_deploy.cli import app
from transnext_deploy.cli.app import PlainFlagsGroup, unwrap_paragraphs

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CLI = [sys.executable, "-m", "transnext_deploy.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE")}
    return {**env, "NO_COLOR": "1", **extra}


@pytest.fixture()
def bad_checkpoint(tmp_path):
    path = tmp_path / "random.pth"
    path.write_bytes(bytes(range(256)) * 8)
    return path


def test_off_a_terminal_each_step_is_one_timed_line_then_the_error(tmp_path, bad_checkpoint):
    out = tmp_path / "new" / "artifacts"
    proc = subprocess.run([*CLI, "export", "-s", "micro", "-r", "64", "-c", str(bad_checkpoint), "-o", str(out)],
                          capture_output=True, text=True, env=_env(), stdin=subprocess.DEVNULL, timeout=300)
    assert proc.returncode == 1 and proc.stdout == ""
    line = error_line(proc.stderr)  # no blank line, nothing after it
    assert "is not a readable PyTorch checkpoint" in line and "weights_only=False" not in line
    steps = proc.stderr.splitlines()[:-1]
    assert steps and all(PROGRESS_LINE.match(s) for s in steps), proc.stderr
    assert re.match(r"^\[ *\d+\.\d s\] 64x64: building the PyTorch model \(1/\d+\)$", steps[0]), steps[0]
    assert "\x1b" not in proc.stderr  # no spinner, no cursor movement
    assert not (tmp_path / "new").exists()  # what the failed export created is gone, parents included


def _run_in_terminal(args: list[str], columns: int = 100) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; returns (status, everything printed)."""
    primary, secondary = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = _env(TERM="xterm")
    env.pop("NO_COLOR")
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary, env=env)
    os.close(secondary)
    chunks = []
    while True:
        ready, _, _ = select.select([primary], [], [], 300)
        if not ready:
            proc.kill()
            break
        try:
            data = os.read(primary, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def test_on_a_terminal_progress_is_the_spinner_not_plain_lines(tmp_path, bad_checkpoint):
    status, text = _run_in_terminal([*CLI, "export", "-s", "micro", "-r", "64", "-c", str(bad_checkpoint),
                                     "-o", str(tmp_path / "o")])
    assert status == 1
    plain = [ln for ln in ANSI.sub("", text).replace("\r", "\n").splitlines() if ln.strip()]
    assert not any(PROGRESS_LINE.match(ln) for ln in plain), text  # no timed lines on a terminal
    assert plain[-1].startswith("error: ") and "is not a readable PyTorch checkpoint" in plain[-1], text


def test_notes_and_commands_are_never_wrapped_off_a_terminal():
    command = "transnext-deploy build-plugin --target plugin --tensorrt-root /opt/TensorRT-10.13"
    text = "skipped: " + "a reason that goes on " * 6 + f"(run `{command}`; pip install 'transnext-deploy[tensorrt]')"
    code = f"from transnext_deploy.cli.app import note; note({text!r})"
    for env in (_env(), _env(COLUMNS="80")):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0 and proc.stderr == f"note: {text}\n", proc.stderr


def test_brackets_survive_in_messages_and_help():
    demo = typer.Typer(cls=PlainFlagsGroup, add_completion=False)

    @demo.command()
    def install(extra: str = typer.Option("x", help="Install with pip install 'transnext-deploy[tensorrt]'.")):
        """Install the optional parts [tensorrt] of the package, for a machine that
        builds engines, in one sentence.

        Second paragraph [1] that the source
        wraps mid-sentence."""
        from transnext_deploy.cli.app import say
        from transnext_deploy.errors import TransNeXtDeployError

        say(f"extra [{extra}]", label="note")
        raise TransNeXtDeployError(f"pip install 'transnext-deploy[{extra}]' failed")

    @demo.command()
    def other():
        """Another command."""

    from transnext_deploy.cli.app import one_line_errors

    demo.registered_commands[0].callback = one_line_errors(demo.registered_commands[0].callback)
    help_text = ANSI.sub("", CliRunner().invoke(demo, ["install", "--help"], env={"COLUMNS": "200"}).stdout)
    assert "Install the optional parts [tensorrt] of the package, for a machine that builds engines, in one " \
           "sentence." in help_text
    assert "Second paragraph [1] that the source wraps mid-sentence." in help_text
    assert "pip install 'transnext-deploy[tensorrt]'." in help_text
    result = CliRunner().invoke(demo, ["install", "--extra", "tensorrt"], env={"NO_COLOR": "1"})
    assert result.stderr == ("note: extra [tensorrt]\n"
                             "error: pip install 'transnext-deploy[tensorrt]' failed\n"), result.stderr


@pytest.mark.parametrize("name", sorted(get_command(app).commands))
def test_help_intros_are_whole_sentences(name):
    """Each paragraph of a command's description is printed as one paragraph (the terminal wraps it,
    the source's line breaks do not): at 250 columns every paragraph is one line."""
    command = get_command(app).commands[name]
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"})
    assert result.exit_code == 0
    lines = [ln.strip() for ln in ANSI.sub("", result.stdout).splitlines()]
    for paragraph in unwrap_paragraphs(command.callback.__doc__ or "").split("\n\n"):
        if len(paragraph) < 240:
            assert paragraph in lines, (paragraph, result.stdout)
