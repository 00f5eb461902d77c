"""engine/build.py and `build-engine`: engines from exported graphs, with the runtime a parameter.

The first half runs everywhere: the option checks, the builder config, the one-line refusals of the
CLI. The second half builds real engines with TensorRT-RTX, which builds ahead of time on a machine
without a GPU (skipped with the reason where `tensorrt_rtx`, nvcc or the TensorRT headers are
missing; CI has all three): micro exported at 224x224 (random weights), the plugin built against
the newest TensorRT headers for sm_86, and engines for SM86 from the three graphs in fp32 and fp16
-- the standard graph and the function form without the plugin (TensorRT inlines the function),
the custom-op graph with it (19 plugin layers, one per aggregated-attention block). Running the
engines needs a GPU of those compute capabilities: tests/test_engine_gpu.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from transnext_deploy.artifacts import GRAPHS, PRECISIONS, graph_file
from transnext_deploy.backends.trt import TensorRTBackend
from transnext_deploy.engine import (
    EngineError,
    TensorRTUnavailable,
    build_engine,
    build_engines_for_artifact,
    read_engine_metadata,
    tensorrt_status,
)
from transnext_deploy.engine.tensorrt import plugin_candidates
from transnext_deploy.files import sha256sum
from transnext_deploy.machine import cuda_devices

from helpers import error_line, needs_rtx, rtx_plugin_build_problem, tensorrt_header_dirs

# ------------------------------------------------------------------------------------------ everywhere


def _expected_missing() -> list[str]:
    fragments = []
    if importlib.util.find_spec("tensorrt") is None:
        fragments.append("Python package `tensorrt` not installed")
    if cuda_devices()[1] is not None:
        fragments.append(cuda_devices()[1])
    if plugin_candidates("tensorrt")[0] is None:
        fragments.append("plugin library not built")
    return fragments


def _identity_artifact(directory, precisions=PRECISIONS):
    """An artifact directory whose custom-op graphs are one Identity node (no custom node)."""
    directory.mkdir(parents=True, exist_ok=True)
    for precision in precisions:
        dtype = onnx.TensorProto.FLOAT16 if precision == "fp16" else onnx.TensorProto.FLOAT
        node = onnx.helper.make_node("Identity", ["images"], ["logits"])
        graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("images", dtype, [None, 3, 8, 8])],
                                       [onnx.helper.make_tensor_value_info("logits", dtype, [None, 3, 8, 8])])
        onnx.save(onnx.helper.make_model(graph), str(directory / graph_file("plugin", precision)))
    return directory


def test_status_names_every_missing_piece():
    available, reason = tensorrt_status()  # a plain (bool, str) pair too
    missing = _expected_missing()
    if not missing:
        pytest.skip(f"everything is here: {reason}")
    assert available is False and "\n" not in reason
    for fragment in missing:
        assert fragment in reason, (fragment, reason)


def test_status_with_an_explicit_plugin_path_that_does_not_exist(tmp_path):
    missing = tmp_path / "libnothing.so"
    found = tensorrt_status(missing)
    assert not found.available and str(missing) in found.reason


def test_builder_refuses_with_the_reason(tmp_path):
    missing = [f for f in _expected_missing() if "plugin library" not in f]  # no custom node: no plugin needed
    if not missing:
        pytest.skip("TensorRT and a GPU are present here")
    artifact = _identity_artifact(tmp_path / "a")
    with pytest.raises(TensorRTUnavailable) as info:
        build_engines_for_artifact(artifact)
    text = str(info.value)
    assert text.startswith("TensorRT engines cannot be built here: ") and "\n" not in text
    for fragment in missing:
        assert fragment in text
    with pytest.raises(EngineError, match="is not an export artifact directory with model.aa_plugin.onnx"):
        build_engines_for_artifact(tmp_path / "nowhere")
    with pytest.raises(EngineError, match="with model.fp16.onnx"):
        build_engines_for_artifact(artifact, ("fp16",), graph="standard")
    with pytest.raises(EngineError, match="precisions must be among fp32, fp16, got int8"):
        build_engines_for_artifact(artifact, precisions=("int8",))
    with pytest.raises(EngineError, match="graph must be one of standard, plugin, function, got 'fused'"):
        build_engines_for_artifact(artifact, graph="fused")


def test_builder_refuses_an_unknown_hardware_compatibility_first(tmp_path):
    (tmp_path / "model.aa_plugin.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match="hardware compatibility must be one of none, ampere_plus"):
        build_engine(tmp_path / "model.aa_plugin.onnx", hardware_compatibility="everything")


def test_runner_refuses_a_missing_engine(tmp_path):
    with pytest.raises(EngineError, match="engine not found"):
        TensorRTBackend(tmp_path / "model.aa_plugin.fp16.engine")


def test_tensorrt_rtx_runtime_caches_live_in_the_user_cache_tensorrt_part(tmp_path, monkeypatch):
    """The kernels TensorRT-RTX compiles on a GPU at first load are kept per engine (its sha256) where
    `cache --clear tensorrt` removes them."""
    from transnext_deploy.backends.trt import runtime_cache_path
    from transnext_deploy.cache import CACHE_PARTS, cache_dir, clear_cache

    monkeypatch.setenv("TRANSNEXT_DEPLOY_CACHE", str(tmp_path / "cache"))
    path = runtime_cache_path("ab" * 32)
    assert path.parent == cache_dir() / CACHE_PARTS["tensorrt"][1] and "abababab" in path.name
    assert path != runtime_cache_path("cd" * 32)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"kernels")
    clear_cache(["tensorrt"])
    assert not path.exists()


@needs_rtx
def test_the_builder_config_carries_targets_profile_and_portability(tmp_path):
    """The config build_engine hands the real TensorRT-RTX builder: TF32 off, no precision flag (the
    graph decides), the batch profile, the compute capabilities, version compatibility with the
    plugin library it carries. (Hardware compatibility levels: TensorRT-RTX ignores them, so they
    are refused before the config; see the CLI test.)"""
    import tensorrt_rtx as trt

    from transnext_deploy.engine.build import _config
    from transnext_deploy.engine.tensorrt import get_runtime, logger

    rt = get_runtime("tensorrt-rtx")
    builder = trt.Builder(logger(rt))
    dynamic = tmp_path / "libtransnext_aa_plugin_dynamic.so"
    config = _config(trt, rt, builder, "images", (2, 4, 16), (224, 224), 1024, ("86", "120"), True, "none", dynamic)
    assert not config.get_flag(trt.BuilderFlag.TF32)
    assert config.get_flag(trt.BuilderFlag.VERSION_COMPATIBLE) and config.plugins_to_serialize == [str(dynamic)]
    assert config.num_compute_capabilities == 2
    assert [config.get_compute_capability(i) for i in range(2)] == [trt.ComputeCapability.SM86,
                                                                      trt.ComputeCapability.SM120]
    assert config.get_memory_pool_limit(trt.MemoryPoolType.WORKSPACE) == 1024 << 20
    assert config.num_optimization_profiles == 1
    plain = _config(trt, rt, builder, "images", (1, 8, 32), (64, 64), 1024, (), False, "none", None)
    assert not plain.get_flag(trt.BuilderFlag.VERSION_COMPATIBLE) and plain.plugins_to_serialize == []
    assert plain.num_compute_capabilities == 0


def test_a_runtime_without_a_portability_option_is_refused_in_one_line():
    """A TensorRT without VERSION_COMPATIBLE or a hardware level (a stand-in: both real runtimes here
    have them) is refused by name, before anything is built."""
    from transnext_deploy.engine.build import _config
    from transnext_deploy.engine.tensorrt import get_runtime

    class Config:
        def set_memory_pool_limit(self, *args):
            pass

        def add_optimization_profile(self, profile):
            pass

    class Builder:
        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return type("Profile", (), {"set_shape": lambda self, *args: None})()

    trt = type("trt", (), {"__version__": "10.0.1", "BuilderFlag": type("F", (), {}),
                           "MemoryPoolType": type("M", (), {"WORKSPACE": 0})})
    rt = get_runtime("tensorrt")
    with pytest.raises(EngineError, match="tensorrt 10.0.1 cannot build version-compatible engines"):
        _config(trt, rt, Builder(), "images", (1, 1, 1), (8, 8), 16, (), True, "none", None)
    with pytest.raises(EngineError, match="tensorrt 10.0.1 does not offer hardware compatibility 'ampere_plus'"):
        _config(trt, rt, Builder(), "images", (1, 1, 1), (8, 8), 16, (), False, "ampere_plus", None)


def _cli(*args):
    from typer.testing import CliRunner

    from transnext_deploy.cli import app

    return CliRunner().invoke(app, ["build-engine", *args], env={"COLUMNS": "80", "NO_COLOR": "1"})


def test_build_engine_without_tensorrt_is_one_line(tmp_path):
    missing = [f for f in _expected_missing() if "plugin library" not in f]
    if not missing:
        pytest.skip("TensorRT and a GPU are present here")
    result = _cli(str(_identity_artifact(tmp_path / "a")))
    assert result.exit_code == 1 and result.stdout == ""
    line = error_line(result.stderr)
    assert line.startswith("error: TensorRT engines cannot be built here: ")
    for fragment in missing:
        assert fragment in line
    if importlib.util.find_spec("tensorrt") is None:
        assert "pip install 'transnext-deploy[tensorrt]'" in line  # rich markup must not eat the extra
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["model.aa_plugin.fp16.onnx", "model.aa_plugin.onnx"]


@pytest.mark.parametrize("args,fragment", [
    (["--precision", "int8"], "precisions must be among fp32, fp16, got int8"),
    (["--batch", "8", "1", "32"], "1 <= min <= opt <= max, got 8/1/32"),
    (["--batch", "0", "1", "1"], "got 0/1/1"),
    (["--hardware-compatibility", "everything"], "hardware compatibility must be one of none, ampere_plus"),
    (["--version-compatible", "--plugin", "/nowhere/libtransnext_aa_plugin.so"],
     "version-compatible engines carry the loadLibrary plugin library: /nowhere/libtransnext_aa_plugin_dynamic.so"),
    (["--runtime", "tensorrt-rtx", "--compute-capability", "86", "--hardware-compatibility", "ampere_plus"],
     "tensorrt-rtx has no hardware compatibility levels: its engines run on the compute capabilities they are built for"),
    (["--runtime", "trt"], "runtime must be one of tensorrt, tensorrt-rtx, got 'trt'"),
    (["--graph", "fused"], "graph must be one of standard, plugin, function, got 'fused'"),
    (["--compute-capability", "86"], "tensorrt builds for the GPU it runs on: compute capabilities are for tensorrt-rtx"),
    (["--runtime", "tensorrt-rtx", "--compute-capability", "86", "90"],
     "tensorrt-rtx builds for compute capabilities 75, 80, 86, 89, 120, 121, not 90"),
])
def test_build_engine_bad_options_are_one_line(tmp_path, args, fragment):
    result = _cli(str(_identity_artifact(tmp_path / "a")), *args)
    assert result.exit_code == 1 and fragment in error_line(result.stderr), result.output
    result = _cli(str(tmp_path / "elsewhere"))
    assert result.exit_code == 1 and "is not an export artifact directory" in error_line(result.stderr)


def test_build_engine_passes_every_option_to_the_builder(tmp_path, monkeypatch):
    """The command is a thin layer over build_engines_for_artifact: every option arrives as given
    (the builder is stood in for here; the tests below build for real)."""
    import transnext_deploy.engine as engine_module

    artifact = _identity_artifact(tmp_path / "a")
    calls = []

    def fake_build(directory, precisions, **kwargs):
        calls.append((directory, precisions, kwargs))
        paths = []
        for p in precisions:
            path = artifact / f"model.aa_plugin.{p}.rtx.engine"
            path.write_bytes(b"x")
            (artifact / f"{path.name}.json").write_text(json.dumps({
                "precision": p, "runtime": "tensorrt-rtx", "runtime_version": "1.7.1", "built_ahead_of_time": True,
                "compute_capabilities": ["86", "120"], "gpu": None, "plugin_layers": 19}))
            kwargs["progress"](f"building the {p} tensorrt-rtx engine", advance=1)
            paths.append(path)
        return paths

    monkeypatch.setattr(engine_module, "build_engines_for_artifact", fake_build)
    plugin = tmp_path / "libtransnext_aa_plugin.so"
    result = _cli(str(artifact), "--runtime", "tensorrt-rtx", "--compute-capability", "86", "120",
                  "--precision", "fp16", "--graph", "function", "--batch", "2", "4", "16", "--plugin", str(plugin),
                  "--version-compatible", "--rebuild", "--verbose", "--json")
    assert result.exit_code == 0, result.output
    ((directory, precisions, kwargs),) = calls
    assert directory == artifact and precisions == ("fp16",)
    assert kwargs["runtime"] == "tensorrt-rtx" and list(kwargs["compute_capabilities"]) == ["86", "120"]
    assert kwargs["graph"] == "function" and kwargs["batch_profile"] == (2, 4, 16)
    assert kwargs["plugin_library"] == plugin and kwargs["rebuild"] is True and kwargs["verbose"] is True
    assert kwargs["version_compatible"] is True and kwargs["hardware_compatibility"] == "none"
    summary = json.loads(result.stdout)
    (engine,) = summary["engines"]
    assert engine["precision"] == "fp16" and engine["runtime"] == "tensorrt-rtx"
    assert engine["compute_capabilities"] == ["86", "120"] and engine["plugin_layers"] == 19
    assert "building the fp16 tensorrt-rtx engine" in result.stderr  # one plain progress line off a terminal
    assert "sm_86, sm_120" in result.stderr
    calls.clear()
    assert _cli(str(artifact)).exit_code == 0
    ((_, precisions, kwargs),) = calls
    assert precisions == ("fp32", "fp16") and kwargs["batch_profile"] == (1, 8, 32)
    assert kwargs["runtime"] == "tensorrt" and not kwargs["compute_capabilities"] and kwargs["graph"] == "plugin"
    assert kwargs["version_compatible"] is False and kwargs["hardware_compatibility"] == "none"
    calls.clear()
    assert _cli(str(artifact), "--hardware-compatibility", "ampere_plus").exit_code == 0
    assert calls[0][2]["hardware_compatibility"] == "ampere_plus"


# ------------------------------------------------------------------------------------------ TensorRT-RTX, for real

CC = "86"  # one compute capability: what CI proves on every run (RTX 30 series, A10, A40)
PLUGIN_LAYERS = 19  # micro: 2 + 2 + 15 aggregated-attention blocks in stages 1-3 (stage 4 is full attention)


@pytest.fixture(scope="module")
def rtx_plugin(tmp_path_factory):
    """The plugin built against the newest TensorRT headers here, for sm_86: both libraries."""
    problem = rtx_plugin_build_problem()
    if problem:
        pytest.skip(problem)
    headers = tensorrt_header_dirs()
    from transnext_deploy.plugin.build import build_plugin

    result = build_plugin(targets=("plugin",), cuda_archs=[CC], build_dir=tmp_path_factory.mktemp("rtx_plugin"),
                          jobs=2, tensorrt_include_dir=headers[-1])
    return result.libraries


@pytest.fixture(scope="module")
def micro224(tmp_path_factory, rtx_plugin):
    """micro exported at 224x224 with random weights: the six graphs (fp32 and fp16 of each kind)."""
    from transnext_deploy.export import ExportOptions, export

    (result,) = export(ExportOptions("micro", resolutions=[(224, 224)], checkpoint=None,
                                     output_dir=tmp_path_factory.mktemp("micro224")))
    return Path(result.directory)


ENGINES = {"standard": ["model.fp32.rtx.engine", "model.fp16.rtx.engine"],
           "plugin": ["model.aa_plugin.fp32.rtx.engine", "model.aa_plugin.fp16.rtx.engine"],
           "function": ["model.aa_function.fp32.rtx.engine", "model.aa_function.fp16.rtx.engine"]}


@pytest.mark.slow
@pytest.mark.parametrize("graph", list(GRAPHS))
def test_tensorrt_rtx_builds_every_graph_in_both_precisions_without_a_gpu(micro224, rtx_plugin, graph, monkeypatch):
    """The issue's proof: model.onnx and model.aa_function.onnx build without the plugin (the
    function is inlined, right for every stage), model.aa_plugin.onnx with it, into 19 plugin
    layers; fp16 from the fp16 graphs (strongly typed). The metadata says runtime and version,
    compute capabilities, and the sha256 of the graph and of the plugin library."""
    import tensorrt_rtx as trt

    monkeypatch.delenv("TRANSNEXT_AA_PLUGIN", raising=False)
    plugin = rtx_plugin["plugin_dynamic"] if graph == "plugin" else None
    paths = build_engines_for_artifact(micro224, PRECISIONS, graph=graph, runtime="tensorrt-rtx",
                                       compute_capabilities=[CC], plugin_library=plugin)
    assert [p.name for p in paths] == ENGINES[graph]
    sizes = {}
    for path, precision in zip(paths, PRECISIONS):
        meta = read_engine_metadata(path)
        source = micro224 / graph_file(graph, precision)
        assert meta["runtime"] == "tensorrt-rtx" and meta["runtime_version"] == trt.__version__
        assert meta["compute_capabilities"] == [CC] and meta["built_ahead_of_time"] is True
        assert meta["precision"] == precision and meta["resolution"] == [224, 224]
        assert meta["graph"] == {"file": source.name, "sha256": sha256sum(source)}
        assert meta["engine_sha256"] == sha256sum(path) and meta["engine_bytes"] == path.stat().st_size > 1e6
        if graph == "plugin":
            assert meta["plugin_layers"] == PLUGIN_LAYERS, meta["plugin_layers"]
            assert meta["plugin_library"]["sha256"] == sha256sum(plugin)
            assert meta["plugin_library"]["file"] == "libtransnext_aa_plugin_dynamic.so"
        else:
            assert meta["plugin_layers"] == 0 and meta["plugin_library"] is None
        sizes[precision] = meta["engine_bytes"]
    # fp16 weights take half the bytes of fp32 ones: an fp16 engine that came out fp32 would not be smaller
    assert sizes["fp16"] < 0.75 * sizes["fp32"], sizes
    if graph == "plugin":  # cheap to check here: a matching engine is reused, not rebuilt
        mtimes = [p.stat().st_mtime_ns for p in paths]
        again = build_engines_for_artifact(micro224, PRECISIONS, graph=graph, runtime="tensorrt-rtx",
                                           compute_capabilities=[CC], plugin_library=plugin)
        assert again == paths and [p.stat().st_mtime_ns for p in paths] == mtimes, "matching engines were rebuilt"


@pytest.mark.slow
def test_the_plugin_graph_is_the_tensorrt_graph(micro224, rtx_plugin):
    """Parsed by the real parser with the plugin loaded: the custom-op graph becomes one plugin layer
    per block, and the function form none (TensorRT inlines functions before it asks for plugins)."""
    import tensorrt_rtx as trt

    from transnext_deploy.engine.build import _network, count_layers
    from transnext_deploy.engine.tensorrt import get_runtime, load_plugin

    rt = get_runtime("tensorrt-rtx")
    load_plugin(rt, rtx_plugin["plugin_dynamic"])
    counts = {}
    for graph in ("plugin", "function"):
        _, network, _ = _network(trt, rt, micro224 / graph_file(graph, "fp16"), graph == "plugin", False)
        counts[graph] = count_layers(trt, network)
        inputs = [network.get_input(i) for i in range(network.num_inputs)]
        assert [(t.name, t.dtype) for t in inputs] == [("images", trt.float32)]  # the user-facing contract
    assert counts["plugin"][1] == PLUGIN_LAYERS and counts["function"][1] == 0, counts
    assert counts["plugin"][0] < counts["function"][0], counts


def _subprocess_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("TRANSNEXT_AA_PLUGIN", None)
    return subprocess.run([sys.executable, "-m", "transnext_deploy.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


@pytest.mark.slow
def test_a_bad_attribute_reaches_the_real_parser_as_one_line(micro224, rtx_plugin, tmp_path):
    """A custom node the plugin refuses (window_size 4: windows are odd) fails the build with the
    plugin's reason in one line, exit 1 -- never an abort (which a subprocess would show as a signal)."""
    from transnext_deploy.ops.contract import OP_NAME

    bad = tmp_path / "bad"
    bad.mkdir()
    model = onnx.load(str(micro224 / graph_file("plugin", "fp32")))
    node = next(n for n in model.graph.node if n.op_type == OP_NAME)
    (attribute,) = [a for a in node.attribute if a.name == "window_size"]
    attribute.i = 4
    onnx.save(model, str(bad / graph_file("plugin", "fp32")))
    proc = _subprocess_cli("build-engine", str(bad), "--runtime", "tensorrt-rtx", "--compute-capability", CC,
                           "--precision", "fp32", "--plugin", str(rtx_plugin["plugin_dynamic"]))
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    line = error_line(proc.stderr)
    assert "tensorrt-rtx's ONNX parser rejects model.aa_plugin.onnx" in line, line
    assert "window_size" in line and "odd" in line, line
    assert "terminate called" not in proc.stderr
    assert not list(bad.glob("*.engine*")), "a failed build left an engine behind"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["plugin", "plugin_dynamic"])
@pytest.mark.parametrize("core", ["local", "global"])
def test_both_plugin_libraries_load_through_load_library(rtx_plugin, kind, core):
    """IPluginRegistry::loadLibrary (trtexec --dynamicPlugins, registry.load_library) takes either
    library, whether TensorRT's core library is local to its module (the Python wheels) or global
    (trtexec links it; load_plugin makes it so): both export getCreators and setLoggerFinder, and
    the library that registers itself when loaded hands its creator over to loadLibrary rather than
    being refused as a duplicate. One subprocess per case: a library is loaded once per process."""
    from transnext_deploy.ops.contract import OP_NAME, OP_NAMESPACE, OP_VERSION

    code = ("import sys, tensorrt_rtx as trt\n"
            "from transnext_deploy.engine.tensorrt import _make_core_global, get_runtime\n"
            "logger = trt.Logger(trt.Logger.WARNING)\n"
            "builder = trt.Builder(logger)\n"
            + ("_make_core_global(trt, get_runtime('tensorrt-rtx'))\n" if core == "global" else "")
            + "registry = trt.get_plugin_registry()\n"
            "handle = registry.load_library(sys.argv[1])\n"
            "assert handle is not None, 'load_library returned None'\n"
            f"creator = registry.get_creator({OP_NAME!r}, {OP_VERSION!r}, {OP_NAMESPACE!r})\n"
            "assert creator is not None, 'no creator registered'\n"
            "print('registered', creator.name, creator.plugin_version)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(rtx_plugin[kind])], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and f"registered {OP_NAME} {OP_VERSION}" in proc.stdout, proc.stderr[-2000:]


@pytest.mark.slow
def test_a_second_plugin_library_replaces_the_first_in_one_process(rtx_plugin, tmp_path):
    """`package` builds a fresh plugin in a process that may have loaded another (a long Python
    session, the test run): the registry holds one creator per name, so the earlier library is
    withdrawn and the new one registered (a copy stands in for a second build)."""
    copy = tmp_path / "second" / rtx_plugin["plugin_dynamic"].name
    copy.parent.mkdir()
    shutil.copy2(rtx_plugin["plugin_dynamic"], copy)
    code = ("import sys, tensorrt_rtx as trt\n"
            "from transnext_deploy.engine.tensorrt import load_plugin\n"
            "builder = trt.Builder(trt.Logger(trt.Logger.WARNING))\n"
            "print(load_plugin('tensorrt-rtx', sys.argv[1]))\n"
            "print(load_plugin('tensorrt-rtx', sys.argv[2]))\n"
            "print(load_plugin('tensorrt-rtx', sys.argv[1]))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(rtx_plugin["plugin_dynamic"]), str(copy)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str(rtx_plugin["plugin_dynamic"].resolve()), str(copy.resolve()),
                                   str(rtx_plugin["plugin_dynamic"].resolve())]
