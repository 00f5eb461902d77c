"""The `transnext-deploy` command line: exit codes, JSON output, one-line errors, help texts."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.main import get_command
from typer.testing import CliRunner

from helpers import PROGRESS_LINE, error_line
from transnext_deploy import __version__, create_model
from transnext_deploy import plugin as plugin_build
from transnext_deploy.plugin import locations, toolchain
from transnext_deploy.files import sha256sum
from transnext_deploy.models.checkpoint import official_weights
from transnext_deploy.cli import app

# Wide, colourless help so every option name is printed whole.
ENV = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Published sizes (shared architecture spec), in millions of parameters.
SPEC_PARAMS_M = {"micro": 12.8, "tiny": 28.2, "small": 49.7, "base": 89.7, "micro_AAAA": 13.1}


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env={**ENV, **(env or {})})


def assert_one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    line = error_line(result.stderr)
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in line, line
    return line


def _have_cmake_and_cxx() -> bool:
    try:
        plugin_build.find_cmake()
        plugin_build.find_cxx_compiler()
    except plugin_build.PluginBuildError:
        return False
    return True


needs_cmake = pytest.mark.skipif(not _have_cmake_and_cxx(), reason="needs cmake and a C++ compiler")


# ------------------------------------------------------------------------------------- info, models


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == __version__


def test_info_json_reports_every_component():
    result = invoke("info", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in ("torch", "onnx", "onnxruntime", "tensorrt", "cuda-gpu", "torch-onednn", "nvcc", "cmake",
                "plugin-host-library", "cuda-kernel-library", "tensorrt-plugin-library"):
        assert key in report, key
        assert set(report[key]) == {"name", "available", "detail"}
    assert report["torch"]["available"] and report["torch"]["detail"] == torch.__version__
    assert report["onnx"]["available"] and report["onnxruntime"]["available"]
    assert report["torch-onednn"]["available"] == torch.backends.mkldnn.is_available()
    trt = report["tensorrt"]
    if importlib.util.find_spec("tensorrt") is None:
        assert trt["available"] is False
        assert trt["detail"].startswith("not available: ") and len(trt["detail"]) > len("not available: ")
    else:
        assert trt["available"] is True


def test_info_table_exits_zero():
    result = invoke("info")
    assert result.exit_code == 0 and "tensorrt" in result.stdout


def test_models_json_lists_the_five_variants():
    result = invoke("models", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) == set(SPEC_PARAMS_M)
    for name, millions in SPEC_PARAMS_M.items():
        assert abs(rows[name]["params_millions"] - millions) <= 0.1, (name, rows[name]["params_millions"])
    assert rows["micro_AAAA"]["train_size"] == 256 and rows["tiny"]["train_size"] == 224
    assert rows["small"]["official_weights"] == ["transnext_small_224_1k.pth", "transnext_small_384_1k_ft_1k.pth"]


# ------------------------------------------------------------------------------------- download


def test_unknown_size_is_one_line_without_traceback():
    # A real process through the console script: exit status and both streams as a user sees them.
    script = shutil.which("transnext-deploy", path=str(Path(sys.executable).parent))
    cmd = [script] if script else [sys.executable, "-c", "from transnext_deploy.cli import app; app()"]
    proc = subprocess.run([*cmd, "download", "--size", "nope"],
                          capture_output=True, text=True, env={**os.environ, **ENV}, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc
    assert proc.stdout == ""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: unknown size 'nope'; choose one of micro, tiny, small, base, micro_AAAA")
    assert "Traceback" not in proc.stderr


def test_download_errors_are_one_line():
    assert_one_line_error(invoke("download", "--size", "tiny", "--resolution", "384"), "224 only, not 384")


def test_download_from_local_hub_json(hub, tmp_path):
    root, url = hub
    weights = official_weights("micro")
    (root / weights.repo).mkdir(parents=True)
    torch.save({"model": create_model("micro").state_dict()}, root / weights.repo / weights.filename)
    out = tmp_path / "weights"
    result = invoke("download", "--size", "micro", "--output", str(out), "--json",
                    env={"TRANSNEXT_DEPLOY_HUB_URL": url})
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    path = Path(summary["path"])
    assert path == out / "transnext_micro_224_1k.pth" and path.is_file()
    assert summary["variant"] == "micro" and summary["resolution"] == 224 and summary["pretrain_size"] == 224
    assert summary["sha256"] == sha256sum(root / weights.repo / weights.filename) == sha256sum(path)


def test_download_from_unreachable_hub_is_one_line(hub, tmp_path):
    _, url = hub  # serves nothing: 404
    result = invoke("download", "--size", "tiny", "--output", str(tmp_path / "w"),
                    env={"TRANSNEXT_DEPLOY_HUB_URL": url})
    assert_one_line_error(result, "could not download", "transnext_tiny_224_1k.pth")
    assert not any((tmp_path / "w").iterdir())


# ------------------------------------------------------------------------------------- build-plugin


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("plugins")


@pytest.mark.slow
@needs_cmake
def test_build_plugin_host_json(plugin_dir):
    result = invoke("build-plugin", "--target", "host", "--build-dir", str(plugin_dir), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    library = Path(summary["libraries"]["host"])
    assert library == plugin_dir.resolve() / "libtransnext_aa_host.so" and library.stat().st_size > 0
    assert summary["targets"] == ["host"] and summary["skipped"] == {}
    # off a terminal: one plain progress line, no spinner residue
    (line,) = result.stderr.splitlines()
    assert PROGRESS_LINE.match(line) and f"building host with CMake in {plugin_dir.resolve()}" in line
    assert summary["build_dir"] == str(plugin_dir.resolve())
    assert plugin_build.find_host_library(plugin_dir) == library


@needs_cmake
def test_build_plugin_default_skips_what_is_missing(plugin_dir, monkeypatch):
    def no_nvcc():
        raise plugin_build.PluginBuildError("nvcc not found (test)")

    monkeypatch.setattr(toolchain, "find_nvcc", no_nvcc)
    result = invoke("build-plugin", "--build-dir", str(plugin_dir), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["targets"] == ["host"] and list(summary["libraries"]) == ["host"]
    assert set(summary["skipped"]) == {"cuda", "plugin"}
    assert "nvcc not found" in summary["skipped"]["cuda"] and "nvcc not found" in summary["skipped"]["plugin"]
    assert "skipping cuda: nvcc not found" in result.stderr and "skipping plugin:" in result.stderr
    # An option that only makes sense for a skipped target turns the skip into an error.
    assert_one_line_error(invoke("build-plugin", "--build-dir", str(plugin_dir), "--cuda-arch", "87"),
                          "cannot build cuda (asked for by --cuda-arch)", "nvcc not found")


@needs_cmake
def test_build_plugin_without_tensorrt_headers_names_what_is_missing(plugin_dir, monkeypatch):
    monkeypatch.delenv("TENSORRT_ROOT", raising=False)
    monkeypatch.delenv("TENSORRT_INCLUDE_DIR", raising=False)
    if plugin_build.find_tensorrt().include_dir is not None:
        pytest.skip("TensorRT headers are installed on this machine")
    result = invoke("build-plugin", "--target", "plugin", "--build-dir", str(plugin_dir))
    line = assert_one_line_error(result, "cannot build plugin", "TensorRT headers (NvInfer.h) not found",
                                 "--tensorrt-root")
    try:
        plugin_build.find_nvcc()
    except plugin_build.PluginBuildError:
        assert "nvcc not found" in line  # every missing piece in the same line
    assert not (plugin_dir / "libtransnext_aa_plugin.so").exists()


def test_build_plugin_bad_arguments_are_one_line(tmp_path):
    assert_one_line_error(invoke("build-plugin", "--target", "kernel"), "unknown --target kernel")
    assert_one_line_error(invoke("build-plugin", "--target", "host", "--cuda-arch", "sm_8x"),
                          "invalid CUDA architecture 'sm_8x'")
    assert_one_line_error(invoke("build-plugin", "--target", "host", "--jobs", "0"), "--jobs must be at least 1")
    assert_one_line_error(invoke("build-plugin", "--tensorrt-root", str(tmp_path / "absent")), "is not a directory")


# ------------------------------------------------------------------------------------- help


COMMANDS = sorted(get_command(app).commands)


def test_root_help_lists_every_command():
    result = invoke("--help")
    assert result.exit_code == 0
    text = ANSI.sub("", result.stdout)
    assert {"info", "models", "download", "build-plugin"} <= set(COMMANDS)
    for name in COMMANDS:
        assert name in text, name
    assert "--version" in text and "<bool>" not in text


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_help_mentions_every_option(name):
    result = invoke(name, "--help")
    assert result.exit_code == 0, result.output
    text = ANSI.sub("", result.stdout)
    command = get_command(app).commands[name]
    for param in command.params:
        for opt in (*param.opts, *param.secondary_opts):
            if opt.startswith("--") or param.param_type_name == "option":
                assert opt in text, f"{name} --help does not mention {opt}"
    assert "--help" in text
    assert "<bool>" not in text  # flags are shown as flags


# ------------------------------------------------------------------------------------- info, models at 80 columns


def test_models_at_80_columns_keeps_every_name_whole():
    from transnext_deploy.models.checkpoint import OFFICIAL_WEIGHTS

    result = invoke("models", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = ANSI.sub("", result.stdout)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    words = set(re.findall(r"[\w.]+", text))
    assert set(SPEC_PARAMS_M) <= words  # the names a user types
    assert {w.filename for w in OFFICIAL_WEIGHTS.values()} <= words  # every weights file, whole
    wide = ANSI.sub("", invoke("models", env={"COLUMNS": "200"}).stdout)
    assert "┃ name" in wide and "transnext_small_384_1k_ft_1k.pth" in wide  # a table where it fits


def test_info_rows_for_validation_nvcc_and_the_plugin():
    report = json.loads(invoke("info", "--json").stdout)
    ext = report["onnxruntime-extensions"]
    assert ext["available"] is (importlib.util.find_spec("onnxruntime_extensions") is not None)
    nvcc = report["nvcc"]
    if nvcc["available"]:
        assert re.match(r"CUDA \d+\.\d+ \(V[\d.]+, /\S+nvcc\)$", nvcc["detail"]), nvcc["detail"]
    plugin = report["tensorrt-plugin-library"]
    if not plugin["available"]:
        assert "TensorRT headers" in plugin["detail"] and "--target plugin --tensorrt-root DIR" in plugin["detail"]


def test_info_in_an_installed_package_without_sources_recommends_what_works(monkeypatch):
    def no_sources():
        raise plugin_build.PluginBuildError("plugin sources not found (test)")

    monkeypatch.setattr(locations, "plugin_source_dir", no_sources)
    for finder in ("find_host_library", "find_cuda_library", "find_plugin_library"):
        monkeypatch.setattr(locations, finder, lambda *a, **k: None)
    report = json.loads(invoke("info", "--json").stdout)
    for name in ("plugin-host-library", "cuda-kernel-library", "tensorrt-plugin-library"):
        detail = report[name]["detail"]
        assert "build-plugin" not in detail and "reinstall transnext-deploy from its wheel or sdist" in detail, detail
    assert "set $TRANSNEXT_AA_PLUGIN to a library built elsewhere" in report["tensorrt-plugin-library"]["detail"]
    table = ANSI.sub("", invoke("info", env={"COLUMNS": "250"}).stdout)
    assert "onnxruntime-extensions" in table and "$TRANSNEXT_AA_PLUGIN" in table


# ------------------------------------------------------------------------------------- cache


def test_cache_reports_and_clears_its_parts(tmp_path):
    root = tmp_path / "cache"
    (root / "bench" / "art").mkdir(parents=True)
    (root / "bench" / "art" / "model.onnx").write_bytes(b"x" * 3000)
    (root / "tensorrt").mkdir()
    (root / "tensorrt" / "timing.cache").write_bytes(b"x" * 200)
    (root / "transnext_micro_224_1k.pth").write_bytes(b"x" * 1000)
    (root / "notes.txt").write_text("the user's own file")  # not the package's: never counted, never removed
    env = {"TRANSNEXT_DEPLOY_CACHE": str(root)}
    report = json.loads(invoke("cache", "--json", env=env).stdout)
    assert report["directory"] == str(root.resolve())
    parts = report["parts"]
    assert (parts["bench"]["bytes"], parts["bench"]["files"]) == (3000, 1)
    assert parts["bench"]["path"] == str(root.resolve() / "bench")
    assert parts["tensorrt"]["bytes"] == 200 and parts["weights"]["bytes"] == 1000 and parts["plugins"]["bytes"] == 0
    table = invoke("cache", env=env)
    assert table.exit_code == 0 and "3.0 KB" in table.stdout and str(root.resolve() / "bench") in table.stdout

    cleared = invoke("cache", "--clear", "bench", "--json", env=env)
    assert cleared.exit_code == 0, cleared.output
    data = json.loads(cleared.stdout)
    assert data["cleared"] == {"bench": 3000} and data["parts"]["bench"]["bytes"] == 0
    assert "cleared bench: 3.0 KB freed" in cleared.stderr
    assert not (root / "bench").exists() and (root / "tensorrt" / "timing.cache").is_file()
    assert invoke("cache", "--clear", "all", env=env).exit_code == 0
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt"]
    assert_one_line_error(invoke("cache", "--clear", "everything", env=env), "cache parts are weights, bench")
