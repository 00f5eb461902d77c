"""bundle/runtime.py: loading a bundle on the best backend this machine has (the real probes; each
better backend that did not run says why), the predictor, and a process that only runs bundles
importing neither torch nor the model code. On the tiny synthetic bundle of tests/bundles.py; the
real bundle against PyTorch is tests/test_bundle_package.py."""


from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import textwrap

import numpy as np
import pytest
from bundles import CLASSES, SIDE, expected_logits, make_bundle, one_line, png_bytes, tarball_with
from test_engine_compatibility import ENGINE
from test_structure import MODULES, PACKAGE, module_level_imports

from transnext_deploy.artifacts import MANIFEST_FILE
from transnext_deploy.bundle import runtime

# What a process that only runs bundles must never import.
HEAVY = ("torch", f"{PACKAGE}.models", f"{PACKAGE}.export", f"{PACKAGE}.ops.aggregated_attention",
         f"{PACKAGE}.ops.fused_op", f"{PACKAGE}.bench")
# The modules of that path: loading and running a bundle, `predict`, `serve` and its Triton model.
RUNTIME_PATH = (PACKAGE, f"{PACKAGE}.bundle.runtime", f"{PACKAGE}.serving.server", f"{PACKAGE}.serving.triton_model",
                f"{PACKAGE}.serving.repository", f"{PACKAGE}.cli")


def test_the_runtime_path_imports_no_torch_at_module_level():
    """The closure of module-level imports (what `import x` executes) from each runtime module."""
    for start in RUNTIME_PATH:
        seen, stack = set(), [start]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            stack += [m for m in module_level_imports(name, MODULES[name]) if m in MODULES]
        external = {m for name in seen for m in module_level_imports(name, MODULES[name], external=True)}
        heavy = sorted(m for m in seen | external if m.startswith(HEAVY))
        assert not heavy, f"importing {start} imports {heavy}"


BLOCK_TORCH = textwrap.dedent("""
    import sys
    sys.modules["torch"] = None  # `import torch` raises ImportError from here on
""")


def test_load_predict_and_the_triton_model_run_without_torch(tmp_path):
    """In a process where torch cannot be imported: runtime.load and the predictor, the predict
    command end to end (decode, preprocess, onnxruntime, top-k, JSON), and the Triton model's import."""
    from PIL import Image

    bundle = make_bundle(tmp_path / "bundle")
    image = tmp_path / "red.png"
    Image.new("RGB", (20, 12), (200, 10, 10)).save(image)
    script = BLOCK_TORCH + textwrap.dedent(f"""
        from transnext_deploy.bundle import runtime
        from transnext_deploy.serving import triton_model  # noqa: F401 - what every Triton stub imports
        with runtime.load({str(bundle)!r}, device="cpu") as predictor:
            assert predictor.backend == "onnxruntime-cpu", predictor.backend
            (prediction,) = predictor.predict({str(image)!r}, top=2)
        from transnext_deploy.cli import app
        try:
            app(["predict", "--bundle", {str(bundle)!r}, {str(image)!r}, "--json", "--top", "2"])
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        heavy = sorted(m for m, module in sys.modules.items() if module is not None and m.startswith({HEAVY!r}))
        assert not heavy, heavy
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    (entry,) = json.loads(proc.stdout)
    assert entry["image"] == str(image) and entry["backend"] == "onnxruntime-cpu" and len(entry["top"]) == 2


# ------------------------------------------------------------------------------------------ loading


def test_directory_bundle_loads_and_predicts(tiny_bundle):
    batch = np.random.default_rng(1).standard_normal((3, 3, SIDE, SIDE)).astype(np.float32)
    with runtime.load(tiny_bundle, device="cpu") as predictor:
        assert predictor.backend == "onnxruntime-cpu"  # the tiny bundle has no custom-op graph
        assert predictor.input_size == (SIDE, SIDE)
        assert predictor.labels == [f"class {i}" for i in range(CLASSES)]
        logits = predictor.logits(batch)
        np.testing.assert_allclose(logits, expected_logits(batch), rtol=1e-5, atol=1e-6)
        assert predictor.skipped[-1] == "onnxruntime-cpu-custom: the bundle has no model.aa_plugin.onnx for 8x8"
        predictions = predictor.predict([b"" + png_bytes((200, 120, 40))], top=3)
    assert len(predictions) == 1 and len(predictions[0].top) == 3
    probabilities = [p for _, _, p in predictions[0].top]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1


def test_logits_refuse_wrong_shapes(tiny_bundle):
    with runtime.load(tiny_bundle, device="cpu") as predictor:
        with pytest.raises(runtime.InvalidArgumentError, match=r"\(batch, 3, 8, 8\)"):
            predictor.logits(np.zeros((1, 3, 9, 8), np.float32))


def test_backbone_bundle_refuses_predict_inone_line(tmp_path):
    with runtime.load(make_bundle(tmp_path / "b", mode="backbone"), device="cpu") as predictor:
        assert predictor.labels == []
        with pytest.raises(runtime.InvalidArgumentError) as info:
            predictor.predict([png_bytes((1, 2, 3))])
        assert "backbone" in one_line(info.value)


def test_tarball_bundle_is_extracted_privately_and_removed_on_close(tiny_bundle, tmp_path, private_tmp):
    tarball = tmp_path / "tiny.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tiny_bundle, arcname="tiny")
    with runtime.load(tarball, device="cpu") as predictor:
        assert len(list(private_tmp.iterdir())) == 1
        batch = np.ones((1, 3, SIDE, SIDE), np.float32)
        np.testing.assert_allclose(predictor.logits(batch), expected_logits(batch), rtol=1e-5, atol=1e-6)
    assert list(private_tmp.iterdir()) == []


# ------------------------------------------------------------------------------------------ backend choice


def test_auto_choice_names_what_this_machine_lacks(tiny_bundle):
    """The real probes: each better backend that did not run says why (here: no TensorRT, no GPU,
    a CPU build of onnxruntime). On a machine that has them, the choice moves up accordingly."""
    from transnext_deploy.backends.onnxrt import ort_cuda_problem
    from transnext_deploy.engine import tensorrt_status

    with runtime.load(tiny_bundle) as predictor:
        skipped = dict(line.split(": ", 1) for line in predictor.skipped)
        for name in ("tensorrt", "tensorrt-rtx"):  # the test bundle has no engine of either runtime
            assert f"the bundle has no {name} engine for 8x8" in skipped[name]
            found = tensorrt_status(need_plugin=False, runtime=name)
            if not found.available:
                assert found.reason in skipped[name]
        assert list(skipped)[:2] == ["tensorrt", "tensorrt-rtx"]
        cuda = ort_cuda_problem()
        if cuda is None:
            assert predictor.backend == "onnxruntime-cuda" and len(predictor.skipped) == 2
        else:
            assert predictor.backend == "onnxruntime-cpu"  # the tiny bundle has no custom-op graph
            assert skipped["onnxruntime-cuda"] == cuda
            assert skipped["onnxruntime-cpu-custom"] == "the bundle has no model.aa_plugin.onnx for 8x8"
        for line in predictor.skipped:
            assert "\n" not in line


def test_an_explicit_backend_that_cannot_run_isone_line(tiny_bundle):
    with pytest.raises(runtime.BackendUnavailable) as info:
        runtime.load(tiny_bundle, backend="tensorrt")
    assert one_line(info.value).startswith("no backend can run ")
    assert "tensorrt: " in str(info.value)
    with runtime.load(tiny_bundle, device="cpu") as predictor:
        assert predictor.skipped[:3] == ["tensorrt: not tried (device='cpu')", "tensorrt-rtx: not tried (device='cpu')",
                                         "onnxruntime-cuda: not tried (device='cpu')"]
    with runtime.load(tiny_bundle, backend="onnxruntime-cpu") as predictor:
        assert predictor.backend == "onnxruntime-cpu" and len(predictor.skipped) == 4
        assert all("not tried (backend='onnxruntime-cpu')" in line for line in predictor.skipped)
    for kwargs, fragment in (({"device": "gpu"}, "device must be one of auto, cpu, cuda, got 'gpu'"),
                             ({"device": "tensorrt"}, "(tensorrt is a backend: ask for it by name)"),
                             ({"backend": "torch-fast"}, "backend must be one of tensorrt, tensorrt-rtx, onnxruntime-cuda"),
                             ({"device": "cpu", "backend": "tensorrt"}, "backend tensorrt runs on cuda")):
        with pytest.raises(runtime.InvalidArgumentError) as info:
            runtime.load(tiny_bundle, **kwargs)
        assert fragment in one_line(info.value)


def test_a_tarball_is_not_left_extracted_when_no_backend_runs(tiny_bundle, tmp_path, private_tmp):
    tarball = tarball_with(tiny_bundle, tmp_path / "b.tar.gz", lambda tar: None)
    with pytest.raises(runtime.BackendUnavailable):
        runtime.load(tarball, backend="tensorrt")
    assert list(private_tmp.iterdir()) == []


def test_engine_without_metadata_for_the_installed_tensorrt_is_skipped_with_a_reason(tiny_bundle):
    """An engine listed in the manifest is only tried where TensorRT and a GPU are: here the reason
    is the real probe's (the engine file itself is never opened)."""
    from transnext_deploy.engine import tensorrt_status

    status = tensorrt_status(need_plugin=False)
    if status.available:
        pytest.skip("TensorRT and a GPU are here: the engine path is covered by tests/test_bundle_package.py's bundle")
    manifest = json.loads((tiny_bundle / MANIFEST_FILE).read_text())
    manifest["models"][0]["engines"] = [ENGINE]
    (tiny_bundle / MANIFEST_FILE).write_text(json.dumps(manifest))
    with runtime.load(tiny_bundle, device="auto") as predictor:
        assert predictor.skipped[0] == f"tensorrt: {status.reason}"  # not "no engine": the bundle lists one
    assert os.path.isdir(tiny_bundle)
