"""Bundle checks (checksums, unsafe tarballs) and the runtime's backend choice, on a tiny synthetic
bundle (a 10-class ONNX graph): no TransNeXt export needed, so these run in seconds.
The real bundle (micro at 224 and 384, against PyTorch) is tests/test_ship.py."""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from transnext_deploy.bundle import runtime
from transnext_deploy.artifacts import INPUT_NAME, MANIFEST_FILE, STANDARD_FILE
from transnext_deploy.bundle.format import FORMAT, FORMAT_VERSION, LABELS_FILE, BundleError, file_entries, open_bundle
from transnext_deploy.bundle.images import preprocessing_spec

SIDE = 8
CLASSES = 10


def _tiny_graph(weights: np.ndarray) -> onnx.ModelProto:
    """images (batch, 3, 8, 8) -> mean over H, W -> (batch, 3) @ W -> logits (batch, 10)."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", [INPUT_NAME], ["pooled"], axes=[2, 3], keepdims=0),
         helper.make_node("MatMul", ["pooled", "W"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        [helper.make_tensor("W", TensorProto.FLOAT, weights.shape, weights.flatten().tolist())])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


WEIGHTS = np.random.default_rng(0).standard_normal((3, CLASSES)).astype(np.float32)


def make_bundle(root: Path, mode: str = "classify") -> Path:
    model_dir = root / "models" / f"{SIDE}x{SIDE}"
    model_dir.mkdir(parents=True)
    onnx.save(_tiny_graph(WEIGHTS), str(model_dir / STANDARD_FILE))
    labels = None
    if mode == "classify":
        (root / LABELS_FILE).write_text("".join(f"class {i}\n" for i in range(CLASSES)))
        labels = {"file": LABELS_FILE, "count": CLASSES, "source": "test"}
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "variant": "tiny-test", "mode": mode,
        "labels": labels, "engines_skipped": "test bundle",
        "models": [{"name": f"{SIDE}x{SIDE}", "resolution": [SIDE, SIDE], "directory": f"models/{SIDE}x{SIDE}",
                    "graphs": {STANDARD_FILE: f"models/{SIDE}x{SIDE}/{STANDARD_FILE}"},
                    "preprocessing": preprocessing_spec(SIDE, SIDE), "engines": []}],
        "files": file_entries(root),
    }
    (root / MANIFEST_FILE).write_text(json.dumps(manifest))
    return root


@pytest.fixture()
def tiny_bundle(tmp_path) -> Path:
    return make_bundle(tmp_path / "bundle")


@pytest.fixture()
def private_tmp(tmp_path, monkeypatch) -> Path:
    """tempfile's directory, watched: an extraction would leave something here."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def _expected_logits(batch: np.ndarray) -> np.ndarray:
    return batch.mean(axis=(2, 3)) @ WEIGHTS


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text, text
    return text


# ------------------------------------------------------------------------------------------ loading


def test_directory_bundle_loads_and_predicts(tiny_bundle):
    batch = np.random.default_rng(1).standard_normal((3, 3, SIDE, SIDE)).astype(np.float32)
    with runtime.load(tiny_bundle, device="cpu") as predictor:
        assert predictor.backend == "onnxruntime-cpu"  # the tiny bundle has no custom-op graph
        assert predictor.input_size == (SIDE, SIDE)
        assert predictor.labels == [f"class {i}" for i in range(CLASSES)]
        logits = predictor.logits(batch)
        np.testing.assert_allclose(logits, _expected_logits(batch), rtol=1e-5, atol=1e-6)
        assert predictor.skipped[-1] == "onnxruntime-cpu-custom: the bundle has no model.aa_plugin.onnx for 8x8"
        predictions = predictor.predict([b"" + _png_bytes((200, 120, 40))], top=3)
    assert len(predictions) == 1 and len(predictions[0].top) == 3
    probabilities = [p for _, _, p in predictions[0].top]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1


def _png_bytes(colour) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(out, "PNG")
    return out.getvalue()


def test_logits_refuse_wrong_shapes(tiny_bundle):
    with runtime.load(tiny_bundle, device="cpu") as predictor:
        with pytest.raises(runtime.InvalidArgumentError, match=r"\(batch, 3, 8, 8\)"):
            predictor.logits(np.zeros((1, 3, 9, 8), np.float32))


def test_backbone_bundle_refuses_predict_in_one_line(tmp_path):
    with runtime.load(make_bundle(tmp_path / "b", mode="backbone"), device="cpu") as predictor:
        assert predictor.labels == []
        with pytest.raises(runtime.InvalidArgumentError) as info:
            predictor.predict([_png_bytes((1, 2, 3))])
        assert "backbone" in _one_line(info.value)


def test_tarball_bundle_is_extracted_privately_and_removed_on_close(tiny_bundle, tmp_path, private_tmp):
    tarball = tmp_path / "tiny.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tiny_bundle, arcname="tiny")
    with runtime.load(tarball, device="cpu") as predictor:
        assert len(list(private_tmp.iterdir())) == 1
        batch = np.ones((1, 3, SIDE, SIDE), np.float32)
        np.testing.assert_allclose(predictor.logits(batch), _expected_logits(batch), rtol=1e-5, atol=1e-6)
    assert list(private_tmp.iterdir()) == []


# ------------------------------------------------------------------------------------------ refusals


def test_a_changed_file_is_refused(tiny_bundle):
    (tiny_bundle / LABELS_FILE).write_text("tampered\n" * CLASSES)
    with pytest.raises(BundleError) as info:
        runtime.load(tiny_bundle)
    assert "labels.txt does not match its sha256" in _one_line(info.value)


def test_a_missing_file_is_refused(tiny_bundle):
    (tiny_bundle / "models" / f"{SIDE}x{SIDE}" / STANDARD_FILE).unlink()
    with pytest.raises(BundleError, match="model.onnx is missing"):
        runtime.load(tiny_bundle)


def test_a_listed_file_replaced_by_a_link_leaving_the_bundle_is_refused(tiny_bundle, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_bytes((tiny_bundle / LABELS_FILE).read_bytes())  # same bytes: only the link is wrong
    (tiny_bundle / LABELS_FILE).unlink()
    (tiny_bundle / LABELS_FILE).symlink_to(outside)
    with pytest.raises(BundleError, match="is a link"):
        runtime.load(tiny_bundle)


def test_a_manifest_path_leaving_the_bundle_is_refused(tiny_bundle):
    manifest = json.loads((tiny_bundle / MANIFEST_FILE).read_text())
    manifest["files"]["../escape"] = {"sha256": "0" * 64, "bytes": 0}
    (tiny_bundle / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"leaves the bundle"):
        runtime.load(tiny_bundle)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        runtime.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no manifest.json"):
        runtime.load(tmp_path / "empty")
    (tmp_path / "junk.tar.gz").write_bytes(b"junk")
    with pytest.raises(BundleError, match="not a bundle directory or a readable tarball"):
        runtime.load(tmp_path / "junk.tar.gz")


def _tarball_with(bundle: Path, path: Path, extra) -> Path:
    """The bundle as a tarball under bundle/, plus `extra(tar)`'s members."""
    with tarfile.open(path, "w:gz") as tar:
        tar.add(bundle, arcname="bundle")
        extra(tar)
    return path


def _member(name: str, kind=tarfile.REGTYPE, data: bytes = b"", linkname: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.linkname = linkname
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


UNSAFE = {
    "absolute path": (_member("/tmp/evil.txt", data=b"x"), "absolute path"),
    "dot-dot": (_member("bundle/../evil.txt", data=b"x"), "leaves the bundle"),
    "symlink leaving": (_member("bundle/lib/evil", tarfile.SYMTYPE, linkname="../../etc/passwd"), "points outside"),
    "absolute symlink": (_member("bundle/evil", tarfile.SYMTYPE, linkname="/etc/passwd"), "points outside"),
    "hard link leaving": (_member("bundle/evil", tarfile.LNKTYPE, linkname="../outside"), "points outside"),
    "character device": (_member("bundle/tty", tarfile.CHRTYPE), "device or pipe"),
    "block device": (_member("bundle/disk", tarfile.BLKTYPE), "device or pipe"),
    "fifo": (_member("bundle/pipe", tarfile.FIFOTYPE), "device or pipe"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_tarball_members_are_refused_before_anything_is_extracted(case, tiny_bundle, tmp_path, private_tmp):
    (info, data), expected = UNSAFE[case]
    tarball = _tarball_with(tiny_bundle, tmp_path / "b.tar.gz", lambda tar: tar.addfile(info, data))
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(BundleError) as info_:
        runtime.load(tarball)
    assert expected in _one_line(info_.value)
    assert list(private_tmp.iterdir()) == []  # nothing extracted
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not Path("/tmp/evil.txt").exists()


def test_a_tarball_with_a_changed_file_is_refused_before_extraction(tiny_bundle, tmp_path, private_tmp):
    (tiny_bundle / LABELS_FILE).write_text("tampered\n")
    tarball = _tarball_with(tiny_bundle, tmp_path / "b.tar.gz", lambda tar: None)
    with pytest.raises(BundleError) as info:
        runtime.load(tarball)
    assert "labels.txt does not match its sha256" in _one_line(info.value)
    assert list(private_tmp.iterdir()) == []


def test_links_inside_the_bundle_are_allowed(tiny_bundle, tmp_path, private_tmp):
    link = _member("bundle/labels-link.txt", tarfile.SYMTYPE, linkname=LABELS_FILE)
    tarball = _tarball_with(tiny_bundle, tmp_path / "b.tar.gz", lambda tar: tar.addfile(*link))
    opened = open_bundle(tarball)
    try:
        assert (opened.root / "labels-link.txt").read_text().startswith("class 0")
    finally:
        opened.close()
    assert list(private_tmp.iterdir()) == []


# ------------------------------------------------------------------------------------------ backend choice


def test_auto_choice_names_what_this_machine_lacks(tiny_bundle):
    """The real probes: each better backend that did not run says why (here: no TensorRT, no GPU,
    a CPU build of onnxruntime). On a machine that has them, the choice moves up accordingly."""
    from transnext_deploy.backends.onnxrt import ort_cuda_problem
    from transnext_deploy.engine import tensorrt_status

    with runtime.load(tiny_bundle) as predictor:
        trt = tensorrt_status(need_plugin=False)
        assert predictor.skipped[0].startswith("tensorrt: ")
        assert "the bundle has no TensorRT engine for 8x8" in predictor.skipped[0]  # the test bundle has none
        if not trt.available:
            assert trt.reason in predictor.skipped[0]
        cuda = ort_cuda_problem()
        if cuda is None:
            assert predictor.backend == "onnxruntime-cuda" and len(predictor.skipped) == 1
        else:
            assert predictor.backend == "onnxruntime-cpu"  # the tiny bundle has no custom-op graph
            assert predictor.skipped[1] == f"onnxruntime-cuda: {cuda}"
            assert predictor.skipped[2] == "onnxruntime-cpu-custom: the bundle has no model.aa_plugin.onnx for 8x8"
        for line in predictor.skipped:
            assert "\n" not in line


def test_an_explicit_backend_that_cannot_run_is_one_line(tiny_bundle):
    with pytest.raises(runtime.BackendUnavailable) as info:
        runtime.load(tiny_bundle, backend="tensorrt")
    assert _one_line(info.value).startswith("no backend can run ")
    assert "tensorrt: " in str(info.value)
    with runtime.load(tiny_bundle, device="cpu") as predictor:
        assert predictor.skipped[:2] == ["tensorrt: not tried (device='cpu')",
                                         "onnxruntime-cuda: not tried (device='cpu')"]
    with runtime.load(tiny_bundle, backend="onnxruntime-cpu") as predictor:
        assert predictor.backend == "onnxruntime-cpu" and len(predictor.skipped) == 3
        assert all("not tried (backend='onnxruntime-cpu')" in line for line in predictor.skipped)
    for kwargs, fragment in (({"device": "gpu"}, "device must be one of auto, cpu, cuda, got 'gpu'"),
                             ({"device": "tensorrt"}, "(tensorrt is a backend: ask for it by name)"),
                             ({"backend": "torch-fast"}, "backend must be one of tensorrt, onnxruntime-cuda"),
                             ({"device": "cpu", "backend": "tensorrt"}, "backend tensorrt runs on cuda")):
        with pytest.raises(runtime.InvalidArgumentError) as info:
            runtime.load(tiny_bundle, **kwargs)
        assert fragment in _one_line(info.value)


def test_a_tarball_is_not_left_extracted_when_no_backend_runs(tiny_bundle, tmp_path, private_tmp):
    tarball = _tarball_with(tiny_bundle, tmp_path / "b.tar.gz", lambda tar: None)
    with pytest.raises(runtime.BackendUnavailable):
        runtime.load(tarball, backend="tensorrt")
    assert list(private_tmp.iterdir()) == []


ENGINE = {"file": "models/224x224/model.aa_plugin.fp16.engine", "precision": "fp16", "tensorrt_version": "10.3.0.26",
          "compute_capability": "8.7", "sm": "87", "version_compatible": False, "hardware_compatibility": "none",
          "plugin_library": {"file": "lib/libtransnext_aa_plugin.so", "sha256": "a" * 64}}


@pytest.mark.parametrize("changes, trt, cc, plugins, expected", [
    ({}, "10.3.0.26", (8, 7), {"a" * 64}, None),
    ({}, "10.3.0", (8, 7), {"a" * 64}, None),
    ({}, "10.13.3.9", (8, 7), {"a" * 64}, "built by TensorRT 10.3.0.26, this is TensorRT 10.13.3.9"),
    ({"version_compatible": True}, "10.13.3.9", (8, 7), {"a" * 64}, None),
    ({"version_compatible": True}, "10.2.0", (8, 7), {"a" * 64}, "version-compatible from TensorRT 10.3.0.26 on"),
    ({"version_compatible": True}, "11.1.0", (8, 7), {"a" * 64}, "within major version 10"),
    ({}, "10.3.0.26", (8, 6), {"a" * 64}, "built for compute capability 8.7, this GPU is 8.6"),
    ({"hardware_compatibility": "same_compute_capability"}, "10.3.0.26", (9, 0), {"a" * 64},
     "built for compute capability 8.7"),
    ({"hardware_compatibility": "ampere_plus"}, "10.3.0.26", (9, 0), {"a" * 64}, None),
    ({"hardware_compatibility": "ampere_plus"}, "10.3.0.26", (7, 5), {"a" * 64}, "needs an Ampere or later GPU"),
    ({}, "10.3.0.26", (8, 7), {"b" * 64}, "no plugin library with the sha256 the engine was built against"),
    ({}, "10.3.0.26", (8, 7), set(), "no plugin library"),
])
def test_engine_compatibility_rules(changes, trt, cc, plugins, expected):
    from transnext_deploy.engine.compatibility import engine_problem

    problem = engine_problem({**ENGINE, **changes}, trt, cc, plugins)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem, problem
        assert "\n" not in problem


def test_engine_without_metadata_for_the_installed_tensorrt_is_skipped_with_a_reason(tiny_bundle):
    """An engine listed in the manifest is only tried where TensorRT and a GPU are: here the reason
    is the real probe's (the engine file itself is never opened)."""
    from transnext_deploy.engine import tensorrt_status

    status = tensorrt_status(need_plugin=False)
    if status.available:
        pytest.skip("TensorRT and a GPU are here: the engine path is covered by tests/test_ship.py's bundle")
    manifest = json.loads((tiny_bundle / MANIFEST_FILE).read_text())
    manifest["models"][0]["engines"] = [ENGINE]
    (tiny_bundle / MANIFEST_FILE).write_text(json.dumps(manifest))
    with runtime.load(tiny_bundle, device="auto") as predictor:
        assert predictor.skipped[0] == f"tensorrt: {status.reason}"  # not "no engine": the bundle lists one
    assert os.path.isdir(tiny_bundle)
