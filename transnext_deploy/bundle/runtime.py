"""Run a bundle: `load(bundle)` picks the best backend this machine can run and returns a Predictor.

The backends are those of `backends.registry`, tried in `BUNDLE_BACKENDS` order, best first, among
those on `device` (auto, cpu or cuda), or only the one asked for by name (`backend=`):

    tensorrt                a TensorRT engine of the bundle, when TensorRT, a CUDA GPU and the
                            engine's facts in the manifest match (engine.compatibility: TensorRT
                            version, compute capability, compatibility flags, the plugin library's sha256)
    tensorrt-rtx            a TensorRT-RTX engine of the bundle, likewise, on a GPU of a compute
                            capability it was built for (its runtime cache kept in the user cache)
    onnxruntime-cuda        the standard graph on onnxruntime's CUDA provider
    onnxruntime-cpu-custom  the custom-op graph on the CPU, its aggregated attention in the plugin's
                            host library (the faster CPU graph), when that library is available here
    onnxruntime-cpu         the standard graph on the CPU

`Predictor.backend` says which one runs, `Predictor.skipped` why each better one did not (one line
each), `Predictor.notes` the details (which graph or engine).

The bundle is checked first (`bundle.open_bundle`): a file that does not match its sha256, or a
tarball with an unsafe member, is refused with one line, before anything is extracted or run.

Images go through the manifest's preprocessing (`images.preprocess`: the published evaluation
transform for the bundle's resolution). `Predictor.predict_each` classifies every input and gives an
input that is not a readable image its own error, the others still answered: the one batching path
of `predict` and of `serve`'s Triton model. `Predictor.predict` is the same, raising at the first
bad image.

This module imports neither torch nor the model code: a machine that only runs bundles needs
numpy, onnx, onnxruntime (with onnxruntime-extensions for the custom-op graph) and Pillow.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts import PLUGIN_DYNAMIC_LIBRARY, PLUGIN_ENV, PLUGIN_LIBRARY

from ..files import sha256sum
from ..backends.base import Backend
from ..backends.registry import (
    BACKENDS,
    BUNDLE_BACKENDS,
    BackendUnavailable,
    EngineCandidate,
    check_device,
    on_device,
    open_backend,
    problem,
)
from ..errors import InvalidArgumentError, TransNeXtDeployError
from ..progress import Progress, no_progress
from .format import LIB_DIR, BundleError, OpenBundle, open_bundle
from .images import preprocess

DEFAULT_CHUNK = 32  # largest batch handed to a backend with no limit of its own (the engines' default max)


@dataclass(frozen=True)
class Prediction:
    top: list[tuple[int, str, float]]  # (class index, label, probability), most probable first


# ------------------------------------------------------------------------------------------ the bundle as a source


class BundleSource:
    """One model of an opened bundle, as `backends.registry.open_backend` loads backends from it."""

    def __init__(self, opened: OpenBundle, model: dict):
        self.opened, self.model_entry = opened, model

    def graph(self, file: str) -> Path:
        graphs = self.model_entry["graphs"]
        if file not in graphs:
            raise BackendUnavailable(f"the bundle has no {file} for {self.model_entry['name']}")
        return self.opened.path(graphs[file])

    def model(self, attention: str):
        raise BackendUnavailable("a bundle carries graphs and engines, not the PyTorch model")

    def _plugin_libraries(self) -> dict[str, str]:
        """{sha256: path} of the plugin libraries within reach: the bundle's, $TRANSNEXT_AA_PLUGIN's
        directory, the build directory."""
        from ..plugin.locations import find_plugin_library

        candidates = [self.opened.root / LIB_DIR / name for name in (PLUGIN_LIBRARY, PLUGIN_DYNAMIC_LIBRARY)]
        if os.environ.get(PLUGIN_ENV):
            given = Path(os.environ[PLUGIN_ENV]).expanduser()
            candidates += [given.with_name(PLUGIN_LIBRARY), given.with_name(PLUGIN_DYNAMIC_LIBRARY)]
        candidates += [find_plugin_library(), find_plugin_library(dynamic=True)]
        libraries: dict[str, str] = {}
        for path in candidates:
            if path is not None and os.path.isfile(path):
                libraries.setdefault(sha256sum(path), str(path))
        return libraries

    def engines(self, runtime: str, precision: str | None = None) -> Iterator[EngineCandidate | str]:
        """The bundle's `runtime` engines for this model (of `precision`, or all) that can run here, fp16
        first; the others with the reason."""
        from ..engine.compatibility import by_preference, engine_problem, engine_targets, engine_version
        from ..engine.tensorrt import import_runtime
        from ..machine import cuda_devices

        entries = [e for e in self.model_entry.get("engines") or []
                   if e.get("runtime", "tensorrt") == runtime and precision in (None, e.get("precision"))]
        if not entries:
            yield f"the bundle has no {runtime} engine for {self.model_entry['name']}"
            return
        version = import_runtime(runtime).__version__
        device = cuda_devices()[0][0]
        libraries = self._plugin_libraries()
        for engine in by_preference(entries):
            reason = engine_problem(engine, version, device.compute_capability, libraries,
                                    f"the bundle's {LIB_DIR}/, ${PLUGIN_ENV} or the build directory")
            if reason:
                yield f"{engine['file']}: {reason}"
                continue
            library = (engine.get("plugin_library") or {}).get("sha256")
            yield EngineCandidate(
                self.opened.path(engine["file"]), libraries.get(library),
                host_code_allowed=bool(engine.get("version_compatible")),
                max_batch=int(engine["batch_profile"]["max"]),
                description=(f"{engine['file']} ({engine['precision']}, {runtime} {engine_version(engine)}, "
                             f"built for sm_{', sm_'.join(engine_targets(engine))}) on {device}"))


# ------------------------------------------------------------------------------------------ predictor


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def check_count(value: int, name: str) -> int:
    """`value` if it is a whole number >= 1 (a count: top, batch), else a one-line InvalidArgumentError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


def check_top(top: int) -> int:
    return check_count(top, "top")


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

    def __init__(self, opened: OpenBundle, model: dict, backend: Backend, name: str, skipped: list[str]):
        self._opened = opened
        self._backend: Backend | None = backend
        self.backend = name
        self.skipped = skipped
        self.notes = [f"{backend.graph}: {BACKENDS[name].runs}", *backend.notes]
        self.manifest = opened.manifest
        self.model = model
        self.input_size: tuple[int, int] = tuple(model["resolution"])
        self.preprocessing: dict = model["preprocessing"]
        self.classify = self.manifest.get("mode") == "classify"
        self.max_batch = backend.max_batch or DEFAULT_CHUNK
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

    def _check_classify(self) -> None:
        if not self.classify:
            raise InvalidArgumentError(f"{self._opened.source} is a backbone bundle ({self.manifest.get('mode')}): "
                                       "it gives feature maps, not classes (package it with --mode classify)")

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 -> (B, C) float32 logits, any B (run in chunks the backend takes)."""
        self._check_classify()
        batch = np.asarray(batch)
        h, w = self.input_size
        if batch.ndim != 4 or batch.shape[1:] != (3, h, w):
            raise InvalidArgumentError(f"expected a (batch, 3, {h}, {w}) array, got {tuple(batch.shape)}")
        if self._backend is None:
            raise InvalidArgumentError("this predictor is closed")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        step = self.max_batch
        chunks = [self._backend(batch[i:i + step])[0] for i in range(0, len(batch), step)]
        return np.concatenate(chunks).astype(np.float32, copy=False) if chunks else \
            np.zeros((0, len(self.labels)), np.float32)

    def predict_each(self, images: Iterable, top: int = 5, batch: int | None = None,
                     progress: Progress = no_progress) -> list[Prediction | TransNeXtDeployError]:
        """Every input's top classes, in input order; an input that is not a readable image gets its
        error (an ImageDecodeError, one line) in its place and the others are still answered. Inputs
        are decoded one at a time and run `batch` at a time (default: the backend's largest batch);
        `progress` hears of each finished input."""
        self._check_classify()
        check_top(top)
        step = self.max_batch if batch is None else check_count(batch, "batch")
        results: list[Prediction | TransNeXtDeployError | None] = []
        pending: list[tuple[int, np.ndarray]] = []

        def flush() -> None:
            if pending:
                predictions = top_k(self.logits(np.stack([x for _, x in pending])), self.labels, top)
                for (i, _), prediction in zip(pending, predictions):
                    results[i] = prediction
                progress(f"classified {len(results)} inputs", advance=len(pending))
                pending.clear()

        for image in images:
            results.append(None)
            try:
                pending.append((len(results) - 1, self.preprocess(image)))
            except TransNeXtDeployError as exc:
                results[-1] = exc
                progress(f"classified {len(results)} inputs", advance=1)
            if len(pending) == step:
                flush()
        flush()
        return results  # type: ignore[return-value] - every slot is filled

    def predict(self, images, top: int = 5) -> list[Prediction]:
        """Images (anything preprocess takes; a single one is a list of one) -> their top classes, in
        input order. An image that cannot be decoded raises images.ImageDecodeError."""
        if isinstance(images, (str, bytes, bytearray, os.PathLike)) or hasattr(images, "getbands"):
            images = [images]
        results = self.predict_each(images, top)
        for result in results:
            if isinstance(result, TransNeXtDeployError):
                raise result
        return results  # type: ignore[return-value]

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None
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


def candidates(device: str = "auto", backend: str | None = None) -> list[str]:
    """The bundle backends `load` tries, best first: every one on `device`, or only `backend`."""
    check_device(device)
    if backend is None:
        return on_device(BUNDLE_BACKENDS, device)
    if backend not in BUNDLE_BACKENDS:
        raise InvalidArgumentError(f"backend must be one of {', '.join(BUNDLE_BACKENDS)} for a bundle, got "
                                   f"{backend!r}")
    if not on_device([backend], device):
        raise InvalidArgumentError(f"backend {backend} runs on {BACKENDS[backend].device}, not on --device {device}")
    return [backend]


def load(bundle: str | os.PathLike, device: str = "auto", *, backend: str | None = None, resolution=None,
         threads: int | None = None) -> Predictor:
    """Check `bundle` (a directory or a .tar.gz) and load it on the best backend this machine can run.

    device: where it may run, "auto", "cpu" or "cuda"; backend: only this one (a name of
    BUNDLE_BACKENDS). When nothing allowed can run, BackendUnavailable says why each could not.
    `resolution` picks one of a multi-resolution bundle's models (default: the first); `threads`
    the CPU threads (default: the CPUs this process may use, at most 8)."""
    from ..backends.onnxrt import default_threads

    names = candidates(device, backend)
    threads = threads or default_threads()
    opened = open_bundle(bundle)
    try:
        model = _select_model(opened.manifest, resolution)
        source = BundleSource(opened, model)
        skipped = [f"{name}: not tried ({'backend' if backend else 'device'}={backend or device!r})"
                   for name in BUNDLE_BACKENDS[:BUNDLE_BACKENDS.index(names[0])]]
        for name in names:
            try:
                reason = problem(name, threads=threads)
                if reason and BACKENDS[name].engine and not any(e.get("runtime", "tensorrt") == name
                                                               for e in model.get("engines") or []):
                    reason += f"; the bundle has no {name} engine for {model['name']}"  # say both: each needs a fix
                if reason:
                    raise BackendUnavailable(reason)
                loaded = open_backend(name, source, threads=threads)
            except BackendUnavailable as exc:
                skipped.append(f"{name}: {exc}")
                continue
            if BACKENDS[name].device == "cpu":
                loaded.notes = (*loaded.notes, f"{threads} threads")
            return Predictor(opened, model, loaded, name, skipped)
        raise BackendUnavailable(f"no backend can run {opened.source} here: " + "; ".join(skipped))
    except BaseException:
        opened.close()
        raise


__all__ = ["BackendUnavailable", "BundleSource", "Prediction", "Predictor", "candidates", "check_count", "check_top", "load",
           "top_k"]
