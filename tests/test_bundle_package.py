"""`package`, `predict` and `runtime.load` on one real bundle: micro at 224 (resize and center-crop)
and 384 (warp), seeded random weights (a perturbed checkpoint), packaged once per module with the
CLI. Predictions are compared with the PyTorch model on the same preprocessed inputs, on images
made here with Pillow (EXIF-rotated JPEG, palette PNG, RGBA, CMYK, grayscale, WebP) next to a
corrupt file. Checks and tarball safety on a tiny bundle: tests/test_bundle.py."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from helpers import perturbed_checkpoint
from transnext_deploy import create_model, runtime
from transnext_deploy.artifacts import GRAPH_FILES, MANIFEST_FILE, PLUGIN_FILE, STANDARD_FILE
from transnext_deploy.files import sha256sum
from transnext_deploy.bundle.format import LABELS_FILE, open_bundle, verify_directory
from transnext_deploy.models.checkpoint import load_checkpoint
from transnext_deploy.cli import app
from transnext_deploy.engine import tensorrt_status
from transnext_deploy.compare import FP32_TOLERANCE

ENV = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
RESOLUTIONS = (224, 384)
# Bundle (onnxruntime, either CPU graph) vs PyTorch float32 on the same input: the export's own
# per-element bound |a - b| <= atol + rtol * |b| (validation.FP32_TOLERANCE, 1e-4 and 1e-4).
TOL = FP32_TOLERANCE


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env=ENV)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """(bundle directory, checkpoint, manifest printed by --json, stderr, the .tar.gz): packaged once
    as a tarball by the command, extracted once (checked) for the tests that read a directory."""
    root = tmp_path_factory.mktemp("ship")
    ckpt = perturbed_checkpoint(root / "micro.pth", "micro", seed=5)
    tarball = root / "micro.tar.gz"
    result = invoke("package", "--size", "micro", "-r", "224", "-r", "384", "--checkpoint", str(ckpt),
                    "--output", str(tarball), "--json")
    assert result.exit_code == 0, result.output
    opened = open_bundle(tarball)
    yield opened.root, ckpt, json.loads(result.stdout), result.stderr, tarball
    opened.close()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """One image of every kind predict promises, and a corrupt one, in a directory."""
    root = tmp_path_factory.mktemp("images")
    g = np.random.default_rng(7)

    def photo(w, h):
        base = np.linspace(0, 255, w * h * 3).reshape(h, w, 3) + g.normal(0, 40, (h, w, 3))
        return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))

    exif = Image.Exif()
    exif[0x0112] = 6
    photo(320, 240).save(root / "a_rotated.jpg", "JPEG", quality=92, exif=exif.tobytes())
    photo(300, 300).quantize(64).save(root / "b_palette.png")
    rgba = photo(260, 200).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((260, 200)))
    rgba.save(root / "c_rgba.png")
    photo(240, 320).convert("CMYK").save(root / "d_cmyk.jpg", "JPEG", quality=92)
    photo(400, 256).convert("L").save(root / "e_gray.png")
    (root / "f_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is no JPEG")
    sub = root / "g_more"
    sub.mkdir()
    photo(500, 380).save(sub / "h.webp", "WEBP", quality=90)
    (root / "notes.txt").write_text("not an image suffix: ignored by the walk")
    return root


IMAGE_NAMES = ["a_rotated.jpg", "b_palette.png", "c_rgba.png", "d_cmyk.jpg", "e_gray.png", "f_corrupt.jpg",
               "g_more/h.webp"]


def pytorch_logits(ckpt: Path, side: int, batch: np.ndarray) -> np.ndarray:
    model = create_model("micro", img_size=side)
    load_checkpoint(model, ckpt)
    with torch.inference_mode():
        return model.eval()(torch.from_numpy(batch)).numpy()


def assert_close_to_pytorch(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    diff = np.abs(got - ref)
    bound = TOL.atol + TOL.rtol * np.abs(ref)
    max_abs, rel = float(diff.max()), float(diff.max() / np.abs(ref).max())
    assert (diff <= bound).all(), (f"{what}: max-abs {max_abs:.3e}, relative {rel:.3e}, worst "
                                   f"{float((diff / bound).max()):.2f}x of atol {TOL.atol} + rtol {TOL.rtol} * |b|")


# ------------------------------------------------------------------------------------------ package


def test_bundle_holds_everything_and_its_manifest_checks(shipped):
    bundle, ckpt, manifest, stderr, tarball = shipped
    assert manifest == json.loads((bundle / MANIFEST_FILE).read_text())
    assert verify_directory(bundle) == manifest  # every listed file there, with its sha256
    listed = set(manifest["files"])
    on_disk = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} - {MANIFEST_FILE}
    assert listed == on_disk
    assert manifest["variant"] == "micro" and manifest["mode"] == "classify"
    assert manifest["resolutions"] == [[224, 224], [384, 384]]
    assert manifest["weights"]["sha256"] == sha256sum(ckpt)
    assert manifest["input"]["name"] == "images" and manifest["input"]["layout"] == "NCHW"
    assert manifest["output"]["shape"] == ["batch", 1000]
    crop, warp = (m["preprocessing"] for m in manifest["models"])
    assert (crop["method"], crop["resize_shorter"], crop["center_crop"]) == (
        "resize_shorter_then_center_crop", 256, [224, 224])
    assert (warp["method"], warp["resize"]) == ("warp", [384, 384])
    for model in manifest["models"]:
        assert set(model["graphs"]) == set(GRAPH_FILES)
        assert model["validation"]["passed"] is True
    labels = (bundle / LABELS_FILE).read_text().splitlines()
    assert manifest["labels"]["count"] == len(labels) == 1000
    assert labels[0] == "tench" and labels[207] == "golden retriever" and labels[999] == "toilet tissue"
    assert (bundle / "plugins" / "CMakeLists.txt").is_file()
    assert (bundle / "plugins" / "aggregated_attention" / "aggregatedAttentionPlugin.cpp").is_file()
    assert not [p for p in (bundle / "plugins").rglob("*") if p.suffix in (".so", ".o", ".a")]
    host = manifest["plugin"]["libraries"].get("host")
    if host is not None:
        assert host["sha256"] == sha256sum(bundle / host["file"])
    else:
        assert "host library not built" in manifest["plugin"]["skipped"]["host"]
    status = tensorrt_status(need_plugin=False)
    for model in manifest["models"]:
        if not manifest["engines_skipped"]:  # TensorRT, a GPU and a plugin library: the engines and their facts
            assert status.available
            assert {e["precision"] for e in model["engines"]} == {"fp16", "fp32"}
            for engine in model["engines"]:
                assert engine["plugin_library"]["sha256"] == manifest["plugin"]["libraries"]["plugin"]["sha256"]
                assert {"runtime", "runtime_version", "compute_capabilities", "version_compatible",
                        "hardware_compatibility", "graph", "plugin_layers"} <= set(engine)
        else:
            assert model["engines"] == []
    if not status.available:
        assert status.reason in manifest["engines_skipped"]
    if manifest["engines_skipped"]:
        assert manifest["engines_skipped"].startswith("TensorRT engines skipped: ")
        assert manifest["engines_skipped"] in stderr
    assert "tensorrt" in manifest["tool_versions"] and "onnxruntime" in manifest["tool_versions"]
    assert sorted(p.name for p in tarball.parent.iterdir()) == ["micro.pth", "micro.tar.gz"], "staging left behind"


def test_package_refuses_bad_input_in_one_line_and_writes_nothing(tmp_path):
    for args, fragment in [
        (("--size", "micro", "-r", "10"), "unsupported resolution 10x10"),
        (("--size", "nano",), "nano"),
        (("--size", "micro", "--engines", "int8"), "precisions must be among fp32, fp16, got int8"),
        (("--size", "micro", "--hardware-compatibility", "any"), "hardware compatibility must be one of"),
    ]:
        result = invoke("package", *args, "--output", str(tmp_path / "out.tar.gz"))
        assert result.exit_code == 1, result.output
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []
    if not tensorrt_status(need_plugin=False).available:
        result = invoke("package", "--size", "micro", "--engines", "fp16", "--output", str(tmp_path / "b"))
        assert result.exit_code == 1 and "cannot build the fp16 engines asked for" in result.stderr
        assert list(tmp_path.iterdir()) == []
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("keep me")
    result = invoke("package", "--size", "micro", "--output", str(tmp_path / "precious"))
    assert result.exit_code == 1 and "not a bundle: not overwriting it" in result.stderr
    assert (tmp_path / "precious" / "thesis.tex").read_text() == "keep me"


def test_a_failure_after_export_leaves_nothing(tmp_path, monkeypatch):
    """Everything is staged next to the output and removed when a step fails (here: the export,
    after it wrote part of its output)."""
    import transnext_deploy.export as export_module

    def failing_export(options, progress=None, engines=None):
        Path(options.output_dir, "transnext_micro_classify_64x64").mkdir(parents=True)
        Path(options.output_dir, "transnext_micro_classify_64x64", "model.onnx").write_bytes(b"half")
        raise export_module.ExportError("model.onnx differs from PyTorch (simulated)")

    monkeypatch.setattr(export_module, "export", failing_export)
    out = tmp_path / "out"
    for name in ("b.tar.gz", "b"):
        result = invoke("package", "--size", "micro", "-r", "64", "--output", str(out / name))
        assert result.exit_code == 1 and "differs from PyTorch (simulated)" in result.stderr, result.output
        assert list(out.iterdir()) == []


def test_the_tarball_loads_directly_and_its_extraction_goes_on_close(shipped):
    bundle, _, manifest, _, tarball = shipped
    with tarfile.open(tarball) as tar:
        members = tar.getmembers()
    assert all(m.name == "micro" or m.name.startswith("micro/") for m in members)
    assert all(m.uid == 0 and m.uname == "" for m in members)
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    with runtime.load(tarball, device="cpu") as predictor:
        extracted = predictor._opened.root
        assert extracted.is_dir() and extracted != bundle
        from_tarball = predictor.logits(x)
    assert not extracted.exists()
    with runtime.load(bundle, device="cpu") as predictor:
        np.testing.assert_allclose(predictor.logits(x), from_tarball, rtol=0, atol=1e-6)  # the same files


# ------------------------------------------------------------------------------------------ runtime


@pytest.mark.parametrize("side", RESOLUTIONS)
def test_runtime_matches_pytorch(shipped, images, side):
    bundle, ckpt, manifest, _, _ = shipped
    paths = [images / n for n in IMAGE_NAMES if "corrupt" not in n]
    if side >= 384:  # PyTorch eager at 384 is the slow part: three kinds (rotated JPEG, CMYK, WebP) suffice
        paths = [images / n for n in ("a_rotated.jpg", "d_cmyk.jpg", "g_more/h.webp")]
    with runtime.load(bundle, device="cpu", resolution=side) as predictor:
        assert predictor.input_size == (side, side)
        assert predictor.preprocessing["method"] == ("warp" if side >= 384 else "resize_shorter_then_center_crop")
        batch = np.stack([predictor.preprocess(p) for p in paths])
        assert batch.shape == (len(paths), 3, side, side)
        got = predictor.logits(batch)
        predictions = predictor.predict(paths, top=5)
    ref = pytorch_logits(ckpt, side, batch)
    assert_close_to_pytorch(got, ref, f"micro@{side}")
    ref_top = np.argsort(-ref, axis=1)[:, :5]
    ref_prob = torch.softmax(torch.from_numpy(ref).double(), dim=1).numpy()
    for prediction, indices, probs in zip(predictions, ref_top, ref_prob):
        assert [i for i, _, _ in prediction.top] == indices.tolist()
        np.testing.assert_allclose([p for _, _, p in prediction.top], probs[indices], rtol=1e-3)
    assert len({tuple(i for i, _, _ in p.top) for p in predictions}) > 1  # the images are told apart


def test_cpu_backend_uses_the_custom_op_graph_when_it_can_and_the_standard_graph_otherwise(shipped, images,
                                                                                           monkeypatch):
    from transnext_deploy.backends import onnxrt

    bundle, ckpt, _, _, _ = shipped
    x = None
    with runtime.load(bundle, device="cpu") as predictor:
        x = np.stack([predictor.preprocess(images / "b_palette.png"), predictor.preprocess(images / "e_gray.png")])
        custom_available = onnxrt.host_library_problem() is None
        if custom_available:
            assert predictor.backend == "onnxruntime-cpu-custom"
            assert predictor.notes[0].startswith(f"{PLUGIN_FILE}: onnxruntime CPU, the custom-op graph (aggregated "
                                                 "attention in the plugin's host library)")
        fused = predictor.logits(x)
    monkeypatch.setattr(onnxrt, "host_library_problem", lambda: "the host library is not available: test")
    with runtime.load(bundle, device="cpu") as predictor:
        assert predictor.backend == "onnxruntime-cpu"
        assert predictor.notes[0] == f"{STANDARD_FILE}: onnxruntime CPU, standard ONNX ops"
        assert predictor.skipped[-1] == "onnxruntime-cpu-custom: the host library is not available: test"
        standard = predictor.logits(x)
    ref = pytorch_logits(ckpt, 224, x)
    assert_close_to_pytorch(fused, ref, "CPU backend, first choice")
    assert_close_to_pytorch(standard, ref, "CPU backend, standard graph")


def test_predict_chunks_any_batch_size(shipped, images):
    bundle, _, _, _, _ = shipped
    paths = [images / "b_palette.png"] * 3 + [images / "e_gray.png"] * 2
    with runtime.load(bundle, device="cpu") as predictor:
        predictor.max_batch = 2  # three calls: 2 + 2 + 1
        chunked = predictor.predict(paths, top=3)
        whole = predictor.logits(np.stack([predictor.preprocess(p) for p in paths]))
        single = predictor.predict(str(paths[0]), top=3)
    assert [p.top for p in chunked[:3]] == [chunked[0].top] * 3 and chunked[3].top == chunked[4].top
    assert [i for i, _, _ in chunked[0].top] == np.argsort(-whole[0])[:3].tolist()
    assert len(single) == 1 and [i for i, _, _ in single[0].top] == [i for i, _, _ in chunked[0].top]


@pytest.mark.skipif(not tensorrt_status(need_plugin=False).available, reason="needs TensorRT and a CUDA GPU")
def test_tensorrt_engine_is_chosen_and_matches_pytorch(shipped, images):
    from transnext_deploy.compare import ENGINE_TOLERANCES

    bundle, ckpt, manifest, _, _ = shipped
    if manifest["engines_skipped"]:
        pytest.skip(manifest["engines_skipped"])  # e.g. neither nvcc nor a built plugin library here
    with runtime.load(bundle) as predictor:
        assert predictor.backend == "tensorrt" and predictor.skipped == []
        x = np.stack([predictor.preprocess(images / "b_palette.png")] * 3)
        got = predictor.logits(x)
        precision = "fp16" if ".fp16." in predictor.notes[0] else "fp32"
    ref = pytorch_logits(ckpt, 224, x)
    tol = ENGINE_TOLERANCES[precision]
    assert (np.abs(got - ref) <= tol.atol + tol.rtol * np.abs(ref)).all()


# ------------------------------------------------------------------------------------------ predict


def test_predict_json_walks_directories_in_order_and_reports_the_corrupt_file(shipped, images):
    bundle, _, _, _, _ = shipped
    result = invoke("predict", "--bundle", str(bundle), str(images), "--json", "--top", "3", "--batch", "4")
    assert result.exit_code == 1, result.output  # one input failed
    entries = json.loads(result.stdout)
    assert [e["image"] for e in entries] == [str(images / n) for n in IMAGE_NAMES]
    corrupt = entries[IMAGE_NAMES.index("f_corrupt.jpg")]
    assert set(corrupt) == {"image", "error"} and "f_corrupt.jpg" in corrupt["error"]
    assert "\n" not in corrupt["error"]
    good = [e for e in entries if "error" not in e]
    assert len(good) == 6
    with runtime.load(bundle) as predictor:
        api = predictor.predict([e["image"] for e in good], top=3)
        backend = predictor.backend
    for entry, prediction in zip(good, api):
        assert entry["backend"] == backend
        assert [t["index"] for t in entry["top"]] == [i for i, _, _ in prediction.top]
        assert [t["label"] for t in entry["top"]] == [label for _, label, _ in prediction.top]
        np.testing.assert_allclose([t["probability"] for t in entry["top"]], [p for _, _, p in prediction.top],
                                   rtol=1e-5)
    assert f"backend: {backend}" in result.stderr and "1 of 7 inputs could not be read" in result.stderr


def test_predict_keeps_the_given_order_and_prints_text(shipped, images):
    bundle, _, _, _, _ = shipped
    given = [str(images / "e_gray.png"), str(images / "missing.png"), str(images / "a_rotated.jpg")]
    result = invoke("predict", "--bundle", str(bundle), *given, "--json", "-r", "384")
    entries = json.loads(result.stdout)
    assert [e["image"] for e in entries] == given and "no such file" in entries[1]["error"]
    assert all(len(e["top"]) == 5 for e in (entries[0], entries[2]))
    text = invoke("predict", "--bundle", str(bundle), given[0], "--top", "2", "-r", "384")
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0] == given[0] and len(lines) == 3
    for line, top in zip(lines[1:], entries[0]["top"]):
        percent, index, label = line.split(maxsplit=2)
        assert (int(index), label) == (top["index"], top["label"])
        assert percent == f"{top['probability']:.2%}"
    assert "error:" not in text.stderr


def test_predict_refuses_a_tampered_bundle_in_one_line(shipped, images, tmp_path):
    bundle, _, _, _, _ = shipped
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in (MANIFEST_FILE, LABELS_FILE):
        (copy / name).write_bytes((bundle / name).read_bytes())
    result = invoke("predict", "--bundle", str(copy), str(images / "e_gray.png"))
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "is missing" in lines[0]



@pytest.mark.parametrize("args, message", [(["--batch", "0"], "batch must be a whole number >= 1, got 0"),
                                           (["--top", "0"], "top must be a whole number >= 1, got 0")])
def test_predict_checks_its_counts_before_opening_the_bundle(tmp_path, args, message):
    """A bad count is said before the bundle is read (a bundle that does not exist is not even named)."""
    image = tmp_path / "a.png"
    image.write_bytes(b"not read")
    result = invoke("predict", "--bundle", str(tmp_path / "no-such-bundle"), str(image), *args)
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert lines == [f"error: {message}"], result.stderr


# ------------------------------------------------------------------------------------------ TensorRT-RTX engines


@pytest.mark.slow
def test_package_puts_tensorrt_rtx_engines_in_a_bundle_and_the_runtime_says_why_not_here(tmp_path, monkeypatch):
    """`package --runtime tensorrt-rtx --compute-capability 86` on a machine without a GPU: the plugin
    built for sm_86, fp16 and fp32 engines built ahead of time with it, their facts in the manifest.
    `runtime.load` then runs them only on a GPU they were built for; here it falls back and says why."""

    from helpers import rtx_plugin_build_problem, tensorrt_header_dirs

    from transnext_deploy.engine.tensorrt import gpu_problem
    from transnext_deploy.machine import cuda_devices

    problem = rtx_plugin_build_problem()
    if problem:
        pytest.skip(problem)
    monkeypatch.setenv("TENSORRT_INCLUDE_DIR", str(tensorrt_header_dirs()[-1]))
    monkeypatch.delenv("TRANSNEXT_AA_PLUGIN", raising=False)
    bundle = tmp_path / "micro-rtx"
    result = invoke("package", "--size", "micro", "-r", "64", "--runtime", "tensorrt-rtx", "--compute-capability", "86",
                    "--engines", "fp16,fp32", "--cuda-arch", "86", "--output", str(bundle), "--json")
    assert result.exit_code == 0, result.output
    manifest = verify_directory(bundle)  # every file there with its sha256, the engines included
    (model,) = manifest["models"]
    engines = model["engines"]
    assert [e["precision"] for e in engines] == ["fp16", "fp32"]
    for engine in engines:
        assert engine["file"].endswith(f".{engine['precision']}.rtx.engine") and (bundle / engine["file"]).is_file()
        assert engine["runtime"] == "tensorrt-rtx" and engine["compute_capabilities"] == ["86"]
        assert engine["built_ahead_of_time"] is True and engine["plugin_layers"] == 19
        assert engine["plugin_library"] == {"file": "lib/libtransnext_aa_plugin_dynamic.so",
                                            "sha256": manifest["plugin"]["libraries"]["plugin_dynamic"]["sha256"]}
        assert not (bundle / (engine["file"] + ".json")).exists()  # folded into the one manifest
    with runtime.load(bundle) as predictor:
        skipped = dict(line.split(": ", 1) for line in predictor.skipped)
        problem = gpu_problem("tensorrt-rtx")
        devices, _ = cuda_devices()
        if problem is None and devices[0].sm == "86":
            assert predictor.backend == "tensorrt-rtx"
        else:  # no GPU, one TensorRT-RTX does not list (Hopper), or another one it lists
            assert (problem or "built for sm_86") in skipped["tensorrt-rtx"], skipped
            assert predictor.backend != "tensorrt-rtx"
