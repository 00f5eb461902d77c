"""Serve a bundle with a real Triton Inference Server: the Triton front of the runtime predictor.

The server is the `tritonserver` binary that the `nvidia-pytriton` wheel ships (with Triton's Python
backend and its stub for each Python version). It runs two Python-backend models whose code is
`serving/triton_model.py`: `transnext` (encoded image files in, top-K indices, probabilities and labels out)
and `transnext_tensor` (preprocessed float32 images in, logits out), each with dynamic batching.

Why the Python backend directly and not pytriton's `Triton.bind`: pytriton fails a whole batch,
with a traceback as the message, when its callable raises, so one request with bytes that are not
an image would fail every request batched with it. Triton's Python backend answers each request of
a batch on its own (`InferenceResponse(error=...)`), so a bad request fails alone, in one line.

Each model instance is a stub process that loads the bundle with `runtime.load` once and keeps it.
`TritonServer` starts the binary on a model repository written to a private temporary directory,
waits until it is ready, and stops it with SIGTERM (Triton's graceful shutdown: in-flight requests
finish, the models unload, the stubs exit); the directory goes with it.
"""

from __future__ import annotations

import collections
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..artifacts import IMAGE_INPUT, IMAGE_MODEL, INPUT_NAME, LOGITS_OUTPUT, TENSOR_MODEL, TOP_K_OUTPUTS
from ..errors import InvalidArgumentError, TransNeXtDeployError
from .config import TensorConfig, model_config

INSTALL_HINT = "pip install 'transnext-deploy[serve]'"

# Triton's Python backend imports this file from each model's version directory; the model itself
# lives in the package, so nothing but the package's own code runs in the server.
_MODEL_SHIM = (
    "# Written by transnext-deploy serve: Triton's Python backend loads this file.\n"
    "from transnext_deploy.serving.triton_model import TritonPythonModel  # noqa: F401\n"
)


class ServeError(TransNeXtDeployError):
    """The server cannot be started or stopped as asked (missing package, port in use, bad bundle...)."""


@dataclass(frozen=True)
class TritonDist:
    """Where the pytriton wheel keeps the server: the binary, the Python backend, its stub, its libraries."""

    binary: Path
    python_backend: Path  # libtriton_python.so and triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub for this interpreter's version
    libs: Path  # the shared libraries the binary was linked against (auditwheel's nvidia_pytriton.libs)


def triton_dist() -> TritonDist:
    """The Triton server shipped by `nvidia-pytriton`; a one-line ServeError when it is not installed."""
    try:
        import pytriton
        from pytriton.utils.distribution import get_libs_path, get_stub_path
    except ImportError:
        raise ServeError(f"serving needs Triton Inference Server from nvidia-pytriton: {INSTALL_HINT}") from None
    root = Path(pytriton.__file__).parent / "tritonserver"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    dist = TritonDist(binary=root / "bin" / "tritonserver", python_backend=root / "backends" / "python",
                      stub=Path(get_stub_path(version)), libs=Path(get_libs_path()))
    if not dist.binary.is_file():
        raise ServeError(f"nvidia-pytriton has no tritonserver binary at {dist.binary} (a wheel for another "
                         f"platform?): reinstall it with {INSTALL_HINT}")
    if not dist.stub.is_file():
        raise ServeError(f"nvidia-pytriton has no Python backend stub for Python {version}; serve from a "
                         f"Python it ships one for (3.8-3.13)")
    return dist


# ------------------------------------------------------------------------------------------ repository

def write_serving_repository(bundle: str | os.PathLike, out_dir: str | os.PathLike, *, input_size: tuple[int, int],
                             num_classes: int, max_batch: int = 16, top: int = 5, device: str = "auto",
                             backend: str | None = None) -> Path:
    """The Python-backend model repository `serve` runs: `transnext` and `transnext_tensor`.

    Both models load `bundle` (an absolute path is stored in their config) with `runtime.load(bundle,
    device, backend=backend)`; `input_size` (H, W) and `num_classes` fix the tensor model's input and
    output shapes. Each model has one CPU instance: the predictor picks its own device, and a second
    instance would load the bundle twice.
    """
    check_serve_options(max_batch=max_batch, top=top, device=device, backend=backend)
    if top > num_classes:
        raise InvalidArgumentError(f"--top {top} is more than the bundle's {num_classes} classes")
    out = Path(out_dir)
    common = {"bundle": str(Path(bundle).resolve()), "device": device, **({"backend": backend} if backend else {})}
    h, w = input_size
    indices, probabilities, labels = TOP_K_OUTPUTS
    models = {
        IMAGE_MODEL: model_config(
            IMAGE_MODEL, backend="python", max_batch=max_batch, instance_kind="KIND_CPU",
            inputs=[TensorConfig(IMAGE_INPUT, "TYPE_STRING", [1])],
            outputs=[TensorConfig(indices, "TYPE_INT64", [top]), TensorConfig(probabilities, "TYPE_FP32", [top]),
                     TensorConfig(labels, "TYPE_STRING", [top])],
            parameters={**common, "kind": "image", "top": str(top)}),
        TENSOR_MODEL: model_config(
            TENSOR_MODEL, backend="python", max_batch=max_batch, instance_kind="KIND_CPU",
            inputs=[TensorConfig(INPUT_NAME, "TYPE_FP32", [3, h, w])],
            outputs=[TensorConfig(LOGITS_OUTPUT, "TYPE_FP32", [num_classes])],
            parameters={**common, "kind": "tensor"}),
    }
    for name, config in models.items():
        (out / name / "1").mkdir(parents=True, exist_ok=True)
        (out / name / "config.pbtxt").write_text(config)
        (out / name / "1" / "model.py").write_text(_MODEL_SHIM)
    return out


def check_serve_options(*, max_batch: int, top: int, device: str, backend: str | None = None) -> None:
    from ..bundle.runtime import candidates, check_top

    if max_batch < 1:
        raise InvalidArgumentError(f"--max-batch must be at least 1, got {max_batch}")
    check_top(top)
    candidates(device, backend)


# ------------------------------------------------------------------------------------------ server

def check_ports(host: str, ports: dict[str, int]) -> None:
    """One line naming the option when a port is out of range, repeated or already taken on `host`.

    Triton would find a taken port too, but only after loading both models (the slow part), and then
    exit with its own wording; this says it before anything is loaded."""
    import socket

    seen: dict[int, str] = {}
    for option, port in ports.items():
        if not 0 < port < 65536:
            raise InvalidArgumentError(f"{option} must be a port number (1-65535), got {port}")
        if port in seen:
            raise InvalidArgumentError(f"{option} and {seen[port]} are both {port}: each endpoint needs its own port")
        seen[port] = option
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise ServeError(f"{option} {port}: cannot listen on {host}:{port} "
                                 f"({exc.strerror or exc}); pick another port") from None


def _die_with_parent() -> None:
    """In the server's child process: get SIGTERM when the process that started it dies, so a killed
    `serve` (or test run) leaves no server holding the ports."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc (the server's stub processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


class TritonServer:
    """A running tritonserver serving `bundle`; a context manager (start on enter, stop on exit).

    `log` receives Triton's own log lines (None: kept only for error messages). start() checks the
    ports first (check_ports); when Triton itself fails to start, its error lines become the
    ServeError's message.
    """

    def __init__(self, bundle: str | os.PathLike, *, host: str = "127.0.0.1", http_port: int = 8000,
                 grpc_port: int = 8001, metrics_port: int = 8002, max_batch: int = 16, top: int = 5,
                 device: str = "auto", backend: str | None = None, input_size: tuple[int, int], num_classes: int,
                 log: TextIO | None = None, startup_timeout: float = 300.0, exit_timeout: int = 20):
        check_serve_options(max_batch=max_batch, top=top, device=device, backend=backend)
        self.bundle, self.host = Path(bundle), host
        self.input_size, self.num_classes = input_size, num_classes
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.max_batch, self.top, self.device, self.backend = max_batch, top, device, backend
        self.startup_timeout, self.exit_timeout = startup_timeout, exit_timeout
        self._log = log
        self._tail: collections.deque[str] = collections.deque(maxlen=200)
        self._process: subprocess.Popen | None = None
        self._workdir: Path | None = None
        self._reader: threading.Thread | None = None

    # -- addresses
    @property
    def _local_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else ("::1" if self.host == "::" else self.host)

    def _address(self, port: int) -> str:
        host = self._local_host
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def http_url(self) -> str:
        return self._address(self.http_port)

    @property
    def grpc_url(self) -> str:
        return self._address(self.grpc_port)

    @property
    def metrics_url(self) -> str:
        return f"http://{self._address(self.metrics_port)}/metrics"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stub_pids(self) -> list[int]:
        """The Python-backend stub processes (one per model instance) while the server runs."""
        return _children(self._process.pid) if self._process and self._process.poll() is None else []

    # -- lifecycle
    @property
    def ports(self) -> dict[str, int]:
        return {"--http-port": self.http_port, "--grpc-port": self.grpc_port, "--metrics-port": self.metrics_port}

    def start(self) -> TritonServer:
        dist = triton_dist()
        check_ports(self.host, self.ports)
        self._workdir = Path(tempfile.mkdtemp(prefix="transnext-serve-"))
        try:
            backend = self._workdir / "backends" / "python"
            backend.mkdir(parents=True)
            for item in dist.python_backend.iterdir():
                if item.is_file():
                    shutil.copy2(item, backend / item.name)
            shutil.copy2(dist.stub, backend / "triton_python_backend_stub")  # the stub for this Python
            repository = write_serving_repository(
                self.bundle, self._workdir / "models", input_size=self.input_size, num_classes=self.num_classes,
                max_batch=self.max_batch, top=self.top, device=self.device, backend=self.backend)
            self._process = subprocess.Popen(
                self._command(dist, repository), env=self._env(dist), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                start_new_session=True,  # our signals reach it only as forwarded, in order
                preexec_fn=_die_with_parent)
            self._reader = threading.Thread(target=self._read_log, name="tritonserver-log", daemon=True)
            self._reader.start()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _command(self, dist: TritonDist, repository: Path) -> list[str]:
        # A region prefix of its own: Python-backend shared memory is named in /dev/shm, and two servers
        # on one machine (two tests, two users) must not share regions.
        shm_prefix = f"transnext{os.getpid()}{secrets.token_hex(3)}_"
        return [
            str(dist.binary), f"--model-repository={repository}",
            f"--backend-directory={self._workdir / 'backends'}",
            f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            "--allow-metrics=true", f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
            "--disable-auto-complete-config",  # the configs are complete; skips a stub launch per model
            "--strict-readiness=true", f"--exit-timeout-secs={self.exit_timeout}",
        ]

    @staticmethod
    def _env(dist: TritonDist) -> dict[str, str]:
        env = os.environ.copy()
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (env.get("LD_LIBRARY_PATH"), str(dist.libs)) if p)
        # The stub embeds this Python and finds its environment (site-packages, this package) through
        # the `python3` first on PATH, as pytriton arranges it (PYTHONPATH, if set, passes through).
        env["PATH"] = os.pathsep.join((str(Path(sys.exec_prefix) / "bin"), env.get("PATH", "")))
        return env

    def _read_log(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._tail.append(line.rstrip("\n"))
            if self._log is not None:
                self._log.write(line)
                self._log.flush()

    def failure_summary(self) -> str:
        """Triton's own error lines (E... or 'error:'), else its last lines, on one line."""
        lines = [line for line in self._tail if line.startswith("E") or line.lower().startswith("error")]
        lines = [line.split("] ", 1)[-1].strip('"') for line in (lines or list(self._tail)[-3:])]
        return " | ".join(dict.fromkeys(lines)) or "no output"

    def _wait_ready(self) -> None:
        url = f"http://{self.http_url}"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                if self._reader:
                    self._reader.join(timeout=5)
                raise ServeError(f"tritonserver exited with status {self._process.returncode} while starting: "
                                 f"{self.failure_summary()}")
            try:
                with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise ServeError(f"tritonserver was not ready after {self.startup_timeout:.0f} s: {self.failure_summary()}")

    def wait(self, timeout: float | None = None) -> int | None:
        """The server's exit status once it exits (None on timeout)."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> int | None:
        """SIGTERM, then wait for Triton's graceful shutdown (SIGKILL after its exit timeout plus a margin);
        the stubs exit with it. Returns the server's exit status; removes the temporary repository."""
        status = None
        if self._process is not None:
            stubs = self.stub_pids()
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)
            try:
                status = self._process.wait(self.exit_timeout + 15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                status = self._process.wait()
            for pid in stubs:  # normally gone with the server; never leave one behind
                _reap(pid)
            if self._reader is not None:
                self._reader.join(timeout=5)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return status

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _reap(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ------------------------------------------------------------------------------------------ foreground

def bundle_facts(bundle: str | os.PathLike, device: str = "auto", backend: str | None = None
                 ) -> tuple[tuple[int, int], str, int]:
    """Load the bundle once in this process before starting the server, so a bad bundle or a refused
    backend is one line here rather than a model that fails to load inside Triton.
    Returns the input size (H, W), the backend the predictor chose and the number of classes."""
    from ..bundle import runtime

    with runtime.load(bundle, device=device, backend=backend) as predictor:
        if not predictor.labels:
            raise ServeError(f"{bundle} is a backbone bundle: serve needs a classification bundle (it "
                             f"returns top-K labels)")
        return tuple(predictor.input_size), predictor.backend, len(predictor.labels)


def serve_forever(server: TritonServer, announce=print) -> int:
    """Start `server`, announce its endpoints, and serve until SIGTERM or SIGINT; then stop it cleanly.
    Returns 0 after a requested stop; raises ServeError when the server exits on its own."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        announce(f"serving {IMAGE_MODEL} and {TENSOR_MODEL}: HTTP {server.http_url}, gRPC {server.grpc_url}, "
                 f"metrics {server.metrics_url} (pid {server.pid}); "
                 f"SIGTERM or Ctrl-C stops it")
        while not stop.is_set():
            if server.wait(timeout=0.5) is not None:
                raise ServeError(f"tritonserver exited on its own with status {server.wait()}: {server.failure_summary()}")
        announce("stopping (in-flight requests finish first)")
        return 0
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


__all__ = ["INSTALL_HINT", "ServeError", "TritonDist", "TritonServer",
           "bundle_facts", "check_ports", "serve_forever", "triton_dist", "write_serving_repository"]
