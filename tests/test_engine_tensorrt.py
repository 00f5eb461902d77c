"""engine/tensorrt.py: which TensorRT, what each runtime needs, which plugin library each loads and
when a library may not be loaded, the libtensorrt_rtx.so alias, the names of engine files. No engine
is built here (tests/test_engine_build.py builds real ones with TensorRT-RTX)."""

from __future__ import annotations

import json
import os

import pytest

from transnext_deploy.artifacts import PLUGIN_DYNAMIC_LIBRARY, PLUGIN_ENV, PLUGIN_LIBRARY, engine_file_name
from transnext_deploy.engine import tensorrt
from transnext_deploy.engine.tensorrt import (
    RUNTIMES,
    TensorRTUnavailable,
    check_compute_capabilities,
    get_runtime,
    plugin_candidates,
    plugin_problem,
    status,
)
from transnext_deploy.errors import InvalidArgumentError
from transnext_deploy.plugin.locations import write_build_info

from helpers import needs_rtx


def test_the_two_runtimes_and_their_plugin_libraries():
    assert set(RUNTIMES) == {"tensorrt", "tensorrt-rtx"}
    assert get_runtime("tensorrt").plugin_kind == "plugin" and not get_runtime("tensorrt").ahead_of_time
    assert get_runtime("tensorrt-rtx").plugin_kind == "plugin_dynamic" and get_runtime("tensorrt-rtx").ahead_of_time
    with pytest.raises(InvalidArgumentError, match="runtime must be one of tensorrt, tensorrt-rtx, got 'trt'"):
        get_runtime("trt")


@pytest.mark.parametrize("graph, tag, engine", [
    ("model.aa_plugin.onnx", "", "model.aa_plugin.fp32.engine"),
    ("model.aa_plugin.fp16.onnx", "", "model.aa_plugin.fp16.engine"),
    ("model.aa_plugin.fp16.onnx", "rtx", "model.aa_plugin.fp16.rtx.engine"),
    ("model.fp16.onnx", "rtx", "model.fp16.rtx.engine"),
    ("model.aa_function.onnx", "", "model.aa_function.fp32.engine"),
])
def test_engine_file_names_say_graph_precision_and_runtime(graph, tag, engine):
    assert engine_file_name(graph, tag) == engine


def test_a_missing_runtime_is_named_with_its_install_command(monkeypatch):
    monkeypatch.setattr(tensorrt.importlib.util, "find_spec", lambda name: None)
    found = status("tensorrt-rtx", need_plugin=False, need_gpu=False)
    assert not found.available and "pip install 'transnext-deploy[tensorrt-rtx]'" in found.reason
    assert "JetPack" in status("tensorrt", need_plugin=False).reason


@needs_rtx
def test_tensorrt_rtx_builds_without_a_gpu_and_says_what_it_lacks_to_run():
    """Building ahead of time needs no GPU; running does (status with need_gpu, and gpu_problem)."""
    from transnext_deploy.machine import cuda_devices

    devices, no_gpu = cuda_devices()
    assert status("tensorrt-rtx", need_plugin=False, need_gpu=False).available
    if devices:
        pytest.skip("a GPU is here")
    assert no_gpu in status("tensorrt-rtx", need_plugin=False).reason
    assert tensorrt.gpu_problem("tensorrt-rtx") == no_gpu


@needs_rtx
def test_compute_capabilities_are_the_runtime_s_own():
    assert tensorrt.compute_capabilities("tensorrt-rtx") == tensorrt.RTX_COMPUTE_CAPABILITIES
    assert check_compute_capabilities("tensorrt-rtx", ["86", "sm_89", "12.0", 86]) == ("86", "89", "120")
    with pytest.raises(InvalidArgumentError, match="builds for compute capabilities 75, 80, 86, 89, 120, 121, not 90"):
        check_compute_capabilities("tensorrt-rtx", ["90"])
    with pytest.raises(InvalidArgumentError, match="tensorrt builds for the GPU it runs on"):
        check_compute_capabilities("tensorrt", ["86"])


def test_each_runtime_finds_its_own_plugin_library(tmp_path, monkeypatch):
    static, dynamic = tmp_path / PLUGIN_LIBRARY, tmp_path / PLUGIN_DYNAMIC_LIBRARY
    static.write_bytes(b"")
    dynamic.write_bytes(b"")
    monkeypatch.delenv(PLUGIN_ENV, raising=False)
    assert plugin_candidates("tensorrt", static) == (static.resolve(), "given")
    assert plugin_candidates("tensorrt-rtx", static) == (dynamic.resolve(), "given")  # the sibling of its kind
    monkeypatch.setenv(PLUGIN_ENV, str(dynamic))
    assert plugin_candidates("tensorrt")[0] == static.resolve()
    dynamic.unlink()
    path, where = plugin_candidates("tensorrt-rtx")
    assert path is None and f"{dynamic} (${PLUGIN_ENV}) does not exist" == where


@pytest.mark.parametrize("headers, static, runtime, version, refused", [
    ("10.13.3", True, "tensorrt-rtx", "1.7.1.116", True),  # 10.x registry layout in 11.x's: a crash
    ("10.13.3", True, "tensorrt", "11.1.0", True),
    ("10.3.0", True, "tensorrt", "10.13.3", False),
    ("11.1.0", True, "tensorrt-rtx", "1.7.1.116", False),
    ("10.3.0", False, "tensorrt-rtx", "1.7.1.116", False),  # loadLibrary: any headers
])
def test_which_plugin_library_a_runtime_may_load(tmp_path, headers, static, runtime, version, refused):
    library = tmp_path / (PLUGIN_LIBRARY if static else PLUGIN_DYNAMIC_LIBRARY)
    library.write_bytes(b"")
    write_build_info(library, {"tensorrt_headers": headers, "static_registration": static})
    problem = plugin_problem(runtime, version, library)
    assert (problem is not None) == refused, problem
    if refused:
        assert f"built against TensorRT {headers} headers" in problem and "11.x headers" in problem
    assert plugin_problem(runtime, version, tmp_path / "built-elsewhere.so") is None  # no record: trusted


@needs_rtx
def test_the_core_alias_names_the_loaded_file_or_says_what_to_run(tmp_path, monkeypatch):
    """The alias is a symlink to the wheel's own libtensorrt_rtx.so.1 (a copy would be a second
    TensorRT); where the directory cannot be written, one line says the command."""
    rt = get_runtime("tensorrt-rtx")
    fake = tmp_path / "libs"
    fake.mkdir()
    (fake / "libtensorrt_rtx.so.1").write_bytes(b"the library")
    monkeypatch.setattr(tensorrt, "_core_library", lambda runtime: fake / "libtensorrt_rtx.so.1")
    alias = tensorrt.ensure_core_alias(rt)
    assert alias == fake / "libtensorrt_rtx.so" and os.readlink(alias) == "libtensorrt_rtx.so.1"
    assert tensorrt.ensure_core_alias(rt) == alias  # idempotent
    alias.unlink()
    alias.write_bytes(b"a copy")
    with pytest.raises(TensorRTUnavailable, match="a second copy"):
        tensorrt.ensure_core_alias(rt)
    alias.unlink()

    def read_only(self, target):  # a site-packages this user cannot write (root could write a 0o555 one)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(alias), "symlink_to", read_only)
    with pytest.raises(TensorRTUnavailable) as info:
        tensorrt.ensure_core_alias(rt)
    message = str(info.value)
    assert "\n" not in message and "(Permission denied)" in message
    assert f"run `ln -s libtensorrt_rtx.so.1 {alias}`" in message


def test_build_info_records_the_headers(tmp_path):
    from transnext_deploy.plugin.locations import build_info_path, read_build_info

    library = tmp_path / PLUGIN_LIBRARY
    write_build_info(library, {"tensorrt_headers": "11.1.0", "static_registration": True})
    assert json.loads(build_info_path(library).read_text())["tensorrt_headers"] == "11.1.0"
    assert read_build_info(library)["static_registration"] is True
    assert read_build_info(tmp_path / "other.so") == {}
