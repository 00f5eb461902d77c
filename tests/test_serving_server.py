"""`transnext-deploy serve` (a real Triton Inference Server) and `package --triton` (issue #12).

One micro bundle at 64x64 is packaged once for the module through the CLI, with `--triton` (so the
CLI writes the model repository too), and one `transnext-deploy serve` process runs on free loopback
ports for the whole module; the last test stops it with SIGTERM. Requests go through tritonclient's
HTTP and gRPC clients and are compared with `runtime.load(...).predict` on the same images.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="serving needs nvidia-pytriton (the test extra installs it)")
httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from google.protobuf import text_format  # noqa: E402  (tritonclient[grpc] brings protobuf)
from PIL import Image  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from transnext_deploy.bundle import runtime  # noqa: E402
from transnext_deploy.bundle.format import file_entries  # noqa: E402
from transnext_deploy.cli import app  # noqa: E402
from transnext_deploy.serving.server import INSTALL_HINT, ServeError, TritonServer, triton_dist  # noqa: E402
from transnext_deploy.artifacts import TENSOR_MODEL as MODEL_NAME  # noqa: E402
from transnext_deploy.serving.repository import RepositoryError, write_model_repository  # noqa: E402

# The server runs the same onnxruntime graph as predict, but on batches the dynamic batcher forms, so
# a row may see other kernels' summation orders: probabilities (~1e-3 each for these random weights)
# must agree to 1e-6 absolute, logits to 1e-4 absolute.
PROB_ATOL = 1e-6
LOGIT_ATOL = 1e-4
SIZE = 64
TOP = 5
MAX_BATCH = 8
CLIENTS, REQUESTS_PER_CLIENT = 4, 8

try:
    triton_dist()
    _NO_SERVER = None
except Exception as exc:  # noqa: BLE001 - any reason the binary cannot be used is the skip reason
    _NO_SERVER = str(exc)
needs_server = pytest.mark.skipif(_NO_SERVER is not None, reason=f"no Triton server: {_NO_SERVER}")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _port_free(port: int) -> bool:
    """Nobody listens there and a new server could (SO_REUSEADDR, as servers bind: the clients' closed
    connections may still sit in TIME_WAIT on that port)."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
            return True
        except OSError:
            return False


def _encoded(seed: int, fmt: str, mode: str = "RGB", size: tuple[int, int] = (96, 80)) -> bytes:
    rgb = (np.random.RandomState(seed).rand(size[1], size[0], 3) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).convert(mode).save(buf, fmt)
    return buf.getvalue()


IMAGES = [_encoded(0, "PNG"), _encoded(1, "JPEG"), _encoded(2, "PNG", "L", (64, 120)),
          _encoded(3, "PNG", "RGBA", (200, 70)), _encoded(4, "WEBP")]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    """A micro classification bundle at 64x64 and its Triton repository, both written by `package --triton`."""
    root = tmp_path_factory.mktemp("serve")
    bundle, repository = root / "bundle", root / "triton"
    result = CliRunner().invoke(app, ["package", "--size", "micro", "-r", str(SIZE), "--engines", "none",
                                      "-o", str(bundle), "--triton", str(repository), "--triton-max-batch", "16"])
    assert result.exit_code == 0, result.output
    assert "Triton model repository (onnxruntime_onnx" in " ".join(result.output.split())
    return bundle, repository


@pytest.fixture(scope="module")
def predictor(packaged):
    with runtime.load(packaged[0]) as p:
        yield p


@pytest.fixture(scope="module")
def server(packaged):
    """`transnext-deploy serve` in a subprocess on free loopback ports; stopped by test_sigterm (or here)."""
    if _NO_SERVER:
        pytest.skip(f"no Triton server: {_NO_SERVER}")
    http_port, grpc_port, metrics_port = _free_ports(3)
    log = packaged[0].parent / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "transnext_deploy.cli", "serve", "--bundle", str(packaged[0]),
             "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
             "--max-batch", str(MAX_BATCH), "--top", str(TOP)],
            stdout=out, stderr=subprocess.STDOUT, text=True)
    info = types.SimpleNamespace(process=process, log=log, ports=(http_port, grpc_port, metrics_port),
                                 http=f"127.0.0.1:{http_port}", grpc=f"127.0.0.1:{grpc_port}")
    try:
        client = httpclient.InferenceServerClient(info.http)
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"serve exited with {process.returncode}: {log.read_text()[-2000:]}"
            try:
                if client.is_server_ready():
                    break
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            assert time.monotonic() < deadline, f"serve not ready after 120 s: {log.read_text()[-2000:]}"
            time.sleep(0.25)
        client.close()
        yield info
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def _http_infer(client, images: list[bytes]):
    data = np.array([[b] for b in images], dtype=np.object_)
    inp = httpclient.InferInput("image", list(data.shape), "BYTES")
    inp.set_data_from_numpy(data)
    return client.infer("transnext", [inp])


def _grpc_infer(client, images: list[bytes]):
    data = np.array([[b] for b in images], dtype=np.object_)
    inp = grpcclient.InferInput("image", list(data.shape), "BYTES")
    inp.set_data_from_numpy(data)
    return client.infer("transnext", [inp])


def _check_against_predict(predictor, images, indices, probabilities, labels) -> float:
    expected = predictor.predict(images, top=TOP)
    assert indices.shape == probabilities.shape == labels.shape == (len(images), TOP)
    worst = 0.0
    for row, want in enumerate(expected):
        assert indices[row].tolist() == [i for i, _, _ in want.top]
        assert [x.decode() for x in labels[row]] == [label for _, label, _ in want.top]
        err = np.abs(probabilities[row] - np.array([p for _, _, p in want.top])).max()
        worst = max(worst, float(err))
    assert worst <= PROB_ATOL, f"probabilities max-abs {worst:.3g} > {PROB_ATOL}"
    return worst


# ------------------------------------------------------------------------------------------ server

def test_model_metadata(server, predictor):
    client = httpclient.InferenceServerClient(server.http)
    meta = client.get_model_metadata("transnext")
    assert {i["name"]: (i["datatype"], i["shape"]) for i in meta["inputs"]} == {"image": ("BYTES", [-1, 1])}
    assert {o["name"]: (o["datatype"], o["shape"]) for o in meta["outputs"]} == {
        "indices": ("INT64", [-1, TOP]), "probabilities": ("FP32", [-1, TOP]), "labels": ("BYTES", [-1, TOP])}
    tensor = client.get_model_metadata("transnext_tensor")
    assert tensor["inputs"][0]["shape"] == [-1, 3, SIZE, SIZE]
    assert tensor["outputs"][0] == {"name": "logits", "datatype": "FP32", "shape": [-1, len(predictor.labels)]}
    config = client.get_model_config("transnext")
    assert config["max_batch_size"] == MAX_BATCH and "dynamic_batching" in config
    client.close()


def test_http_matches_predict(server, predictor, record_property):
    client = httpclient.InferenceServerClient(server.http)
    result = _http_infer(client, IMAGES)
    client.close()
    err = _check_against_predict(predictor, IMAGES, result.as_numpy("indices"), result.as_numpy("probabilities"),
                                 result.as_numpy("labels"))
    record_property("http_prob_max_abs", err)


def test_grpc_matches_predict_one_image_per_request(server, predictor, record_property):
    client = grpcclient.InferenceServerClient(server.grpc)
    worst = 0.0
    for image in IMAGES:
        result = _grpc_infer(client, [image])
        worst = max(worst, _check_against_predict(predictor, [image], result.as_numpy("indices"),
                                                  result.as_numpy("probabilities"), result.as_numpy("labels")))
    client.close()
    record_property("grpc_prob_max_abs", worst)


def test_tensor_model_matches_logits(server, predictor, record_property):
    batch = np.stack([predictor.preprocess(image) for image in IMAGES[:3]])
    client = grpcclient.InferenceServerClient(server.grpc)
    inp = grpcclient.InferInput("images", list(batch.shape), "FP32")
    inp.set_data_from_numpy(batch)
    logits = client.infer("transnext_tensor", [inp]).as_numpy("logits")
    client.close()
    want = predictor.logits(batch)
    err = float(np.abs(logits - want).max())
    rel = err / float(np.abs(want).max())
    record_property("tensor_logits_max_abs", err)
    assert logits.shape == want.shape
    assert err <= LOGIT_ATOL, f"logits max-abs {err:.3g} (relative {rel:.3g}) > {LOGIT_ATOL}"


def test_bad_image_fails_alone(server, predictor):
    http = httpclient.InferenceServerClient(server.http)
    grpc = grpcclient.InferenceServerClient(server.grpc)
    with pytest.raises(InferenceServerException, match="not an image") as bad:
        _http_infer(http, [b"this is not an image"])
    assert "\n" not in str(bad.value) and "Traceback" not in str(bad.value)
    with pytest.raises(InferenceServerException, match="not an image"):
        _grpc_infer(grpc, [b"GIF89a but truncated"])
    with pytest.raises(InferenceServerException, match=r"image 1 of 2 in this request: .*not an image"):
        _http_infer(http, [IMAGES[0], b"\x89PNG\r\n\x1a\n broken"])
    # Bad and good requests at once, so the dynamic batcher may put them in one batch: only the bad fail.
    outcomes: dict[int, object] = {}

    def send(i: int) -> None:
        client = httpclient.InferenceServerClient(server.http)
        try:
            outcomes[i] = _http_infer(client, [IMAGES[i % len(IMAGES)] if i % 2 else b"not an image %d" % i])
        except InferenceServerException as exc:
            outcomes[i] = exc
        finally:
            client.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, outcome in outcomes.items():
        assert isinstance(outcome, InferenceServerException) == (i % 2 == 0), (i, outcome)
    # ...and the server keeps serving.
    result = _grpc_infer(grpc, IMAGES[:2])
    _check_against_predict(predictor, IMAGES[:2], result.as_numpy("indices"), result.as_numpy("probabilities"),
                           result.as_numpy("labels"))
    assert http.is_server_live() and http.is_server_ready()
    http.close()
    grpc.close()


def test_concurrent_load(server, predictor, capsys, record_property):
    expected = {i: [j for j, _, _ in p.top] for i, p in enumerate(predictor.predict(IMAGES, top=TOP))}
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client_loop(c: int) -> None:
        client = (httpclient.InferenceServerClient(server.http) if c % 2 == 0
                  else grpcclient.InferenceServerClient(server.grpc))
        infer = _http_infer if c % 2 == 0 else _grpc_infer
        for r in range(REQUESTS_PER_CLIENT):
            k = (c + r) % len(IMAGES)
            start = time.perf_counter()
            try:
                result = infer(client, [IMAGES[k]])
                got = result.as_numpy("indices")[0].tolist()
                if got != expected[k]:
                    raise AssertionError(f"image {k}: top {got} != predict's {expected[k]}")
            except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                with lock:
                    errors.append(f"client {c} request {r}: {exc}")
                continue
            with lock:
                latencies.append(time.perf_counter() - start)
        client.close()

    threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(CLIENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    assert errors == []
    assert len(latencies) == CLIENTS * REQUESTS_PER_CLIENT
    stats = httpclient.InferenceServerClient(server.http).get_inference_statistics("transnext")
    batches = {int(b["batch_size"]): int(b["compute_infer"]["count"])
               for b in stats["model_stats"][0]["batch_stats"]}
    ms = sorted(x * 1e3 for x in latencies)
    p50, p99 = statistics.median(ms), ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    summary = (f"serve load: {CLIENTS} clients x {REQUESTS_PER_CLIENT} requests (1 image each, micro "
               f"{SIZE}x{SIZE}, backend {predictor.backend}): {len(ms) / wall:.1f} req/s, p50 {p50:.1f} ms, "
               f"p99 {p99:.1f} ms, 0 errors; batches formed (size: count, whole run) {dict(sorted(batches.items()))}")
    record_property("serve_load", summary)
    with capsys.disabled():
        print("\n" + summary)


def test_metrics_endpoint(server):
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{server.ports[2]}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'nv_inference_request_success{model="transnext"' in text


def test_sigterm_stops_cleanly(server):
    """Last in the module: SIGTERM -> exit status 0, no process left, the three ports free again."""
    processes = [server.process.pid] + _descendants(server.process.pid)
    assert len(processes) >= 4, "expected serve, tritonserver and one stub per model"  # 1 + 1 + 2
    server.process.send_signal(signal.SIGTERM)
    status = server.process.wait(60)
    log = server.log.read_text()
    assert status == 0, log[-2000:]
    assert "stopping" in log
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in processes if Path(f"/proc/{pid}").exists()] == []
    assert all(_port_free(port) for port in server.ports), server.ports


# ------------------------------------------------------------------------------------------ CLI

def test_missing_pytriton_is_one_line(packaged, monkeypatch):
    monkeypatch.setitem(sys.modules, "pytriton", None)  # import pytriton -> ImportError
    result = CliRunner().invoke(app, ["serve", "--bundle", str(packaged[0])])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and INSTALL_HINT in lines[0], result.output


def test_serve_rejects_bad_options(packaged):
    for args, message in ((["--max-batch", "0"], "--max-batch"), (["--top", "0"], "top must be a whole number >= 1"),
                          (["--device", "tpu"], "device must be one of auto, cpu, cuda"),
                          (["--backend", "torch-fast"], "backend must be one of tensorrt, tensorrt-rtx, onnxruntime-cuda"),
                          (["--http-port", "70000"], "--http-port must be"),
                          (["--http-port", "8123", "--grpc-port", "8123"], "both 8123")):
        result = CliRunner().invoke(app, ["serve", "--bundle", str(packaged[0]), *args])
        assert result.exit_code == 1 and message in result.output, result.output


@needs_server
def test_port_in_use_is_one_line(packaged):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        grpc_port, metrics_port = _free_ports(2)
        result = subprocess.run(
            [sys.executable, "-m", "transnext_deploy.cli", "serve", "--bundle", str(packaged[0]), "--http-port",
             str(port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port)],
            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"--http-port {port}: cannot listen" in errors[0], result.stderr
    assert "Traceback" not in result.stderr


@needs_server
def test_model_that_fails_to_load_is_one_line(tmp_path):
    """Triton's own failure (here: a model whose bundle is not there, past the CLI's checks) becomes one
    ServeError line quoting Triton, and leaves no process behind."""
    server = TritonServer(tmp_path / "no-bundle", input_size=(SIZE, SIZE), num_classes=10,
                          **dict(zip(("http_port", "grpc_port", "metrics_port"), _free_ports(3))))
    with pytest.raises(ServeError, match=r"tritonserver exited with status 1 while starting: .*failed to load") as exc:
        server.start()
    assert "\n" not in str(exc.value) and "no-bundle" in str(exc.value)
    assert server.wait(0) is not None


# ------------------------------------------------------------------------------------------ package --triton

def _parse_config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_triton_repository_onnx(packaged, predictor):
    bundle, repository = packaged
    config = _parse_config(repository / MODEL_NAME / "config.pbtxt")
    assert config.name == MODEL_NAME and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 16 and config.HasField("dynamic_batching")
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("images", model_config_pb2.TYPE_FP32, [3, SIZE, SIZE])]
    assert [(o.name, o.data_type, list(o.dims), o.label_filename) for o in config.output] == [
        ("logits", model_config_pb2.TYPE_FP32, [len(predictor.labels)], "labels.txt")]
    manifest = json.loads((bundle / "manifest.json").read_text())
    graph = manifest["models"][0]["graphs"]["model.onnx"]
    assert (repository / MODEL_NAME / "1" / "model.onnx").read_bytes() == (bundle / graph).read_bytes()
    assert (repository / MODEL_NAME / "labels.txt").read_text().splitlines() == predictor.labels
    assert "tritonserver --model-repository" in (repository / "README.md").read_text()


def _bundle_with_engine(bundle: Path, where: Path, runtime: str = "tensorrt") -> Path:
    """A copy of the bundle with a (fake, never deserialized) fp16 engine and plugin library listed in its
    manifest, as package writes them on a TensorRT machine (`runtime` "tensorrt-rtx": ahead of time, as
    package --runtime tensorrt-rtx writes them): only the repository layout is under test."""
    copy = where / f"bundle-with-{runtime}-engine"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    model = manifest["models"][0]
    (copy / model["directory"] / "model.aa_plugin.fp16.engine").write_bytes(b"not a real plan")
    (copy / "lib" / "libtransnext_aa_plugin.so").write_bytes(b"not a real library")
    rtx = runtime == "tensorrt-rtx"
    model["engines"] = [{"file": f"{model['directory']}/model.aa_plugin.fp16.engine", "precision": "fp16",
                         "runtime": runtime, "runtime_version": "1.7.1.116" if rtx else "10.3.0",
                         "compute_capabilities": ["86", "89"] if rtx else ["90"],
                         "gpu": None if rtx else "test GPU", "built_ahead_of_time": rtx,
                         "version_compatible": False, "hardware_compatibility": "none",
                         "batch_profile": {"min": 1, "opt": 8, "max": 32},
                         "plugin_library": {"file": "lib/libtransnext_aa_plugin.so", "sha256": ""}}]
    manifest["files"] = file_entries(copy)  # every file but the manifest, with its sha256
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_triton_repository_tensorrt_plan(packaged, predictor, tmp_path):
    bundle = _bundle_with_engine(packaged[0], tmp_path)
    result = write_model_repository(bundle, tmp_path / "repo", 32)
    assert result.platform == "tensorrt_plan"
    repo = Path(result.path)
    config = _parse_config(repo / MODEL_NAME / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 32
    assert config.HasField("dynamic_batching")
    assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]
    assert [(i.name, list(i.dims)) for i in config.input] == [("images", [3, SIZE, SIZE])]
    assert [(o.name, list(o.dims)) for o in config.output] == [("logits", [len(predictor.labels)])]
    assert (repo / MODEL_NAME / "1" / "model.plan").read_bytes() == b"not a real plan"
    assert (repo / "plugins" / "libtransnext_aa_plugin.so").is_file()
    readme = (repo / "README.md").read_text()
    assert "LD_PRELOAD=$PWD/plugins/libtransnext_aa_plugin.so" in readme
    assert '--backend-config=tensorrt,plugins="$PWD/plugins/libtransnext_aa_plugin.so"' in readme
    assert "TensorRT 10.3.0 on test GPU (compute capability 90)" in readme
    # Beyond the engine's optimisation profile: refused, and nothing written.
    with pytest.raises(RepositoryError, match="profile"):
        write_model_repository(bundle, tmp_path / "too-big", 64)
    assert not (tmp_path / "too-big").exists()
    # The ONNX graph can still be asked for.
    onnx = write_model_repository(bundle, tmp_path / "onnx", 8, prefer_engine=False)
    assert onnx.platform == "onnxruntime_onnx"


def test_triton_repository_leaves_tensorrt_rtx_engines_out(packaged, tmp_path):
    """Triton's TensorRT backend runs TensorRT plans: a bundle whose engines are TensorRT-RTX's is served
    as its ONNX graph, and saying so; asking for its engine names the runtime."""
    bundle = _bundle_with_engine(packaged[0], tmp_path, runtime="tensorrt-rtx")
    result = write_model_repository(bundle, tmp_path / "repo", 8)
    assert result.platform == "onnxruntime_onnx"
    assert (Path(result.path) / MODEL_NAME / "1" / "model.onnx").is_file()
    assert any("not tensorrt engines" in note for note in result.notes), result.notes
    with pytest.raises(RepositoryError, match="no fp16 tensorrt engine"):
        write_model_repository(bundle, tmp_path / "fp16", 8, precision="fp16")
    assert not (tmp_path / "fp16").exists()


def test_package_triton_target_checked_first(tmp_path, monkeypatch):
    """A --triton directory that is in use fails before the (slow) export, writing nothing."""
    import transnext_deploy.bundle.package

    def no_package(*args, **kwargs):
        raise AssertionError("package ran although --triton was unusable")

    monkeypatch.setattr(transnext_deploy.bundle.package, "package", no_package)
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    result = CliRunner().invoke(app, ["package", "--size", "micro", "-r", "64", "--engines", "none",
                                      "-o", str(tmp_path / "bundle"), "--triton", str(used)])
    assert result.exit_code == 1 and "not an empty directory" in result.output, result.output
    assert not (tmp_path / "bundle").exists() and os.listdir(used) == ["keep.txt"]
