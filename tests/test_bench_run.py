"""`transnext-deploy bench` and its library API (CPU only, micro at 64-96 px, a few runs)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import torch
from typer.main import get_command
from typer.testing import CliRunner

from transnext_deploy.backends.registry import BACKENDS
from transnext_deploy.bench.run import BenchError, BenchOptions, run_bench
from transnext_deploy.bench.work import ensure_artifacts
from transnext_deploy.bench.plot import plot_report
from transnext_deploy.bench.report import load_report
from transnext_deploy.cli import app
from transnext_deploy.engine import tensorrt_status
from transnext_deploy.memory import reset_high_water_mark

from helpers import PROGRESS_LINE, perturbed_checkpoint

MAX_ABS_TOL = 1e-4  # exported graphs vs PyTorch, fp32 (as in test_export.py)
ENV = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
RESOLUTIONS = [(64, 64), (96, 96)]
BATCHES = [1, 2]


@pytest.fixture(scope="module")
def bench_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    ckpt = perturbed_checkpoint(root / "micro.pth", "micro")
    options = BenchOptions(variant="micro", resolutions=RESOLUTIONS, batches=BATCHES, backends=None, runs=2,
                           warmup=1, max_seconds=1.0, min_runs=1, threads=2, checkpoint=str(ckpt),
                           work_dir=root / "work")
    events = []
    done = [0.0]

    def progress(description, *, advance=0.0, total=None):
        done[0] += advance
        events.append((description, done[0], total))

    report = run_bench(options, progress=progress)
    return report, options, root, events


def _rows(report, label):
    return [r for r in report.rows if r.label == label]


CASES = [f"{name} {p}" if spec.engine else name for name, spec in BACKENDS.items()
         for p in (("fp32", "fp16") if spec.engine else (None,))]


def test_every_backend_has_a_row_per_case(bench_setup):
    report, _, _, events = bench_setup
    cases = {(r, b) for r in RESOLUTIONS for b in BATCHES}
    for label in CASES:  # an engine backend has a row per precision
        assert {(tuple(r.resolution), r.batch) for r in _rows(report, label)} == cases, label
    assert len(report.rows) == len(CASES) * len(cases)
    assert set(report.meta["backends"]) == set(BACKENDS) and report.meta["cases"] == CASES
    for backend in ("torch-plain", "torch-fast", "onnxruntime-cpu", "onnxruntime-cpu-custom"):
        assert all(r.status == "ok" for r in _rows(report, backend)), [r.status_text for r in _rows(report, backend)]
    compile_rows = _rows(report, "torch-compile")
    assert all(r.status == "skipped" and "--backend torch-compile" in r.reason for r in compile_rows)
    assert events and events[-1][1] == pytest.approx(events[-1][2]), "progress did not reach its total"


def test_missing_backends_say_why(bench_setup):
    report, _, _, _ = bench_setup
    status = tensorrt_status()
    if status.available:
        pytest.skip("TensorRT, a GPU and the plugin are present here")
    for backend in ("tensorrt fp32", "tensorrt fp16"):
        for r in _rows(report, backend):
            assert r.status == "not available" and r.reason == status.reason
            assert r.status_text.startswith("not available: ")
    if not torch.cuda.is_available():
        for r in _rows(report, "onnxruntime-cuda"):
            assert r.status == "not available" and "CUDA" in r.reason, r.reason


def test_latency_throughput_memory_fields(bench_setup):
    report, options, _, _ = bench_setup
    for r in (r for r in report.rows if r.ok):
        lat = r.latency_ms
        assert 1 <= r.runs <= options.runs
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert r.throughput_img_s == pytest.approx(r.batch * 1000 / lat["mean"])
        assert r.first_call_ms is not None and r.first_call_ms > 0
        assert len(r.times_ms) == r.runs and min(r.times_ms) == pytest.approx(lat["min"], abs=1e-3)
        if reset_high_water_mark():
            assert r.memory_mib is not None and r.memory_mib >= 0 and "RSS" in r.memory_method


def test_without_warmup_the_first_timed_pass_is_measured(bench_setup):
    _, options, _, _ = bench_setup
    report = run_bench(BenchOptions(variant="micro", resolutions=[64], batches=[1], backends=["onnxruntime-cpu", "torch-fast"],
                                    runs=2, warmup=0, min_runs=1, threads=2, checkpoint=options.checkpoint,
                                    work_dir=options.work_dir))
    assert [r.backend for r in report.rows] == ["torch-fast", "onnxruntime-cpu"]
    for r in report.rows:
        assert r.ok and r.runs == 2 and r.first_call_ms == pytest.approx(r.times_ms[0], abs=1e-3)
        if reset_high_water_mark():
            assert r.memory_mib is not None


def test_exported_graphs_match_the_reference(bench_setup):
    report, _, _, _ = bench_setup
    for backend in ("onnxruntime-cpu", "onnxruntime-cpu-custom", "torch-fast"):
        for r in _rows(report, backend):
            acc = r.accuracy
            assert acc["max_abs"] <= MAX_ABS_TOL, (backend, r.resolution, r.batch, acc)
            assert acc["cosine"] > 0.99999 and acc["top1_agreement"] == 1.0
            assert acc["ref_max_abs"] > 0.1  # perturbed weights give non-trivial logits
    for r in _rows(report, "torch-plain"):
        assert r.accuracy["max_abs"] == 0.0  # on the CPU it is the reference itself


def test_artifacts_are_reused(bench_setup, monkeypatch):
    report, options, _, _ = bench_setup
    import transnext_deploy.export as export_module

    def refuse(*args, **kwargs):
        raise AssertionError("exported again although the artifacts match")

    monkeypatch.setattr(export_module, "export", refuse)
    found = ensure_artifacts("micro", RESOLUTIONS, options.checkpoint, Path(options.work_dir))
    assert {r: str(p) for r, p in found.items()} == {tuple(map(int, k.split("x"))): v
                                                      for k, v in report.meta["artifacts"].items()}


def test_json_and_png(bench_setup, tmp_path):
    report, _, _, _ = bench_setup
    path = report.write_json(tmp_path / "bench.json")
    data = json.loads(path.read_text())
    assert len(data["rows"]) == len(report.rows)
    assert data["meta"]["variant"] == "micro" and data["meta"]["machine"]["threads"] == 2
    assert {row["status_text"].split(":")[0] for row in data["rows"]} <= {"ok", "not available", "skipped"}
    again = load_report(path)
    assert [r.as_dict() for r in again.rows] == [r.as_dict() for r in report.rows]
    png = plot_report(again, tmp_path / "plots" / "bench.png")
    blob = png.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(blob) > 40_000, len(blob)


def test_plot_labels_every_bar_and_keeps_the_p90_whiskers_apart(bench_setup):
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection
    from matplotlib.container import BarContainer, ErrorbarContainer

    from transnext_deploy.bench.plot import report_figure

    report, _, _, _ = bench_setup
    measured = {r.label for r in report.rows if r.ok}
    fig = report_figure(report)
    try:
        top, bottom = fig.axes[:len(BATCHES)], fig.axes[len(BATCHES):2 * len(BATCHES)]
        for ax, bar_ax in zip(top, bottom):
            assert not any(isinstance(c, PolyCollection) for c in ax.collections)  # no filled bands
            whiskers = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
            assert len(whiskers) == len(measured)
            xs = [seg[0][0] for c in whiskers for seg in c.lines[2][0].get_segments()]
            assert len(xs) == len(set(round(x, 6) for x in xs)), xs  # no two backends share a whisker
            names = {round(t.xy[0], 6): t.get_text() for t in bar_ax.texts if t.get_rotation() == 90}
            groups = [c for c in bar_ax.containers if isinstance(c, BarContainer)]
            assert {c.get_label() for c in groups} == measured - {"torch-plain"}
            for group in groups:
                assert len(group.patches) == len(RESOLUTIONS)
                for bar in group.patches:
                    assert names[round(bar.get_x() + bar.get_width() / 2, 6)] == group.get_label()
    finally:
        plt.close(fig)


def test_polygraphy_reproduces_the_comparison(bench_setup):
    report, _, _, _ = bench_setup
    entry = report.polygraphy[0]
    assert set(entry["commands"]) >= {"onnxruntime-cpu", "onnxruntime-cpu-function-form", "tensorrt fp32",
                                      "tensorrt fp16"}
    assert '--plugins "$TRANSNEXT_AA_PLUGIN"' in entry["commands"]["tensorrt fp16"]
    h, w = entry["resolution"]
    assert f"--trt-min-shapes 'images:[{entry['batch']},3,{h},{w}]'" in entry["commands"]["tensorrt fp16"]  # zsh
    proc = subprocess.run(shlex.split(entry["commands"]["onnxruntime-cpu"]), capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "PASSED" in proc.stdout + proc.stderr


def test_bad_options_are_refused_before_any_work(tmp_path):
    for kwargs, fragment in (({"backends": ["tensorrt-fp16"]}, "unknown backend 'tensorrt-fp16'"),
                             ({"precisions": ["int8"]}, "precisions must be among fp32, fp16"),
                             ({"checkpoint": str(tmp_path / "none.pth")}, "checkpoint not found"),
                             ({"resolutions": [16]}, "unsupported resolution 16x16"),
                             ({"batches": [0]}, "batch sizes must be >= 1"),
                             ({"variant": "huge"}, "unknown size 'huge'"),
                             ({"runs": 0}, "runs must be >= 1")):
        with pytest.raises(BenchError, match=re.escape(fragment)):
            run_bench(BenchOptions(variant=kwargs.pop("variant", "micro"), work_dir=tmp_path / "w", **kwargs))
    assert not (tmp_path / "w").exists()


# ------------------------------------------------------------------------------------------ CLI


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env=ENV)


def test_cli_help_documents_every_option():
    result = invoke("bench", "--help")
    assert result.exit_code == 0, result.output
    text = ANSI.sub("", result.output)
    command = get_command(app).commands["bench"]
    for param in command.params:
        for opt in param.opts:
            assert opt in text, f"{opt} missing from bench --help"
        assert param.help, f"{param.name} has no help text"
    for backend in BACKENDS:
        assert backend in text


@pytest.mark.parametrize("args, fragment", [
    (["--backend", "tensorrt-int8"], "unknown backend 'tensorrt-int8'"),
    (["-r", "16"], "unsupported resolution 16x16"),
    (["-r", "abc"], "resolution 'abc'"),
    (["-b", "0"], "batch sizes must be >= 1"),
    (["-b", "two"], "--batch takes whole numbers"),
    (["-s", "huge"], "unknown size 'huge'"),
    (["--plot", "out.svg"], "--plot writes a PNG"),
    (["--device", "tpu"], "device must be one of auto, cpu, cuda, got 'tpu'"),
    (["--device", "tensorrt"], "(tensorrt is a backend: ask for it by name)"),
    (["--precision", "int8"], "precisions must be among fp32, fp16"),
])
def test_cli_bad_input_is_one_line(tmp_path, args, fragment):
    result = invoke("bench", "-s", "micro", "-r", "64", "--work-dir", str(tmp_path / "w"), *args)
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_cli_run_writes_table_json_and_plot(bench_setup, tmp_path):
    _, options, _, _ = bench_setup
    json_path, plot_path = tmp_path / "b.json", tmp_path / "b.png"
    result = invoke("bench", "-s", "micro", "-r", "64", "--backend", "onnxruntime-cpu,torch-fast", "--backend",
                    "tensorrt", "--precision", "fp16", "--runs", "2", "--warmup", "1", "--threads", "2", "-c", str(options.checkpoint),
                    "--work-dir", str(options.work_dir), "--json", str(json_path), "--plot", str(plot_path))
    assert result.exit_code == 0, result.output
    out = ANSI.sub("", result.stdout)
    assert "onnxruntime-cpu" in out and "torch-fast" in out and "tensorrt fp16" in out
    assert "polygraphy run" in out
    data = json.loads(json_path.read_text())
    assert [(r["backend"], r["precision"], r["label"]) for r in data["rows"]] == [
        ("torch-fast", None, "torch-fast"), ("onnxruntime-cpu", None, "onnxruntime-cpu"),
        ("tensorrt", "fp16", "tensorrt fp16")]
    trt_row = data["rows"][-1]
    assert trt_row["status"] == ("ok" if tensorrt_status().available else "not available")
    assert plot_path.read_bytes()[:4] == b"\x89PNG"
    assert any(PROGRESS_LINE.match(ln) for ln in result.stderr.splitlines())  # progress off a terminal
    # where the reused artifacts are, how big, and what frees them
    assert re.search(rf"artifacts kept for the next run in {re.escape(str(options.work_dir))}: \d+\.\d MB "
                     r"\(delete the directory to free it\)", result.stderr), result.stderr


def test_time_budget_note_names_the_case(tmp_path):
    report = run_bench(BenchOptions(variant="micro", resolutions=[(64, 96)], batches=[2], backends=["torch-fast"],
                                    runs=50, warmup=0, max_seconds=1e-6, min_runs=1, threads=2, memory=False,
                                    work_dir=tmp_path))
    (row,) = report.rows
    assert row.runs == 1
    assert "1 of 50 runs at 64x96, batch 2: time budget reached (1e-06 s per backend)" in row.notes, row.notes


# ------------------------------------------------------------------------------------------ torch-fused, --device cuda


def test_fused_rows_on_the_cpu(bench_setup):
    report, _, _, _ = bench_setup
    rows = _rows(report, "torch-fused")
    assert rows and all(r.ok for r in rows), [r.status_text for r in rows]
    for r in rows:
        assert r.accuracy["max_abs"] <= MAX_ABS_TOL, (r.resolution, r.batch, r.accuracy)
        assert r.accuracy["top1_agreement"] == 1.0
        assert any(n.startswith("fused op: ") for n in r.notes), r.notes


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the torch rows would run")
def test_device_cuda_without_a_gpu_plans_the_torch_rows_and_says_why(bench_setup):
    _, options, _, _ = bench_setup
    backends = ["torch-plain", "torch-fast", "torch-fused", "torch-compile", "onnxruntime-cpu"]
    report = run_bench(BenchOptions(variant="micro", resolutions=[64], batches=[1, 2], backends=backends, runs=1,
                                    warmup=1, min_runs=1, threads=2, device="cuda", checkpoint=options.checkpoint,
                                    work_dir=options.work_dir))
    assert [(r.backend, r.batch) for r in report.rows] == [(b, n) for n in (1, 2) for b in backends]
    for r in report.rows:
        if r.backend.startswith("torch-"):
            assert r.status == "not available" and r.reason.startswith("no CUDA device: "), r.status_text
        else:
            assert r.ok, r.status_text  # the other backends do not depend on --device
    assert report.meta["machine"]["torch_device"] == "cuda" and "gpu" not in report.meta["machine"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the torch rows would run")
def test_cli_device_cuda_without_a_gpu_and_device_cpu(bench_setup, tmp_path):
    _, options, _, _ = bench_setup
    common = ["bench", "-s", "micro", "-r", "64", "--runs", "1", "--warmup", "1", "--threads", "2",
              "-c", str(options.checkpoint), "--work-dir", str(options.work_dir)]
    result = invoke(*common, "--device", "cuda", "--backend", "torch-fast,torch-fused,torch-compile",
                    "--json", str(tmp_path / "cuda.json"))
    assert result.exit_code == 0, result.output
    out = ANSI.sub("", result.stdout)
    assert "not available [1]" in out and "[1] torch-fast, torch-fused, torch-compile: not available: no CUDA" in out
    rows = json.loads((tmp_path / "cuda.json").read_text())["rows"]
    assert [r["status"] for r in rows] == ["not available"] * 3
    result = invoke(*common, "--device", "cpu", "--backend", "torch-fast,torch-fused", "--json",
                    str(tmp_path / "cpu.json"))
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "cpu.json").read_text())["rows"]
    assert [(r["backend"], r["status"], r["device"]) for r in rows] == [
        ("torch-fast", "ok", "cpu (2 threads)"), ("torch-fused", "ok", "cpu (2 threads)")]
