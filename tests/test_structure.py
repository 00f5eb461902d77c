"""The package's shape: every module imports on its own, no two modules import each other, every
error derives from the one root, the CLI keeps a bug's traceback, and facts shared with CMake hold.

All of it reads source or imports modules; it takes seconds.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import transnext_deploy
from transnext_deploy.errors import TransNeXtDeployError

PACKAGE_DIR = Path(transnext_deploy.__file__).resolve().parent
REPO = PACKAGE_DIR.parent
PACKAGE = "transnext_deploy"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))
           if "plugins" not in p.relative_to(PACKAGE_DIR).parts and p.name != "__main__.py"}


def _resolve(name: str, path: Path, node: ast.AST) -> list[str]:
    """The modules an import statement of module `name` names (absolute, dotted)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    # `from . import x` names a submodule when there is one, else an attribute of the package.
    return [f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in node.names]


def _module_level(tree: ast.Module):
    """The import statements that run when the module is imported: not those inside functions, nor
    under `if TYPE_CHECKING:`."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack += node.orelse
        elif isinstance(node, (ast.If, ast.Try, ast.With, ast.ClassDef)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                stack += getattr(node, field, [])
        elif isinstance(node, ast.ExceptHandler):
            stack += node.body


def _imports(name: str, path: Path, *, module_level: bool = False, external: bool = False) -> set[str]:
    """Package modules that `name` imports anywhere in its source (functions included), or only at
    module level; with `external`, the top-level names of the other packages it imports instead."""
    tree = ast.parse(path.read_text(), filename=str(path))
    statements = _module_level(tree) if module_level else (
        n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)))
    found = set()
    for node in statements:
        for target in _resolve(name, path, node):
            if external:
                if target and not target.startswith(PACKAGE):
                    found.add(target.split(".")[0])
                continue
            while target and target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in MODULES and target != name:
                found.add(target)
    return found


def module_level_imports(name: str, path: Path, external: bool = False) -> set[str]:
    """What `import name` itself executes: its module-level imports (tests/test_bundle_runtime.py)."""
    return _imports(name, path, module_level=True, external=external)


def test_no_module_imports_another_that_imports_it_back():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert graph["transnext_deploy.export.validate"] >= {"transnext_deploy.artifacts", "transnext_deploy.backends.onnxrt"}
    cycles = []
    for start in graph:  # every cycle through `start`, by depth-first search over the import graph
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join(path + [start]))
                elif nxt not in path and nxt > start:  # report each cycle once, from its smallest module
                    stack.append((nxt, path + [nxt]))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


# The bottom modules, and what each may import (nothing else of the package).
BOTTOM = {"errors": set(), "artifacts": set(), "files": set(), "progress": set(), "machine": set(), "memory": set(),
          "cache": {"artifacts", "errors"}, "resolution": {"errors"}, "compare": {"errors"}}
# The stages in pipeline order: what each may import besides the bottom modules and itself. A
# module belongs to the package it is in (`info` and the package's own __init__ are stages of
# their own). Nothing imports the CLI.
STAGES = {
    PACKAGE: {"models"},  # create_model & co, loaded on first use
    "plugin": set(),
    "ops": {"plugin"},
    "models": {"ops"},
    "engine": {"ops", "plugin"},
    "backends": {"ops", "plugin", "engine"},
    "info": {"plugin", "engine"},
    "export": {"models", "ops", "plugin", "engine", "backends"},
    "bundle": {"export", "models", "ops", "plugin", "engine", "backends"},  # only package.py exports
    "serving": {"bundle", "engine", "backends"},
    "bench": {"export", "models", "ops", "plugin", "engine", "backends"},
    "cli": {"*"},
}


def _stage(module: str) -> str:
    parts = module.split(".")
    return PACKAGE if len(parts) == 1 else ("bottom" if parts[1] in BOTTOM else parts[1])


def test_the_bottom_modules_import_nothing_from_above():
    for module, allowed in BOTTOM.items():
        name = f"{PACKAGE}.{module}"
        assert _imports(name, MODULES[name]) <= {f"{PACKAGE}.{a}" for a in allowed}, module


def test_each_stage_imports_only_the_stages_before_it():
    """The layers of README's Layout: every module of the package belongs to a known stage, and
    imports (anywhere in its source) only the bottom modules, its own stage and the stages listed."""
    unknown = sorted({_stage(m) for m in MODULES} - set(STAGES) - {"bottom"})
    assert not unknown, f"modules outside every stage: {unknown} (add the package to STAGES)"
    problems = []
    for name, path in MODULES.items():
        stage = _stage(name)
        if stage == "bottom":
            continue
        allowed = STAGES[stage] | {stage, "bottom"}
        for target in _imports(name, path) - {PACKAGE}:  # the root: __version__ (it imports nothing itself)
            if "*" not in allowed and _stage(target) not in allowed:
                problems.append(f"{name} imports {target} ({_stage(target)} is not before {stage})")
    assert not problems, "\n".join(problems)
    assert not [m for m in MODULES if _stage(m) != "cli" and any(_stage(t) == "cli" for t in _imports(m, MODULES[m]))]


@pytest.mark.slow
def test_every_module_imports_in_a_fresh_interpreter():
    """Each module first in its own process (forked after the third-party libraries are loaded, so it
    takes seconds): an import that only works after another module was imported fails here."""
    script = textwrap.dedent(f"""
        import importlib, json, os, sys, traceback
        import numpy, onnx, torch, typer, rich  # noqa: F401 - loaded once, before the fork
        assert not [m for m in sys.modules if m.startswith("{PACKAGE}")]
        failures = {{}}
        for name in json.loads(sys.argv[1]):
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read)
                try:
                    importlib.import_module(name)
                    code = 0
                except BaseException:
                    os.write(write, traceback.format_exc().encode()[-2000:])
                    code = 1
                os._exit(code)
            os.close(write)
            with os.fdopen(read, "rb") as f:
                message = f.read().decode()
            _, status = os.waitpid(pid, 0)
            if status != 0:
                failures[name] = message or f"exit status {{status}}"
        print(json.dumps(failures))
    """)
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(sorted(MODULES))], capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    failures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not failures, "\n\n".join(f"{name}:\n{tb}" for name, tb in failures.items())


def test_every_package_error_derives_from_the_root():
    import importlib

    errors = []
    for name in MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == name):
                errors.append(value)
    names = {e.__name__ for e in errors}
    assert {"CheckpointError", "ExportError", "EngineError", "TensorRTUnavailable", "PluginBuildError",
            "HostLibraryError", "BenchError", "UnrecognizedGraphError", "UserError", "CudaLibraryError",
            "InvalidArgumentError"} <= names, names
    assert [e.__name__ for e in errors if not issubclass(e, TransNeXtDeployError)] == []
    from transnext_deploy.models.config import InvalidArgumentError

    assert issubclass(InvalidArgumentError, ValueError)  # create_model's documented ValueError


# ------------------------------------------------------------------------------------------ CLI


@pytest.mark.parametrize("exception", [RuntimeError("boom"), ValueError("boom"), OSError(2, "boom")])
def test_a_bug_inside_a_command_keeps_its_traceback(monkeypatch, exception):
    import transnext_deploy.info as info
    from transnext_deploy.cli import app

    def broken():
        raise exception

    monkeypatch.setattr(info, "collect", broken)
    result = CliRunner().invoke(app, ["info"], env={"NO_COLOR": "1"})
    assert result.exit_code == 1 and result.exception is exception, (result.exception, result.output)
    assert "error:" not in result.output


def test_a_package_error_inside_a_command_is_one_line(monkeypatch):
    import transnext_deploy.info as info
    from transnext_deploy.cli import app

    def broken():
        raise TransNeXtDeployError("the machine has no\nfoo")

    monkeypatch.setattr(info, "collect", broken)
    result = CliRunner().invoke(app, ["info"], env={"NO_COLOR": "1"})
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stderr.strip() == "error: the machine has no foo"


def test_python_dash_m_runs_the_same_app():
    proc = subprocess.run([sys.executable, "-m", "transnext_deploy.cli", "--help"], capture_output=True, text=True,
                          timeout=120, env={"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    for command in ("info", "models", "download", "build-plugin", "export", "bench"):
        assert re.search(rf"\b{command}\b", proc.stdout), command


# ------------------------------------------------------------------------------------------ facts shared with CMake


def test_default_cuda_architectures_are_the_cmake_default():
    from transnext_deploy.plugin.build import DEFAULT_CUDA_ARCHS

    cmake = (REPO / "plugins" / "CMakeLists.txt").read_text()
    defaults = re.findall(r'set\(CMAKE_CUDA_ARCHITECTURES "([^"]+)"', cmake)
    assert defaults == [";".join(DEFAULT_CUDA_ARCHS)]
    assert f"The default architectures are {';'.join(DEFAULT_CUDA_ARCHS)}." in (REPO / "README.md").read_text()


def _c_defines(header: Path, prefix: str) -> dict[str, int]:
    """`#define <prefix><NAME> <int>` of a C header, as {NAME: int}."""
    return {m[1]: int(m[2]) for m in re.finditer(rf"^#define {prefix}(\w+)\s+(\d+)\b", header.read_text(), re.M)}


def test_host_and_cuda_code_tables_match_the_c_headers():
    """The Python tables of the C APIs' return codes, paths and dtype codes equal the headers'
    #defines, and the math header's Status enum has the same values (the C++ side ties them with
    static_asserts; this ties Python to the same numbers)."""
    from transnext_deploy.ops import host as plugin_host
    from transnext_deploy.ops import fused_op

    plugin_dir = REPO / "plugins" / "aggregated_attention"
    host_h = plugin_dir / "aggregatedAttentionHost.h"
    codes = {**_c_defines(host_h, "TRANSNEXT_AA_ERR_"), **{"OK": _c_defines(host_h, "TRANSNEXT_AA_")["OK"]}}
    assert codes == {name: code for code, name in plugin_host.HOST_STATUS.items()}
    assert plugin_host.STATUS_INTERNAL == codes["INTERNAL"]

    status_enum = {re.sub(r"(?<!^)(?=[A-Z])", "_", m[1]).upper(): int(m[2]) for m in re.finditer(
        r"kStatus(\w+)\s*=\s*(\d+)", (plugin_dir / "aggregatedAttentionMath.h").read_text())}
    assert status_enum == codes

    assert {k.upper(): v for k, v in plugin_host.PATHS.items()} == _c_defines(host_h, "TRANSNEXT_AA_PATH_")
    cuda_dtypes = _c_defines(plugin_dir / "aggregatedAttentionCuda.h", "TRANSNEXT_AA_DTYPE_")
    assert {str(dt).removeprefix("torch.").upper(): code for dt, code in fused_op._DTYPE_CODES.items()} == cuda_dtypes


def test_moved_modules_keep_their_old_import_paths():
    """The import paths the README documented before the layout by pipeline stage still work, as the
    same module objects (a patch through one is seen through the other)."""
    import importlib

    assert transnext_deploy.MOVED_MODULES
    for old, new in transnext_deploy.MOVED_MODULES.items():
        moved = importlib.import_module(f"{PACKAGE}.{old}")
        assert moved is importlib.import_module(f"{PACKAGE}.{new}"), old
        assert getattr(transnext_deploy, old) is moved
        assert not (PACKAGE_DIR / f"{old}.py").exists(), f"{old}.py is back at the top: drop its alias"
    from transnext_deploy.rewrite import fused_model  # noqa: F401 - README, "Export"
    from transnext_deploy.plugin_build import ensure_host_library  # noqa: F401 - README, "Install"


# ------------------------------------------------------------------------------------------ tests mirror the code

# Where each module's behaviour is tested: its own test module (tests/test_<package>_<module>.py,
# test_<module>.py at the top), or, named here, the module that tests it through its callers. A new
# module fails this test until it is given a place.
TESTED_IN = {
    "transnext_deploy": "test_structure.py",  # the lazy model API and MOVED_MODULES
    "transnext_deploy.artifacts": "test_engine_tensorrt.py",  # names; graph and engine file names
    "transnext_deploy.backends": "test_bench_run.py",
    "transnext_deploy.backends.base": "test_bench_run.py",
    "transnext_deploy.backends.onnxrt": "test_bundle_runtime.py",
    "transnext_deploy.backends.pytorch": "test_bench_run.py",
    "transnext_deploy.backends.registry": "test_bench_run.py",
    "transnext_deploy.backends.trt": "test_engine_build.py",  # and test_engine_gpu.py on a GPU
    "transnext_deploy.bench.measure": "test_bench_run.py",
    "transnext_deploy.bench.plot": "test_bench_run.py",
    "transnext_deploy.bench.report": "test_bench_run.py",
    "transnext_deploy.bench.work": "test_bench_run.py",
    "transnext_deploy.cache": "test_cli.py",  # the `cache` command over it
    "transnext_deploy.cli.about": "test_cli.py",
    "transnext_deploy.cli.app": "test_cli_output.py",
    "transnext_deploy.cli.bench": "test_bench_run.py",
    "transnext_deploy.cli.engine": "test_engine_build.py",
    "transnext_deploy.cli.export": "test_export.py",
    "transnext_deploy.cli.options": "test_cli.py",
    "transnext_deploy.cli.package": "test_bundle_package.py",
    "transnext_deploy.cli.plugin": "test_plugin_build.py",
    "transnext_deploy.cli.predict": "test_bundle_package.py",
    "transnext_deploy.cli.serve": "test_serving_server.py",
    "transnext_deploy.cli.weights": "test_models_checkpoint.py",
    "transnext_deploy.engine": "test_engine_build.py",
    "transnext_deploy.errors": "test_cli_output.py",
    "transnext_deploy.export.manifest": "test_export.py",
    "transnext_deploy.export.options": "test_export.py",
    "transnext_deploy.export.trace": "test_export.py",
    "transnext_deploy.export.validate": "test_export.py",
    "transnext_deploy.files": "test_bundle_format.py",
    "transnext_deploy.info": "test_cli.py",
    "transnext_deploy.machine": "test_engine_tensorrt.py",
    "transnext_deploy.memory": "test_bench_run.py",
    "transnext_deploy.models": "test_models_transnext.py",
    "transnext_deploy.models.config": "test_models_transnext.py",
    "transnext_deploy.models.geometry": "test_models_transnext.py",
    "transnext_deploy.models.position_bias": "test_models_transnext.py",
    "transnext_deploy.ops": "test_ops_fused_op.py",
    "transnext_deploy.ops.aggregated_attention": "test_ops_fused_op.py",
    "transnext_deploy.ops.contract": "test_ops_host.py",  # the C headers against the Python contract
    "transnext_deploy.plugin": "test_plugin_build.py",
    "transnext_deploy.plugin.locations": "test_plugin_build.py",
    "transnext_deploy.plugin.toolchain": "test_plugin_build.py",
    "transnext_deploy.progress": "test_cli_output.py",
    "transnext_deploy.resolution": "test_cli.py",
    "transnext_deploy.serving": "test_serving_server.py",
    "transnext_deploy.serving.config": "test_serving_server.py",
    "transnext_deploy.serving.repository": "test_serving_server.py",
    "transnext_deploy.serving.triton_model": "test_bundle_runtime.py",
    "transnext_deploy.bench": "test_bench_run.py",
    "transnext_deploy.bundle": "test_bundle_format.py",
}


def _own_test_module(module: str) -> str:
    """transnext_deploy.export.rewrite -> test_export_rewrite.py; transnext_deploy.compare -> test_compare.py."""
    return "test_" + "_".join(module.split(".")[1:]) + ".py"


def test_every_module_has_a_test_module():
    tests = Path(__file__).resolve().parent
    placeless = []
    for module in MODULES:
        own = tests / _own_test_module(module)
        if module in TESTED_IN:
            assert (tests / TESTED_IN[module]).is_file(), (module, TESTED_IN[module])
            assert not own.is_file(), f"{module} has {own.name}: drop it from TESTED_IN"
        elif not own.is_file():
            placeless.append(f"{module} (no {own.name})")
    assert not placeless, "modules without tests: " + ", ".join(placeless)
    assert not set(TESTED_IN) - set(MODULES), set(TESTED_IN) - set(MODULES)


# ------------------------------------------------------------------------------------------ sized to be read

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
# Modules allowed past MAX_MODULE_LINES, each with its reason.
LONG_MODULES = {
    # the paper's modules, one file per model family as in timm: splitting it would scatter what a
    # reader compares with the published code side by side
    "transnext_deploy.models.transnext": 560,
}


def test_no_module_is_past_the_size_limit_without_a_reason():
    long = {}
    for module, path in MODULES.items():
        lines = len(path.read_text().splitlines())
        if lines > LONG_MODULES.get(module, MAX_MODULE_LINES):
            long[module] = lines
    assert not long, f"modules past {MAX_MODULE_LINES} lines (split them by concern): {long}"
    assert set(LONG_MODULES) <= set(MODULES), set(LONG_MODULES) - set(MODULES)


def _reason_above(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A comment on the line right above the function (or its first decorator)."""
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return first >= 2 and lines[first - 2].strip().startswith("#")


def test_a_function_past_the_size_limit_says_why_next_to_it():
    long = []
    for module, path in MODULES.items():
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and not _reason_above(lines, node):
                    long.append(f"{module}.{node.name} ({length} lines)")
    assert not long, (f"functions past {MAX_FUNCTION_LINES} lines with no comment above them saying why "
                      f"(split them by concern, or write the reason): {', '.join(long)}")
