"""Export, the aggregated-attention rewrite, the CPU custom op, validation and manifests."""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import onnx
import pytest
import torch
from typer.testing import CliRunner

from transnext_deploy import create_model, plugin_host
from transnext_deploy.artifacts import (
    EXPORT_STEPS,
    FUNCTION_FILE,
    GRAPH_FILES,
    PLUGIN_FILE,
    STANDARD_FILE,
    graph_file,
    graph_precision,
)
from transnext_deploy.files import sha256sum
from transnext_deploy.backends.onnxrt import cpu_session
from transnext_deploy.cli import app
from transnext_deploy.engine import tensorrt_status
from transnext_deploy.export import DEFAULT_ATOL, DEFAULT_RTOL, ExportError, ExportOptions, export
from transnext_deploy.ops.contract import INPUT_NAMES, OP_DOMAIN, OP_NAME
from transnext_deploy.plugin.build import PluginBuildError
from transnext_deploy.compare import FP16_TOLERANCE, error_stats

from helpers import PROGRESS_LINE, error_line, perturbed_checkpoint

MAX_ABS_TOL = 1e-4  # every exported graph vs PyTorch at these small sizes, fp32: an independent max-abs check


@pytest.fixture(scope="module")
def micro_artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    ckpt = perturbed_checkpoint(root / "micro.pth", "micro")
    results = export(ExportOptions("micro", resolutions=[(64, 64), (64, 96)], checkpoint=str(ckpt),
                                   output_dir=root / "out"))
    return results, ckpt


def _nodes(path) -> list[onnx.NodeProto]:
    return list(onnx.load(str(path), load_external_data=False).graph.node)


def test_one_artifact_per_resolution_with_every_file(micro_artifacts):
    results, ckpt = micro_artifacts
    assert [r.resolution for r in results] == [(64, 64), (64, 96)]
    for r in results:
        d = Path(r.directory)
        assert d.name == f"transnext_micro_classify_{r.resolution[0]}x{r.resolution[1]}"
        assert sorted(p.name for p in d.iterdir()) == sorted(["manifest.json", "validation.json", *GRAPH_FILES])
        assert not [p for p in d.parent.iterdir() if p.name.startswith(".")], "staging directory left behind"


def test_fused_graphs_have_one_custom_node_per_block_and_no_window_gathering(micro_artifacts):
    results, _ = micro_artifacts
    d = Path(results[0].directory)
    standard = Counter(n.op_type for n in _nodes(d / STANDARD_FILE))
    assert standard["Softmax"] == 21 and standard["Pad"] == 38  # 19 aggregated (2 pads each) + 2 full attention
    for name in (PLUGIN_FILE, FUNCTION_FILE, graph_file("plugin", "fp16"), graph_file("function", "fp16")):
        nodes = _nodes(d / name)
        custom = [n for n in nodes if n.op_type == OP_NAME]
        assert len(custom) == 19 and all(n.domain == OP_DOMAIN for n in custom)
        ops = Counter(n.op_type for n in nodes)
        assert ops["Pad"] == 0 and ops["Softmax"] == 2, f"{name}: decomposed attention left: {ops}"
        assert all(len(n.input) == len(INPUT_NAMES) for n in custom)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in custom[0].attribute}
        assert attrs == {"num_heads": 2, "height": 16, "width": 16, "window_size": 3, "pool_height": 2,
                         "pool_width": 2, "plugin_version": b"1"}
    # one function for every block (TensorRT's parser keys functions by name alone: tests/test_export_functions.py)
    for name in (FUNCTION_FILE, graph_file("function", "fp16")):
        functions = onnx.load(str(d / name), load_external_data=False).functions
        assert [(f.domain, f.name, f.overload) for f in functions] == [(OP_DOMAIN, OP_NAME, "")]
        assert all(not n.overload for n in onnx.load(str(d / name), load_external_data=False).graph.node)
    assert not onnx.load(str(d / PLUGIN_FILE), load_external_data=False).functions


def test_every_graph_matches_pytorch_on_every_input(micro_artifacts):
    results, _ = micro_artifacts
    for r in results:
        report = json.loads((Path(r.directory) / "validation.json").read_text())
        assert report["passed"] and (report["atol"], report["rtol"]) == (DEFAULT_ATOL, DEFAULT_RTOL)
        assert set(report["inputs"]) >= {"random_normal_batch2", "uniform_image", "photo_grace_hopper"}
        assert set(report["graphs"]) == set(GRAPH_FILES) and not report["skipped"]
        assert report["tolerances"] == {"fp32": {"atol": DEFAULT_ATOL, "rtol": DEFAULT_RTOL},
                                        "fp16": {"atol": FP16_TOLERANCE.atol, "rtol": FP16_TOLERANCE.rtol}}
        for name, graph in report["graphs"].items():
            precision = graph_precision(name)
            tolerance = report["tolerances"][precision]
            assert graph["passed"] is True, name
            if precision == "fp32":
                assert graph["max_abs"] <= MAX_ABS_TOL, (name, graph["max_abs"])
            worst = graph["worst"]  # the element closest to its bound, and where it is
            assert worst["output"] == "logits" and worst["input"] in report["inputs"]
            assert len(worst["index"]) == 2 and 0 <= worst["index"][1] < 1000
            assert worst["allowed"] == pytest.approx(tolerance["atol"] + tolerance["rtol"] * worst["ref_abs"])
            assert worst["abs_diff"] <= worst["allowed"] and worst["ratio"] == pytest.approx(
                worst["abs_diff"] / worst["allowed"])
            per_output = graph["inputs"][worst["input"]]["logits"]
            assert per_output["worst"]["index"] == worst["index"] and per_output["max_abs"] <= graph["max_abs"]
            for per_input in graph["inputs"].values():
                logits = per_input["logits"]
                assert logits["ref_max_abs"] > 0.1  # perturbed weights give non-trivial logits
                if precision == "fp32":  # fp16 near-ties may swap (tests/test_export_precision.py checks fp16)
                    assert logits["top1_agreement"] == 1.0 and logits["cosine"] > 0.99999


def test_custom_op_graph_runs_on_the_plugin_arithmetic(micro_artifacts):
    """Independently of validation.json: run the custom-op graph here on a fresh input."""
    results, ckpt = micro_artifacts
    model = create_model("micro", img_size=(64, 96)).eval()
    model.load_state_dict(torch.load(ckpt, weights_only=True)["model"])
    x = torch.randn(3, 3, 64, 96)
    with torch.no_grad():
        ref = model(x)
    session = cpu_session(Path(results[1].directory) / PLUGIN_FILE)
    stats = error_stats(ref, session.run(None, {"images": x.numpy()})[0])
    assert stats.max_abs <= MAX_ABS_TOL, str(stats)


def test_manifest_describes_the_artifact(micro_artifacts):
    results, ckpt = micro_artifacts
    d = Path(results[1].directory)
    m = json.loads((d / "manifest.json").read_text())
    assert m["variant"] == "micro" and m["resolution"] == [64, 96] and m["mode"] == "classify"
    assert m["opset"] == 17 and m["pretrain_size"] == [224, 224]
    assert m["custom_op"]["name"] == OP_NAME and m["custom_op"]["nodes"] == 19
    assert m["inputs"] == {"images": ["batch", 3, 64, 96]} and m["outputs"] == {"logits": ["batch", 1000]}
    assert m["weights"]["sha256"] == sha256sum(ckpt)
    for name, info in m["files"].items():
        assert sha256sum(d / name) == info["sha256"] and (d / name).stat().st_size == info["bytes"]
    plugin_line = m["commands"]["trtexec_plugin"]
    assert "--staticPlugins=" in plugin_line and graph_file("plugin", "fp16") in plugin_line
    assert all("--stronglyTyped" in line for name, line in m["commands"].items() if name.startswith("trtexec"))
    assert "--fp16" not in " ".join(m["commands"].values())  # precision is the graph's, never a builder flag
    assert FUNCTION_FILE in m["commands"]["polygraphy_compare"] and "--onnxrt" in m["commands"]["polygraphy_compare"]
    assert "--compute-capability" in m["commands"]["build_engine_rtx"]
    assert set(m["runtimes"]) >= {"tensorrt", "tensorrt-rtx", "onnxruntime"}
    assert "inlines" in m["runtimes"]["tensorrt"]  # which graph TensorRT gets, and why
    assert "from this artifact directory" in m["commands_note"] and "$TRANSNEXT_AA_PLUGIN" in m["commands_note"]
    assert list(m).index("commands_note") == list(m).index("commands") - 1  # right next to them
    assert m["tool_versions"]["onnx"] == onnx.__version__
    model = onnx.load(str(d / STANDARD_FILE), load_external_data=False)
    onnx.checker.check_model(model, full_check=True)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 64, 96]


@pytest.mark.parametrize("shell", ["sh", "bash", "zsh"])
def test_manifest_command_lines_run_as_written_in_the_artifact_directory(micro_artifacts, tmp_path, shell):
    """Each command line, pasted into a shell in the artifact directory with $TRANSNEXT_AA_PLUGIN
    set, reaches trtexec / polygraphy (stand-ins that print their arguments) with the graph file
    present and every shape argument whole (zsh globs unquoted brackets)."""
    import shutil
    import subprocess

    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    results, _ = micro_artifacts
    d = Path(results[1].directory)
    commands = json.loads((d / "manifest.json").read_text())["commands"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("trtexec", "polygraphy", "transnext-deploy"):
        (bin_dir / tool).write_text("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n")
        (bin_dir / tool).chmod(0o755)
    plugin = tmp_path / "lib dir" / "libtransnext_aa_plugin.so"  # a space in the path, too
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "TRANSNEXT_AA_PLUGIN": str(plugin)}
    for name, line in commands.items():
        proc = subprocess.run([shell, "-c", line], cwd=d, capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0, (name, line, proc.stderr)
        args = proc.stdout.splitlines()
        if name.startswith("build_engine"):
            assert args[:2] == ["build-engine", "."], (name, args)  # this artifact directory
            continue
        graph = next(a.split("=", 1)[-1] for a in args if a.endswith(".onnx"))
        assert (d / graph).is_file(), (name, graph)
        if name.startswith("polygraphy"):
            assert "images:[8,3,64,96]" in args, (name, args)
            assert (str(plugin) in args) == (name == "polygraphy_plugin"), (name, args)
        else:
            assert "--optShapes=images:8x3x64x96" in args, (name, args)
            assert (f"--staticPlugins={plugin}" in args) == (name == "trtexec_plugin"), (name, args)


@pytest.mark.slow
def test_backbone_mode_and_micro_aaaa_fuse_every_block(tmp_path):
    ckpt = perturbed_checkpoint(tmp_path / "aaaa.pth", "micro_AAAA")
    (r,) = export(ExportOptions("micro_AAAA", resolutions=[(128, 96)], checkpoint=str(ckpt), mode="backbone",
                                output_dir=tmp_path / "out"))
    assert r.blocks_fused == 21  # aggregated attention in all four stages
    m = json.loads((Path(r.directory) / "manifest.json").read_text())
    assert m["outputs"] == {"stage1": ["batch", 48, 32, 24], "stage2": ["batch", 96, 16, 12],
                            "stage3": ["batch", 192, 8, 6], "stage4": ["batch", 384, 4, 3]}
    for graph in r.validation["graphs"].values():
        assert graph["passed"] and set(next(iter(graph["inputs"].values()))) == {"stage1", "stage2", "stage3",
                                                                                   "stage4"}
        assert graph["worst"]["output"] in {"stage1", "stage2", "stage3", "stage4"}
        assert len(graph["worst"]["index"]) == 4  # (batch, channel, y, x) of that feature map


@pytest.mark.slow
def test_interpolated_position_bias_exports(tmp_path):
    ckpt = perturbed_checkpoint(tmp_path / "m.pth", "micro")
    (r,) = export(ExportOptions("micro", resolutions=[96], checkpoint=str(ckpt), position_bias="interpolate",
                                output_dir=tmp_path / "out"))
    fp32 = [g for name, g in r.validation["graphs"].items() if graph_precision(name) == "fp32"]
    assert r.validation["passed"] and len(fp32) == 3 and max(g["max_abs"] for g in fp32) <= MAX_ABS_TOL


# ---------------------------------------------------------------------------------------------
# the command line


runner = CliRunner()


def _one_line_error(result):
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    return error_line(result.stderr)


@pytest.mark.slow
def test_cli_export_json_summary(tmp_path):
    ckpt = perturbed_checkpoint(tmp_path / "t.pth", "tiny")
    result = runner.invoke(app, ["export", "--size", "tiny", "-r", "64", "-c", str(ckpt), "-o", str(tmp_path / "o"),
                                 "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    (artifact,) = summary["artifacts"]
    assert artifact["blocks_fused"] == 19 and artifact["passed"] and artifact["resolution"] == [64, 64]
    # stderr off a terminal: one timed line per step, then the notes and the result, never wrapped
    lines = result.stderr.splitlines()
    steps = [ln for ln in lines if PROGRESS_LINE.match(ln)]
    assert [re.sub(r"^\[ *\d+\.\d s\] ", "", ln) for ln in steps[:len(EXPORT_STEPS)]] == [
        f"64x64: {step} ({i}/{len(steps)})" for i, step in enumerate(EXPORT_STEPS, 1)]  # fp16 graphs included
    assert all(ln.strip() for ln in lines) and lines[-1].startswith("ok: ")
    if not tensorrt_status().available:
        (skipped,) = [ln for ln in lines if ln.startswith("note: TensorRT engines skipped: ")]
        if importlib.util.find_spec("tensorrt") is None:
            assert "pip install 'transnext-deploy[tensorrt]'" in skipped  # brackets kept, one line


@pytest.mark.parametrize("args,message", [
    (["--size", "huge"], "unknown size 'huge'"),
    (["--size", "micro", "-r", "16"], "unsupported resolution 16x16"),
    (["--size", "micro", "-r", "abc"], "resolution 'abc' is not a number"),
    (["--size", "micro", "--mode", "detect"], "--mode must be classify or backbone"),
    (["--size", "micro", "--opset", "13"], "opset 13 is too old"),
    (["--size", "micro", "--atol", "-1e-4"], "atol must be a finite number >= 0"),
    (["--size", "micro", "--rtol", "nan"], "rtol must be a finite number >= 0"),
])
def test_cli_export_bad_input(tmp_path, args, message):
    text = _one_line_error(runner.invoke(app, ["export", *args, "-o", str(tmp_path / "o")]))
    assert message in text


def test_cli_export_bad_checkpoints_and_output(tmp_path):
    other = tmp_path / "tiny.pth"
    torch.save(create_model("tiny").state_dict(), other)
    text = _one_line_error(runner.invoke(app, ["export", "-s", "micro", "-r", "64", "-c", str(other),
                                               "-o", str(tmp_path / "o")]))
    assert "does not fit transnext_micro" in text and "looks like transnext_tiny" in text
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x02garbage")
    text = _one_line_error(runner.invoke(app, ["export", "-s", "micro", "-r", "64", "-c", str(corrupt),
                                               "-o", str(tmp_path / "o")]))
    assert "not a readable PyTorch checkpoint" in text
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    text = _one_line_error(runner.invoke(app, ["export", "-s", "micro", "-r", "64", "-o", str(blocker / "out")]))
    assert "cannot create output directory" in text
    # nothing left behind, the output directory included: the export created it
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_failed_validation_leaves_nothing_half_written(tmp_path):
    ckpt = perturbed_checkpoint(tmp_path / "m.pth", "micro")
    with pytest.raises(ExportError, match=r"transnext_micro_classify_64x64: model\.\S+ differs from PyTorch beyond "
                                          r"atol 1e-12 \+ rtol 0 \* \|b\|: logits\[\d+, \d+\] on \w+: \|a-b\| \S+ "
                                          r"where \|b\| = \S+ \(allowed 1\.000e-12, \S+x; max-abs \S+\)$"):
        export(ExportOptions("micro", resolutions=[64], checkpoint=str(ckpt), atol=1e-12, rtol=0.0,
                             output_dir=tmp_path / "o"))
    assert not (tmp_path / "o").exists()  # created by this export, removed with the failed artifact
    kept = tmp_path / "kept"
    (kept / "mine").mkdir(parents=True)
    with pytest.raises(ExportError):
        export(ExportOptions("micro", resolutions=[64], checkpoint=str(ckpt), atol=1e-12, rtol=0.0, output_dir=kept))
    assert [p.name for p in kept.iterdir()] == ["mine"]  # a directory the user had stays, with what it held


@pytest.mark.slow
def test_export_without_host_library_validates_the_other_graphs(tmp_path, monkeypatch):
    """An install with no prebuilt host library and no compiler: model.onnx and the function graph are
    still written and validated, the custom-op graph's CPU run is skipped with the reason."""
    reason = "no C++ compiler found (looked for $CXX, c++, g++, clang++): install g++ (e.g. `apt install g++`)"

    def no_library(path=None):
        raise PluginBuildError(reason)

    monkeypatch.setattr(plugin_host, "load_host_library", no_library)
    ckpt = perturbed_checkpoint(tmp_path / "m.pth", "micro")
    result = runner.invoke(app, ["export", "-s", "micro", "-r", "64", "-c", str(ckpt), "-o", str(tmp_path / "o"),
                                 "--atol", "3e-5", "--rtol", "2e-4"])
    assert result.exit_code == 0, result.output
    assert "model.aa_plugin.onnx not run on the CPU" in result.output and "install g++" in result.output
    d = tmp_path / "o" / "transnext_micro_classify_64x64"
    assert {STANDARD_FILE, PLUGIN_FILE, FUNCTION_FILE, "validation.json", "manifest.json"} <= {
        p.name for p in d.iterdir()}
    report = json.loads((d / "validation.json").read_text())
    assert report["passed"] and (report["atol"], report["rtol"]) == (3e-5, 2e-4)
    skipped = f"the plugin's host library is not available: {reason}"
    plugin_graphs = (PLUGIN_FILE, graph_file("plugin", "fp16"))
    for name in plugin_graphs:
        assert report["graphs"][name] == {"passed": None, "skipped": skipped}
    assert report["skipped"] == dict.fromkeys(plugin_graphs, skipped)
    for name in set(GRAPH_FILES) - set(plugin_graphs):
        assert report["graphs"][name]["passed"] is True and report["graphs"][name]["worst"]["ratio"] <= 1
    manifest = json.loads((d / "manifest.json").read_text())
    assert "--atol 3e-05 --rtol 0.0002" in manifest["commands"]["polygraphy_compare"]


def test_export_steps_count_only_the_engines_whose_graph_is_written():
    """Export builds an engine only from a graph it wrote: asked for fp32 graphs where TensorRT could
    build both precisions, the progress total has no fp16 step to wait for."""
    from transnext_deploy.artifacts import PRECISIONS, engine_step, export_steps, graph_file

    def engine_steps(steps):
        return [s for s in steps if " engine from " in s]

    fp32 = export_steps(("fp32",), PRECISIONS)
    assert engine_steps(fp32) == [engine_step("fp32", graph_file("plugin", "fp32"))]
    assert not any("fp16" in s for s in fp32), fp32
    assert engine_steps(export_steps(PRECISIONS, PRECISIONS)) == [
        engine_step(p, graph_file("plugin", p)) for p in PRECISIONS]
    assert engine_steps(export_steps(PRECISIONS, ())) == []
