"""The docs say what the code does: every code block of README.md and the op README runs, the
files they name exist, and the commands and options they show are the CLI's.

Blocks are discovered, not listed: every fenced ```sh / ```bash / ```python block runs, unless an
HTML comment on the line before it says otherwise:

    <!-- docs-test: skip REASON -->     cannot run here (REASON says why: network, a GPU, TensorRT...)
    <!-- docs-test: cwd=artifact -->    runs in an exported artifact directory (micro at 64x64)

sh blocks run with bash -e in a fresh directory, python blocks with this interpreter; both with
the user cache in a temporary directory. A new section with a block is tested as soon as it is
written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.main import get_command

from transnext_deploy.artifacts import GRAPH_FILES, engine_file_name
from transnext_deploy.engine.tensorrt import RUNTIMES
from transnext_deploy.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "plugins" / "aggregated_attention" / "README.md"]
LANGUAGES = {"sh": "sh", "bash": "sh", "shell": "sh", "console": "sh", "python": "python", "py": "python"}
DIRECTIVE = re.compile(r"^<!--\s*docs-test:\s*(.*?)\s*-->$")


@dataclass
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    language: str  # sh or python
    code: str
    directive: str  # "" (run), "skip REASON", "cwd=artifact"

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def code_blocks(doc: Path) -> list[Block]:
    blocks, lines = [], doc.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        language = LANGUAGES.get(fence.group(1).lower())
        if language is not None:
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            match = DIRECTIVE.match(before.strip())
            blocks.append(Block(doc, i + 1, language, "\n".join(lines[i + 1:end]) + "\n",
                                match.group(1) if match else ""))
        i = end + 1
    return blocks


BLOCKS = [b for doc in DOCS for b in code_blocks(doc)]
RUNNABLE = [b for b in BLOCKS if not b.directive.startswith("skip")]


def test_blocks_are_found_and_every_one_that_cannot_run_says_why():
    assert len(BLOCKS) >= 10 and RUNNABLE  # the parser sees the docs' blocks
    for block in BLOCKS:
        if block.directive.startswith("skip"):
            reason = block.directive[len("skip"):].strip()
            assert len(reason.split()) >= 3, f"{block.id}: a skipped block needs its reason, got {block.directive!r}"
        else:
            assert block.directive in ("", "cwd=artifact"), f"{block.id}: unknown directive {block.directive!r}"
    # the blocks of this project that must run here stay runnable
    runnable = "".join(b.code for b in RUNNABLE)
    assert "create_model(" in runnable and "polygraphy run model.aa_function.onnx --onnxrt" in runnable


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """micro at 64x64: the smallest export (about 40 s on 2 cores)."""
    from transnext_deploy.export import ExportOptions, export

    (result,) = export(ExportOptions("micro", resolutions=[64], output_dir=tmp_path_factory.mktemp("docs")))
    return Path(result.directory)


@pytest.mark.slow
@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_block_runs(block, tmp_path, request):
    cwd = tmp_path / "work"
    cwd.mkdir()
    if block.directive == "cwd=artifact":
        import shutil

        cwd = tmp_path / "artifact"
        shutil.copytree(request.getfixturevalue("artifact"), cwd)
    env = {**os.environ, "TRANSNEXT_DEPLOY_CACHE": str(tmp_path / "cache"), "NO_COLOR": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = ["bash", "-e", "-c", block.code] if block.language == "sh" else [sys.executable, "-c", block.code]
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{block.id} failed:\n{block.code}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


# ------------------------------------------------------------------------------------------ names


REPO_PATH = re.compile(r"`((?:plugins|tests|benchmarks|examples|\.ci|transnext_deploy)/[^`\s]*)`")
NOT_IN_GIT = ("transnext_deploy/plugins", "transnext_deploy/lib")  # made when a wheel is built


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_named_files_exist(doc):
    text = doc.read_text()
    checked = 0
    for path in REPO_PATH.findall(text):
        path = path.rstrip("/")
        if path.startswith(NOT_IN_GIT) or "*" in path:
            continue
        assert (ROOT / path).exists(), f"{doc.name} names {path}, which does not exist"
        checked += 1
    # the op's sources, named without their directory in the op README
    for name in re.findall(r"`(aggregatedAttention\w*\.(?:h|cpp|cu|cuh))", text):
        assert (ROOT / "plugins" / "aggregated_attention" / name).is_file(), f"{doc.name} names {name}"
        checked += 1
    # artifact files: only the names export and build-engine write
    for name in re.findall(r"\bmodel(?:\.\w+)*\.onnx\b", text):
        assert name in GRAPH_FILES, f"{doc.name} names {name}, a file export never writes ({', '.join(GRAPH_FILES)})"
        checked += 1
    engines = {engine_file_name(graph, rt.engine_tag) for graph in GRAPH_FILES for rt in RUNTIMES.values()}
    for name in re.findall(r"\bmodel(?:\.\w+)*\.engine\b", text):
        assert name in engines, f"{doc.name} names {name}, an engine file build-engine never writes"
    assert checked >= 5


COMMANDS = get_command(app).commands


def _options(name: str) -> set[str]:
    return {o for p in COMMANDS[name].params for o in (*p.opts, *p.secondary_opts)} | {"--help"}


def _command_table(text: str) -> list[str]:
    """The first cells of the table in README's "Command line" section: `export --size S ...`."""
    section = text.partition("\n## Command line")[2].partition("\n## ")[0]
    return re.findall(r"^\| `([a-z][\w-]*(?: [^`]*)?)` \|", section, flags=re.M)


def _command_lines(text: str) -> list[str]:
    """`transnext-deploy ...` in inline code and in code blocks, and the README table's commands."""
    lines = re.findall(r"`(transnext-deploy [^`]+)`", text)
    lines += re.findall(r"^\s*(?:\S+ && )*(transnext-deploy .+?)(?: &&|\s*\\?$)", text, flags=re.M)
    return lines + ["transnext-deploy " + c for c in _command_table(text)]


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_commands_and_options_shown_exist(doc):
    lines = [ln for ln in _command_lines(doc.read_text()) if "COMMAND" not in ln]
    assert lines
    for line in lines:
        words = line.split()
        name = words[1]
        assert name in COMMANDS, f"{doc.name}: `{line}` names no command ({', '.join(sorted(COMMANDS))})"
        for option in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", line):
            assert option in _options(name), f"{doc.name}: `{line}`: {name} has no option {option}"
    if doc == DOCS[0]:  # the table of the top README lists every command
        table = {cell.split()[0] for cell in _command_table(doc.read_text())}
        assert set(COMMANDS) <= table, f"commands missing from the README table: {set(COMMANDS) - table}"
