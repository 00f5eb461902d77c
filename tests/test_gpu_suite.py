"""benchmarks/gpu_suite.py: argument handling and a CPU dry run of every code path (small shapes).

The real run needs a CUDA GPU (README: "GPU suite"); here the suite runs with --device cpu --quick,
which times the kernel section on the host library, the model section eagerly and under
torch.compile (the cheap 'eager' backend), skips CUDA graphs with the reason, and writes the JSON
and the PNG. The life-cycle section compiles and runs the driver's GPU-free checks when TensorRT
headers are listed in $TENSORRT_INCLUDE_DIR, and is skipped with the reason otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
PUBLISHED_MIRROR = Path("/work/.mirror/DaiShiResearch+TransNeXt/repo")


def _load(name: str):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


suite = _load("gpu_suite")


def _headers() -> str | None:
    first = os.environ.get("TENSORRT_INCLUDE_DIR", "").split(os.pathsep)[0]
    return first if first and (Path(first) / "NvInfer.h").is_file() else None


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    argv = ["--device", "cpu", "--quick", "--variant", "micro", "--out", str(out), "--budget", "240",
            "--compile-backend", "eager", "--build-dir", str(out / "build")]
    if _headers():
        argv += ["--tensorrt-include", _headers()]
    assert suite.main(argv) == 0
    return json.loads((out / "gpu_suite.json").read_text()), out


def test_dry_run_writes_json_and_png(dry_run):
    report, out = dry_run
    assert report["machine"]["device"] == "cpu" and report["seconds"] > 0
    assert any("dry run" in n for n in report["notes"])
    png = Path(report["png"]["path"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_dry_run_kernel_section(dry_run):
    report, _ = dry_run
    rows = report["kernel"]["rows"]
    assert {(r["stage"], r["dtype"]) for r in rows} == {(s, d) for s in (1, 2, 3) for d in ("fp32", "fp16")}
    for r in rows:
        assert r["status"] == "ok", r["status"]
        assert r["implementation"].startswith("host library")
        for key in ("kernel", "decomposition"):
            assert r[key]["median_ms"] > 0 and r[key]["gb_s"] > 0 and r[key]["reps"] >= 3
        assert r["traffic_bytes"] > 0 and r["speedup"] == pytest.approx(
            r["decomposition"]["median_ms"] / r["kernel"]["median_ms"])
        assert r["kernel_vs_decomposition"]["relative"] < (1e-5 if r["dtype"] == "fp32" else 2e-3)


def test_dry_run_model_section(dry_run):
    report, _ = dry_run
    model = report["model"]
    for name in ("fast", "fused"):
        assert model["agreement_fp32_batch1"][name]["relative"] < 1e-4
    rows = {(r["model"], r["dtype"], r["mode"], r["batch"]): r for r in model["rows"]}
    for impl in ("plain", "fast", "fused"):
        for batch in (2, 1):
            row = rows[(impl, "fp32", "eager", batch)]
            assert row["status"] == "ok" and row["img_s"] == pytest.approx(batch / (row["median_ms"] / 1000))
            assert rows[(impl, "fp32", "cudagraph", batch)]["status"] == "skipped: CUDA graphs need a CUDA device"
    compiled = [r for r in model["rows"] if r["mode"] == "compile"]  # on the CPU: one compile, of "fused"
    assert [(r["model"], r["batch"], r["status"]) for r in compiled] == [("fused", 2, "ok")], compiled
    assert compiled[0]["compile_s"] > 0 and compiled[0]["median_ms"] > 0


def test_dry_run_lifecycle_section(dry_run):
    report, _ = dry_run
    section = report["lifecycle"]
    if not _headers():
        assert section["status"] == "skipped" and "--tensorrt-include" in section["reason"]
        return
    assert section["status"] == "ok", section
    assert "--no-gpu" in section["command"] and section["summary"].endswith("(--no-gpu: kernel outputs not checked)")
    assert section["life_cycles"] > 0 and section["refusals"] and all(r["ok"] for r in section["refusals"])
    assert not section["cases"]  # no kernel output without a GPU


def test_lifecycle_output_is_parsed():
    output = "\n".join([
        "device: NVIDIA H100 80GB HBM3 (sm_90)",
        "PASS tiny/small-stage1@224 fp32 [B=8 H=56 W=56 nh=3 d=24 w=3 P=7x7] life cycle: createPlugin(kBUILD, ...",
        "PASS tiny/small-stage1@224 fp32 [B=8 H=56 W=56 nh=3 d=24 w=3 P=7x7] enqueue vs host library: "
        "max-abs 1.192e-07 relative 8.800e-07 (tolerance 1.0e-05)",
        "FAIL w5-d64 fp16 [B=2 H=8 W=8 nh=1 d=64 w=5 P=2x2] enqueue vs host library: "
        "max-abs 3.000e-02 relative 2.000e-03 (tolerance 9.8e-04)",
        "PASS refuse enqueue with pool_bias (nh, N, P+1): TransNeXtAggregatedAttention: enqueue: input 8 ...",
        "summary: 3 passed, 1 failed",
    ])
    parsed = suite.parse_lifecycle(output)
    assert parsed["device"] == "NVIDIA H100 80GB HBM3 (sm_90)" and parsed["summary"] == "summary: 3 passed, 1 failed"
    assert [(c["case"], c["precision"], c["ok"]) for c in parsed["cases"]] == [
        ("tiny/small-stage1@224", "fp32", True), ("w5-d64", "fp16", False)]
    assert parsed["cases"][0]["relative"] == pytest.approx(8.8e-7) and parsed["worst_relative"]["fp16"] == 2e-3
    assert parsed["refusals"][0]["check"] == "refuse enqueue with pool_bias (nh, N, P+1)" and parsed["life_cycles"] == 1
    assert len(parsed["failures"]) == 1


def test_bad_arguments_exit_with_a_message(capsys):
    with pytest.raises(SystemExit) as info:
        suite.main(["--device", "gpu"])
    assert info.value.code == 2
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            suite.main(["--device", "cuda"])
        assert "sees no CUDA device (use --device cpu for a dry run)" in capsys.readouterr().err


def test_help_runs_as_a_script():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_suite.py"), "--help"], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for option in ("--out", "--device", "--quick", "--budget", "--tensorrt-include", "--published-source"):
        assert option in proc.stdout


def test_simple_png_writes_a_valid_image(tmp_path):
    simple_png = _load("simple_png")
    path = simple_png.bar_chart(tmp_path / "bars.png", "title 1.5x", [("heading", [("a", 1.0), ("b", 2.5)], "x"),
                                                                         ("empty", [], "")])
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4:idat])[0]
    raw = zlib.decompress(data[idat + 4:idat + 4 + length])
    assert len(raw) == height * (1 + 3 * width)
    assert raw.count(bytes((36, 113, 163))) > 0  # bars drawn


@pytest.mark.skipif(not PUBLISHED_MIRROR.is_dir(), reason="no local mirror of the published TransNeXt code")
def test_published_model_is_imported_from_its_folder(tmp_path):
    folder = tmp_path / "TransNeXt" / "classification"
    folder.mkdir(parents=True)
    for name in ("transnext.py", "attention_native.py"):
        text = subprocess.run(["git", "-C", str(PUBLISHED_MIRROR), "show", f"HEAD:classification/{name}"],
                              capture_output=True, text=True, check=True).stdout
        (folder / name).write_text(text)
    published = _load("published_model")
    factory, notes = published.load_published(tmp_path / "TransNeXt", "micro")
    assert any("attention_native" in n for n in notes)
    had_timm = "timm" in sys.modules
    model = factory(img_size=64, pretrain_size=224).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    assert ("timm" in sys.modules) == had_timm  # stand-ins do not outlive the import
    with pytest.raises(FileNotFoundError, match="classification/transnext.py"):
        published.load_published(tmp_path, "micro")
