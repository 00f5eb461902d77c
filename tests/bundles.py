"""A tiny synthetic bundle (a 10-class ONNX graph over 8x8 images): no TransNeXt export needed, so
the bundle and runtime tests run in seconds. The real bundle (micro at 224 and 384, against
PyTorch) is tests/test_bundle_package.py."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from transnext_deploy.artifacts import INPUT_NAME, MANIFEST_FILE, STANDARD_FILE
from transnext_deploy.bundle.format import FORMAT, FORMAT_VERSION, LABELS_FILE, file_entries
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




def expected_logits(batch: np.ndarray) -> np.ndarray:
    return batch.mean(axis=(2, 3)) @ WEIGHTS


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text, text
    return text


def png_bytes(colour) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(out, "PNG")
    return out.getvalue()


def tarball_with(bundle: Path, path: Path, extra) -> Path:
    """The bundle as a tarball under bundle/, plus `extra(tar)`'s members."""
    with tarfile.open(path, "w:gz") as tar:
        tar.add(bundle, arcname="bundle")
        extra(tar)
    return path


def member(name: str, kind=tarfile.REGTYPE, data: bytes = b"", linkname: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.linkname = linkname
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)
