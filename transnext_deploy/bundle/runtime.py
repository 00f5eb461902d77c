"""Run a bundle: `load(bundle)` picks the best backend this machine can run and returns a Predictor.

The choice, best first: a TensorRT engine of the bundle (TensorRT importable, a CUDA GPU, and the
engine's facts in the manifest matching them: TensorRT version, compute capability, version- and
hardware-compatibility flags, a plugin library with the sha256 the engine was built against), then
onnxruntime on CUDA (the standard graph), then onnxruntime on the CPU (the custom-op graph, whose
aggregated attention runs in the plugin's host library and is faster on the CPU, when that
library is available here; else the standard graph). `Predictor.backend` says which one runs,
`Predictor.skipped` why each better one did not (one line each), `Predictor.notes` the details
(which graph or engine).

The bundle is checked first (`bundle.open_bundle`): a file that does not match its sha256, or a
tarball with an unsafe member, is refused with one line, before anything is extracted or run.

Images go through the manifest's preprocessing (`images.preprocess`: the published evaluation
transform for the bundle's resolution); `Predictor.predict` returns the top classes with softmax
probabilities, in input order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..artifacts import PLUGIN_ENV, PLUGIN_FILE, STANDARD_FILE, sha256sum
from .format import LIB_DIR, BundleError, OpenBundle, open_bundle
from ..errors import InvalidArgumentError, TransNeXtDeployError
from .images import preprocess

DEVICES = ("auto", "tensorrt", "cuda", "cpu")
BACKENDS = ("tensorrt", "onnxruntime-cuda", "onnxruntime-cpu")  # best first
_DEVICE_BACKENDS = {"auto": BACKENDS, "tensorrt": BACKENDS[:1], "cuda": BACKENDS[1:2], "cpu": BACKENDS[2:]}
ENGINE_PREFERENCE = ("fp16", "fp32")  # fp16 engines are held to ENGINE_TOLERANCES and run faster
PLUGIN_LIBRARY = "libtransnext_aa_plugin.so"  # the engines' plugin (registers itself when loaded)
DEFAULT_CHUNK = 32  # largest batch handed to a backend at once (the engines' default max batch)


class BackendUnavailable(TransNeXtDeployError):
    """The backend that was asked for cannot run here; str() says why."""


@dataclass(frozen=True)
class Prediction:
    top: list[tuple[int, str, float]]  # (class index, label, probability), most probable first


# ------------------------------------------------------------------------------------------ engine checks


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in str(version).split("."):
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def engine_problem(engine: dict, tensorrt_version: str, compute_capability: tuple[int, int],
                   plugin_sha256s: Iterable[str]) -> str | None:
    """Why the engine described by `engine` (a manifest entry) cannot run with this TensorRT
    version, GPU compute capability and these plugin libraries (their sha256), or None.

    TensorRT's rules: an engine runs on the TensorRT version that built it, or, when built
    version-compatible, on that version or a later one of the same major version; on GPUs of the
    compute capability it was built on (hardware compatibility "none" or "same_compute_capability"),
    or on any Ampere or later GPU ("ampere_plus")."""
    built = str(engine.get("tensorrt_version"))
    here, there = _version_tuple(tensorrt_version), _version_tuple(built)
    if engine.get("version_compatible"):
        if not there or here[:1] != there[:1] or here < there:
            return (f"TensorRT {tensorrt_version} here; the engine is version-compatible from TensorRT {built} "
                    f"on, within major version {there[:1][0] if there else '?'}")
    elif here[:3] != there[:3]:
        return f"built by TensorRT {built}, this is TensorRT {tensorrt_version} (not a version-compatible engine)"
    major, minor = compute_capability
    cc = str(engine.get("compute_capability", ""))
    level = engine.get("hardware_compatibility") or "none"
    if level == "ampere_plus":
        if major < 8:
            return (f"the engine needs an Ampere or later GPU (hardware compatibility ampere_plus), "
                    f"this is sm_{major}{minor}")
    elif cc != f"{major}.{minor}":
        return f"built for compute capability {cc}, this GPU is {major}.{minor} (hardware compatibility {level})"
    library = engine.get("plugin_library")
    if library and library.get("sha256") not in set(plugin_sha256s):
        return (f"no plugin library with the sha256 the engine was built against ({library.get('sha256', '?')[:12]}…) "
                f"in the bundle's {LIB_DIR}/, ${PLUGIN_ENV} or the build directory")
    return None


def _plugin_libraries(opened: OpenBundle) -> dict[str, str]:
    """{sha256: path} of the plugin libraries within reach: the bundle's, $TRANSNEXT_AA_PLUGIN, the build directory."""
    from ..plugin.build import find_plugin_library

    candidates = [opened.root / LIB_DIR / PLUGIN_LIBRARY]
    if os.environ.get(PLUGIN_ENV):
        candidates.append(os.path.expanduser(os.environ[PLUGIN_ENV]))
    found = find_plugin_library()
    if found is not None:
        candidates.append(found)
    libraries = {}
    for path in candidates:
        if os.path.isfile(path):
            libraries.setdefault(sha256sum(path), str(path))
    return libraries


# ------------------------------------------------------------------------------------------ backends


@dataclass
class _Runner:
    """What a Predictor calls: `run` takes numpy (B, 3, H, W) float32 with B <= max_batch and
    returns the first output, (B, C) float32; `close` releases the backend."""

    run: Callable[[np.ndarray], np.ndarray]
    close: Callable[[], None]
    max_batch: int = DEFAULT_CHUNK


def _tensorrt(opened: OpenBundle, model: dict) -> tuple[_Runner, list[str]]:
    from ..engine import tensorrt_status
    from ..machine import cuda_devices

    engines = model.get("engines") or []
    status = tensorrt_status(need_plugin=False)  # what this machine lacks, said even when the bundle has no engine
    problems = [] if status.available else [status.reason]
    if not engines:
        problems.append(f"the bundle has no TensorRT engine for {model['name']}")
    if problems:
        raise BackendUnavailable("; ".join(problems))
    import tensorrt as trt

    device = cuda_devices()[0][0]
    libraries = _plugin_libraries(opened)
    problems = []
    for engine in sorted(engines, key=lambda e: ENGINE_PREFERENCE.index(e["precision"])
                         if e.get("precision") in ENGINE_PREFERENCE else len(ENGINE_PREFERENCE)):
        problem = engine_problem(engine, trt.__version__, device.compute_capability, libraries)
        if problem:
            problems.append(f"{engine['file']}: {problem}")
            continue
        from ..backends.trt import TensorRTRunner
        from ..engine import EngineError

        library = (engine.get("plugin_library") or {}).get("sha256")
        try:
            runner = TensorRTRunner(opened.path(engine["file"]), libraries.get(library),
                                    host_code_allowed=bool(engine.get("version_compatible")))
        except EngineError as exc:  # the facts matched but TensorRT refused it: the next engine, or backend
            problems.append(f"{engine['file']}: {exc}")
            continue
        notes = [f"{engine['file']} ({engine['precision']}, TensorRT {engine['tensorrt_version']}, "
                 f"built on sm_{engine.get('sm')}) on {device}"]
        return _Runner(lambda x, run=runner: run(x)[0], runner.close, int(engine["batch_profile"]["max"])), notes
    raise BackendUnavailable("; ".join(problems))


def _ort_cuda(opened: OpenBundle, model: dict) -> tuple[_Runner, list[str]]:
    from ..backends.onnxrt import OrtCudaBackend, OrtCudaUnavailable, ort_cuda_problem

    problem = ort_cuda_problem()
    if problem:
        raise BackendUnavailable(problem)
    try:
        backend = OrtCudaBackend(opened.path(model["graphs"][STANDARD_FILE]))
    except OrtCudaUnavailable as exc:
        raise BackendUnavailable(str(exc)) from None
    return _Runner(lambda x: backend(x)[0], backend.close), [f"{STANDARD_FILE} on onnxruntime's CUDA provider"]


def _ort_cpu(opened: OpenBundle, model: dict, threads: int | None) -> tuple[_Runner, list[str]]:
    from ..backends.onnxrt import OrtCpuBackend, custom_op_problem, default_threads, host_library_problem

    threads = threads or default_threads()
    graph = model["graphs"].get(PLUGIN_FILE)
    problem = (host_library_problem() or custom_op_problem(threads)) if graph else "the bundle has no custom-op graph"
    if problem is None:
        notes = [f"{PLUGIN_FILE}: aggregated attention in the plugin's host library (faster on the CPU), "
                 f"{threads} threads"]
    else:
        graph = model["graphs"][STANDARD_FILE]
        notes = [f"{STANDARD_FILE} (standard ONNX ops), {threads} threads; the custom-op graph would be faster on "
                 f"the CPU but {problem}"]
    backend = OrtCpuBackend(opened.path(graph), threads=threads)
    return _Runner(lambda x: backend(x)[0], backend.close), notes


# ------------------------------------------------------------------------------------------ predictor


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def top_k(logits: np.ndarray, labels: Sequence[str], k: int) -> list[Prediction]:
    """Softmax probabilities of (B, C) logits -> the k most probable classes of each row."""
    probabilities = _softmax(logits)
    k = max(1, min(int(k), probabilities.shape[1]))
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return [Prediction([(int(i), labels[int(i)] if labels else str(int(i)), float(row[i])) for i in idx])
            for row, idx in zip(probabilities, order)]


class Predictor:
    """A loaded bundle on one backend (see the module docstring). Use as a context manager, or call
    close(), to release the backend and a tarball's extraction."""

    def __init__(self, opened: OpenBundle, model: dict, runner: _Runner, backend: str, skipped: list[str],
                 notes: list[str]):
        self._opened = opened
        self._runner = runner
        self.backend = backend
        self.skipped = skipped
        self.notes = notes
        self.manifest = opened.manifest
        self.model = model
        self.input_size: tuple[int, int] = tuple(model["resolution"])
        self.preprocessing: dict = model["preprocessing"]
        self.classify = self.manifest.get("mode") == "classify"
        self.labels: list[str] = []
        labels = self.manifest.get("labels")
        if labels:
            self.labels = opened.path(labels["file"]).read_text(encoding="utf-8").splitlines()
            if len(self.labels) != int(labels["count"]):
                raise BundleError(f"{opened.source}: {labels['file']} has {len(self.labels)} lines, the manifest "
                                  f"says {labels['count']}")

    def preprocess(self, image) -> np.ndarray:
        """PIL.Image | bytes | path -> the (3, H, W) float32 input of the graph (the manifest's preprocessing)."""
        return preprocess(image, self.preprocessing)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 -> (B, C) float32 logits, any B (run in chunks the backend takes)."""
        if not self.classify:
            raise InvalidArgumentError(f"{self._opened.source} is a backbone bundle ({self.manifest.get('mode')}): "
                                       "it gives feature maps, not class logits")
        batch = np.asarray(batch)
        h, w = self.input_size
        if batch.ndim != 4 or batch.shape[1:] != (3, h, w):
            raise InvalidArgumentError(f"expected a (batch, 3, {h}, {w}) array, got {tuple(batch.shape)}")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        step = self._runner.max_batch
        return np.concatenate([np.asarray(self._runner.run(batch[i:i + step]), dtype=np.float32)
                               for i in range(0, len(batch), step)]) if len(batch) else \
            np.zeros((0, len(self.labels)), np.float32)

    def predict(self, images, top: int = 5) -> list[Prediction]:
        """Images (anything preprocess takes; a single one is a list of one) -> their top classes, in
        input order. An image that cannot be decoded raises images.ImageDecodeError."""
        if not self.classify:
            raise InvalidArgumentError(f"{self._opened.source} is a backbone bundle: it has no classes to predict "
                                       "(package it with --mode classify)")
        if isinstance(images, (str, bytes, bytearray, os.PathLike)) or hasattr(images, "getbands"):
            images = [images]
        results: list[Prediction] = []
        chunk: list[np.ndarray] = []
        for image in images:
            chunk.append(self.preprocess(image))
            if len(chunk) == self._runner.max_batch:
                results += top_k(self.logits(np.stack(chunk)), self.labels, top)
                chunk = []
        if chunk:
            results += top_k(self.logits(np.stack(chunk)), self.labels, top)
        return results

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None
        self._opened.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Predictor({self.manifest.get('variant')} {self.input_size[0]}x{self.input_size[1]}, "
                f"backend={self.backend!r})")


def _select_model(manifest: dict, resolution) -> dict:
    models = manifest["models"]
    if resolution is None:
        return models[0]
    from ..resolution import pair, parse_resolution

    wanted = list(pair(parse_resolution(resolution) if isinstance(resolution, str) else resolution))
    for model in models:
        if list(model["resolution"]) == wanted:
            return model
    have = ", ".join(m["name"] for m in models)
    raise InvalidArgumentError(f"the bundle has no {wanted[0]}x{wanted[1]} model (it has {have})")


def load(bundle: str | os.PathLike, device: str = "auto", *, resolution=None, threads: int | None = None
         ) -> Predictor:
    """Check `bundle` (a directory or a .tar.gz) and load it on the best backend `device` allows.

    device: "auto" (TensorRT, else onnxruntime CUDA, else onnxruntime CPU), "tensorrt", "cuda"
    (onnxruntime CUDA) or "cpu". A device that was asked for and cannot run raises
    BackendUnavailable, saying why. `resolution` picks one of a multi-resolution bundle's models
    (default: the first); `threads` the CPU threads (default: the CPUs this process may use, at most 8)."""
    if device not in DEVICES:
        raise InvalidArgumentError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    opened = open_bundle(bundle)
    try:
        model = _select_model(opened.manifest, resolution)
        skipped: list[str] = []
        for backend in _DEVICE_BACKENDS[device]:
            try:
                if backend == "tensorrt":
                    runner, notes = _tensorrt(opened, model)
                elif backend == "onnxruntime-cuda":
                    runner, notes = _ort_cuda(opened, model)
                else:
                    runner, notes = _ort_cpu(opened, model, threads)
            except BackendUnavailable as exc:
                skipped.append(f"{backend}: {exc}")
                continue
            if device != "auto":
                skipped = [f"{b}: not tried (device={device!r})" for b in BACKENDS[:BACKENDS.index(backend)]]
            return Predictor(opened, model, runner, backend, skipped, notes)
        raise BackendUnavailable(f"device={device!r}: no backend can run {opened.source}: " + "; ".join(skipped))
    except BaseException:
        opened.close()
        raise


__all__ = ["BACKENDS", "DEVICES", "BackendUnavailable", "Prediction", "Predictor", "engine_problem", "load", "top_k"]
