"""The C++ example (examples/cpp/): transnext_classify runs a TensorRT engine with the plugin library.

* Everywhere a C++ compiler is (CI included): tensor_io.h, the example's host code (strict .npy
  reader, image-batch check, labels file, softmax, top-K; no TensorRT, no CUDA), is built into
  examples/cpp/tensor_io_check.cpp and run against files numpy writes, good and bad, and against a
  numpy softmax/top-K. The README's Python snippet runs and its output passes the reader.
* With TensorRT headers ($TENSORRT_INCLUDE_DIR, os.pathsep-separated; skipped when unset), as the
  plugin is checked in test_plugin_build.py: classify.cpp compiles to an object file with
  -Wall -Wextra -Wpedantic -Wshadow -Werror against every directory listed, and that object links
  against a stand-in libnvinfer that defines only the three extern "C" entry points the program may
  use (so it needs no other libnvinfer symbol) plus the CUDA runtime and libdl. CMake builds the
  example against that stand-in, laid out as the tensorrt wheel lays out its library
  (libnvinfer.so.10, no unversioned link); the binary's command line and the input errors, all
  reached before the first TensorRT call, are then checked. No TensorRT library exists here: nothing
  runs TensorRT itself.
* With the `tensorrt` package, TensorRT headers of the same version, nvcc and a CUDA GPU: export micro
  at 64x64, let `export` build the fp32 engine of model.aa_plugin.onnx, build the example with CMake
  against the real libnvinfer and compare its top-5 (static and loadLibrary plugin loading, batch 1
  and 3) with onnxruntime on model.onnx.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import NO_HEADERS, tensorrt_header_dirs

from transnext_deploy import plugin as plugin_build
from transnext_deploy.plugin.build import PluginBuildError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "cpp"
AA_DIR = REPO / "plugins" / "aggregated_attention"
WARNINGS = ["-Wall", "-Wextra", "-Wpedantic", "-Wshadow", "-Werror"]
# Softmax in double on both sides; only exp()'s last bits may differ.
PROB_TOL = 1e-12


def _tool(finder) -> str | None:
    try:
        return finder()
    except PluginBuildError:
        return None


def _header_dirs() -> list[Path]:
    return tensorrt_header_dirs()


def _cuda_root() -> Path | None:
    nvcc = _tool(plugin_build.find_nvcc)
    candidates = [Path(nvcc).resolve().parent.parent] if nvcc else []
    candidates += [Path(os.environ[e]) for e in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(e)]
    candidates.append(Path("/usr/local/cuda"))
    return next((c for c in candidates if (c / "include" / "cuda_runtime_api.h").is_file()), None)


def _cudart_dir(cuda_root: Path) -> Path | None:
    return next((d for d in (cuda_root / "lib64", cuda_root / "lib", cuda_root / "targets" / "x86_64-linux" / "lib",
                             cuda_root / "targets" / "sbsa-linux" / "lib", cuda_root / "targets" / "aarch64-linux" / "lib")
                 if (d / "libcudart.so").exists()), None)


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kwargs)


CXX = _tool(plugin_build.find_cxx_compiler)
needs_cxx = pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++/c++/clang++) on PATH")
needs_headers = pytest.mark.skipif(
    not _header_dirs(), reason=f"{NO_HEADERS}: classify.cpp needs the TensorRT headers to compile")


def _assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str, code: int = 1,
                           after_tensorrt: bool = False) -> str:
    """Exit status `code`, nothing on stdout, one `error: ` line on stderr holding every fragment.
    after_tensorrt: TensorRT's own log lines may come before it (a real libnvinfer logs)."""
    assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr[-3000:]
    assert after_tensorrt or len(lines) == 1, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


# ------------------------------------------------------------------------------ host code (no TensorRT)


@pytest.fixture(scope="module")
def check(tmp_path_factory) -> Path:
    if CXX is None:
        pytest.skip("no C++ compiler (g++/c++/clang++) on PATH")
    exe = tmp_path_factory.mktemp("tensor_io") / "tensor_io_check"
    proc = _run([CXX, "-std=c++17", "-O2", *WARNINGS, f"-I{EXAMPLE}", EXAMPLE / "tensor_io_check.cpp", "-o", exe])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return exe


def _raw_npy(header: str, payload: bytes = b"", version: int = 1) -> bytes:
    """A .npy file with a hand-written header dict (padded as numpy pads it)."""
    prefix = 10 if version == 1 else 12
    text = header + " " * ((-(prefix + len(header) + 1)) % 64) + "\n"
    length = struct.pack("<H", len(text)) if version == 1 else struct.pack("<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + length + text.encode("latin1") + payload


def _save(path: Path, array: np.ndarray, version: tuple[int, int] | None = None, **kwargs) -> Path:
    with open(path, "wb") as f:
        np.lib.format.write_array(f, array, version=version, **kwargs)
    return path


@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 3, 1, 1), (11,), (), (0, 3, 4, 4)])
def test_reader_returns_what_numpy_wrote(check, tmp_path, version, shape):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal(shape) * 3).astype(np.float32)
    if array.size >= 4:  # values a reader could mangle: signed zero, inf, nan, a denormal
        array.reshape(-1)[:4] = [-0.0, np.inf, np.nan, 1e-45]
    path = _save(tmp_path / "a.npy", array, version)
    proc = _run([check, "read", path])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "shape [" + ",".join(map(str, shape)) + "]"
    assert lines[1:] == [f"{b:08x}" for b in array.reshape(-1).view(np.uint32)]


def test_image_batch_accepts_nchw(check, tmp_path):
    path = tmp_path / "images.npy"
    np.save(path, np.random.default_rng(1).standard_normal((3, 3, 64, 48), dtype=np.float32))
    proc = _run([check, "image", path])
    assert proc.returncode == 0 and proc.stdout == "shape [3,3,64,48]\n", proc.stderr


def _refusals(tmp: Path) -> list[tuple[str, str, Path, tuple[str, ...]]]:
    """(name, command, file, fragments of the one-line error)."""
    good = np.random.default_rng(2).standard_normal((2, 3, 4, 5)).astype(np.float32)
    payload = good.tobytes()
    cases = []

    def add(name, command, path, *fragments):
        cases.append((name, command, path, fragments))

    add("float64", "read", _save(tmp / "f64.npy", good.astype(np.float64)), "dtype '<f8' (float64)", "float32")
    add("float16", "read", _save(tmp / "f16.npy", good.astype(np.float16)), "'<f2' (float16)")
    add("big-endian", "read", _save(tmp / "be.npy", good.astype(">f4")), "'>f4' (big-endian float32)")
    add("int64", "read", _save(tmp / "i64.npy", good.astype(np.int64)), "(int64)")
    add("uint8", "read", _save(tmp / "u8.npy", good.astype(np.uint8)), "'|u1' (uint8)")
    add("pickle", "read", _save(tmp / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True), "'|O'", "object")
    add("structured", "read", _save(tmp / "rec.npy", np.zeros(3, dtype=[("a", "<f4"), ("b", "<f4")])), "structured dtype")
    add("fortran", "read", _save(tmp / "fortran.npy", np.asfortranarray(good)), "Fortran order")
    whole = (tmp / "f64.npy").read_bytes()
    good_file = _save(tmp / "good.npy", good).read_bytes()
    (tmp / "short.npy").write_bytes(good_file[:-10])
    add("truncated", "read", tmp / "short.npy", "truncated", "needs 480 bytes", "the file has 470")
    (tmp / "long.npy").write_bytes(good_file + b"\0\0\0\0")
    add("trailing", "read", tmp / "long.npy", "trailing bytes", "the file has 484")
    (tmp / "cut_header.npy").write_bytes(whole[:30])
    add("cut header", "read", tmp / "cut_header.npy", "truncated .npy header")
    (tmp / "text.npy").write_text("1.0 2.0 3.0\n")
    add("not npy", "read", tmp / "text.npy", "not a .npy file")
    v3 = bytearray(good_file)
    v3[6] = 3
    (tmp / "v3.npy").write_bytes(bytes(v3))
    add("version 3", "read", tmp / "v3.npy", "version 3.0 is not supported")
    (tmp / "unknown_key.npy").write_bytes(_raw_npy(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4, 5), 'extra': 1, }", payload))
    add("unknown key", "read", tmp / "unknown_key.npy", "unknown header key 'extra'")
    (tmp / "no_shape.npy").write_bytes(_raw_npy("{'descr': '<f4', 'fortran_order': False, }", payload))
    add("no shape", "read", tmp / "no_shape.npy", "without 'shape'")
    (tmp / "bad_shape.npy").write_bytes(_raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", payload))
    add("bad shape", "read", tmp / "bad_shape.npy", "malformed 'shape'")
    (tmp / "twice.npy").write_bytes(_raw_npy(
        "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (120,), }", payload))
    add("key twice", "read", tmp / "twice.npy", "'descr' twice")
    (tmp / "huge.npy").write_bytes(_raw_npy(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", payload, version=2))
    add("huge", "read", tmp / "huge.npy", "too large")
    add("missing", "read", tmp / "nothing.npy", "no such file")
    add("directory", "read", tmp, "not a regular file")
    add("rank 3", "image", _save(tmp / "chw.npy", good[0]), "shape [3,4,5]", "expected [N,3,H,W]")
    add("rank 5", "image", _save(tmp / "r5.npy", good[None]), "shape [1,2,3,4,5]", "expected [N,3,H,W]")
    add("4 channels", "image", _save(tmp / "rgba.npy", np.zeros((1, 4, 8, 8), np.float32)), "expected [N,3,H,W]")
    add("NHWC", "image", _save(tmp / "nhwc.npy", np.zeros((1, 8, 8, 3), np.float32)), "shape [1,8,8,3]")
    add("empty batch", "image", _save(tmp / "empty.npy", np.zeros((0, 3, 8, 8), np.float32)), "is empty")
    nan = good.copy()
    nan[1, 2, 3, 4] = np.nan
    add("nan", "image", _save(tmp / "nan.npy", nan), f"flat index {nan.size - 1} is not finite")
    return cases


def test_reader_refuses_anything_else(check, tmp_path):
    cases = _refusals(tmp_path)
    for name, command, path, fragments in cases:
        proc = _run([check, command, path])
        try:
            _assert_one_line_error(proc, str(path), *fragments)
        except AssertionError as exc:
            raise AssertionError(f"case {name!r}: {exc}") from None


def _numpy_top_k(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    z = logits.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    cols = np.arange(p.shape[1])
    order = np.stack([np.lexsort((cols, -row))[:k] for row in p])  # largest first, ties by index
    return order, np.take_along_axis(p, order, axis=1)


@pytest.mark.parametrize("k", [1, 5, 1000])
def test_softmax_and_top_k_match_numpy(check, tmp_path, k):
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((6, 1000)) * 4).astype(np.float32)
    logits[1] *= 1e4                 # exp() would overflow without subtracting the maximum
    logits[2] = 0.0                  # all tied: classes 0..k-1 in index order
    logits[3, [10, 20, 30]] = 50.0   # a tie at the top
    logits[4] = rng.integers(-2, 3, size=1000)  # many ties at every level
    path = tmp_path / "logits.npy"
    np.save(path, logits)
    proc = _run([check, "classify", path, str(k)])
    assert proc.returncode == 0, proc.stderr
    order, probs = _numpy_top_k(logits, k)
    rows = proc.stdout.splitlines()
    assert len(rows) == logits.shape[0]
    worst = 0.0
    for r, line in enumerate(rows):
        fields = line.split()
        got_index = np.array([int(x) for x in fields[0::2]])
        got_prob = np.array([float(x) for x in fields[1::2]])
        assert got_index.tolist() == order[r].tolist(), f"row {r}"
        worst = max(worst, float(np.abs(got_prob - probs[r]).max()))
    print(f"top-{k}: max-abs probability difference {worst:.3g} (tolerance {PROB_TOL:g})")
    assert worst <= PROB_TOL
    assert order[2].tolist() == list(range(k)) and order[3][:3].tolist() == [10, 20, 30][: min(k, 3)]


def test_top_k_refuses_non_finite_logits(check, tmp_path):
    logits = np.zeros((2, 10), np.float32)
    logits[1, 7] = np.nan
    np.save(tmp_path / "nan_logits.npy", logits)
    _assert_one_line_error(_run([check, "classify", tmp_path / "nan_logits.npy", "3"]),
                           "output row 1 has a non-finite logit at class 7")


def test_labels(check, tmp_path):
    path = tmp_path / "labels.txt"
    path.write_bytes("tench, Tinca tinca\r\ngoldfish\r\ncaf\u00e9 au lait\r\n\r\n".encode())
    proc = _run([check, "labels", path])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["3", "tench, Tinca tinca", "goldfish", "caf\u00e9 au lait"]
    (tmp_path / "hole.txt").write_text("a\nb\n\nd\n")
    _assert_one_line_error(_run([check, "labels", tmp_path / "hole.txt"]), "line 3 is empty")
    (tmp_path / "empty.txt").write_text("\n\n")
    _assert_one_line_error(_run([check, "labels", tmp_path / "empty.txt"]), "no labels")


def _readme_snippet() -> str:
    text = (EXAMPLE / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    (snippet,) = [b for b in blocks if "np.save(" in b and "preprocess" in b]
    return snippet


def _package_constant(name: str) -> np.ndarray:
    # The preprocessing constants live in export.py today; the package layout plan moves them to
    # artifacts.py. Either is accepted, so this test follows the constant, not the module.
    for module in ("transnext_deploy.artifacts", "transnext_deploy.export"):
        try:
            value = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if value is not None:
            return np.asarray(value)
    raise AssertionError(f"{name} not found in transnext_deploy")


def test_readme_snippet_writes_an_input_the_reader_accepts(check, tmp_path):
    from PIL import Image

    snippet = _readme_snippet()
    for name, key in (("MEAN", "IMAGENET_MEAN"), ("STD", "IMAGENET_STD")):
        numbers = re.search(rf"^{name} = np\.array\(\[([^\]]*)\]", snippet, re.MULTILINE)
        assert numbers, f"{name} not defined in the README snippet"
        documented = np.array([float(x) for x in numbers.group(1).split(",")], np.float32)
        assert np.array_equal(documented, _package_constant(key)), (name, documented)
    rng = np.random.default_rng(4)
    for name in ("cat.jpg", "dog.jpg"):
        Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(tmp_path / name)
    proc = _run([sys.executable, "-c", snippet], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = _run([check, "image", tmp_path / "images.npy"])
    assert out.returncode == 0 and out.stdout == "shape [2,3,224,224]\n", out.stderr
    images = np.load(tmp_path / "images.npy")
    photo = np.asarray(Image.open(tmp_path / "dog.jpg").convert("RGB").resize((224, 224), Image.BILINEAR), np.float32)
    expected = ((photo / 255.0 - _package_constant("IMAGENET_MEAN")) / _package_constant("IMAGENET_STD")).transpose(2, 0, 1)
    assert images.dtype == np.float32 and np.array_equal(images[1], expected.astype(np.float32))


# ------------------------------------------------------------------------------ TensorRT headers

STUB_SOURCE = """
#include <cstdint>
// Stand-in for libnvinfer with only the extern "C" entry points transnext_classify may use.
extern "C" void* createInferRuntime_INTERNAL(void*, int32_t) noexcept { return nullptr; }
extern "C" void* getPluginRegistry() noexcept { return nullptr; }
extern "C" int32_t getInferLibVersion() noexcept { return 100300; }
"""


@pytest.fixture(scope="module")
def toolchain(tmp_path_factory) -> dict:
    """The stand-in libnvinfer (as the tensorrt wheel names it) and the CUDA runtime to link with."""
    if not _header_dirs():
        pytest.skip(NO_HEADERS)
    cuda_root = _cuda_root()
    if CXX is None or cuda_root is None:
        pytest.skip("needs a C++ compiler and the CUDA toolkit's headers (cuda_runtime_api.h)")
    cudart = _cudart_dir(cuda_root)
    if cudart is None:
        pytest.skip(f"libcudart.so not found under {cuda_root}")
    stub_dir = tmp_path_factory.mktemp("nvinfer_stand_in")
    (stub_dir / "stub.cpp").write_text(STUB_SOURCE)
    proc = _run([CXX, "-shared", "-fPIC", "-Wl,-soname,libnvinfer.so.10", stub_dir / "stub.cpp",
                 "-o", stub_dir / "libnvinfer.so.10"])
    assert proc.returncode == 0, proc.stderr
    return {"cuda_root": cuda_root, "cudart": cudart, "stub_dir": stub_dir}


@needs_headers
@needs_cxx
def test_compiles_and_links_against_every_header_version(toolchain, tmp_path):
    for include in _header_dirs():
        assert (include / "NvInfer.h").is_file(), f"{include} has no NvInfer.h"
        obj = tmp_path / "classify.o"
        proc = _run([CXX, "-std=c++17", "-O2", *WARNINGS, f"-I{EXAMPLE}", f"-I{AA_DIR}", "-isystem", include,
                     "-isystem", toolchain["cuda_root"] / "include", "-c", EXAMPLE / "classify.cpp", "-o", obj])
        assert proc.returncode == 0, f"against {include}:\n{proc.stderr[-4000:]}"
        # Links only if the three extern "C" functions are all the program takes from libnvinfer.
        link = _run([CXX, obj, "-o", tmp_path / "classify", toolchain["stub_dir"] / "libnvinfer.so.10",
                     f"-L{toolchain['cudart']}", "-lcudart", "-ldl"])
        assert link.returncode == 0, f"link with headers {include}:\n{link.stderr[-4000:]}"


@pytest.fixture(scope="module")
def stand_in_binary(toolchain, tmp_path_factory) -> Path:
    """transnext_classify built by examples/cpp/CMakeLists.txt against the stand-in libnvinfer."""
    cmake = _tool(plugin_build.find_cmake)
    if cmake is None:
        pytest.skip("cmake not found")
    build = tmp_path_factory.mktemp("classify_cmake")
    configure = _run([cmake, "-S", EXAMPLE, "-B", build, f"-DTENSORRT_INCLUDE_DIR={_header_dirs()[0]}",
                      f"-DTENSORRT_LIBRARY_DIR={toolchain['stub_dir']}", f"-DCUDAToolkit_ROOT={toolchain['cuda_root']}",
                      f"-DCMAKE_CXX_COMPILER={CXX}", "-DTRANSNEXT_EXAMPLE_WERROR=ON"])
    assert configure.returncode == 0, configure.stdout[-3000:] + configure.stderr[-3000:]
    assert f"library {toolchain['stub_dir'] / 'libnvinfer.so.10'}" in configure.stdout
    compiled = _run([cmake, "--build", build, "-j2"])
    assert compiled.returncode == 0, compiled.stdout[-4000:] + compiled.stderr[-4000:]
    return build / "transnext_classify"


@needs_headers
def test_command_line_and_input_errors(stand_in_binary, tmp_path):
    exe = stand_in_binary
    help_text = _run([exe, "--help"])
    assert help_text.returncode == 0 and help_text.stderr == ""
    for option in ("--engine", "--input", "--plugin", "--plugin-load", "--labels", "--top", "--verbose", "--help"):
        assert re.search(rf"^\s+(-h, )?{option}\b", help_text.stdout, re.MULTILINE), option
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((2, 3, 8, 8), np.float32))
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not an engine")
    base = ["--engine", engine, "--input", images]
    usage = [([], "--engine PATH is required"), (["--engine", engine], "--input PATH is required"),
             ([*base, "--frobnicate"], "unknown option '--frobnicate'"), ([*base, "--top"], "--top needs a value"),
             ([*base, "--top", "0"], "--top expects a positive integer, got '0'"),
             ([*base, "--top=5x"], "got '5x'"), ([*base, "--plugin-load", "maybe"], "auto, static or registry")]
    for args, fragment in usage:
        line = _assert_one_line_error(_run([exe, *args]), fragment, code=2)
        assert line.endswith("(see --help)")
    np.save(tmp_path / "f64.npy", np.zeros((2, 3, 8, 8)))
    np.save(tmp_path / "chw.npy", np.zeros((3, 8, 8), np.float32))
    (tmp_path / "labels.txt").write_text("a\n\nc\n")
    failures = [(["--engine", engine, "--input", tmp_path / "f64.npy"], "dtype '<f8' (float64)"),
                (["--engine", engine, "--input", tmp_path / "chw.npy"], "expected [N,3,H,W]"),
                (["--engine", engine, "--input", tmp_path / "none.npy"], "none.npy: no such file"),
                ([*base, "--labels", tmp_path / "labels.txt"], "line 2 is empty"),
                (["--engine", tmp_path / "none.engine", "--input", images], "engine", "none.engine: no such file"),
                (["--engine", tmp_path, "--input", images], "not a regular file")]
    for args, *fragments in failures:
        _assert_one_line_error(_run([exe, *args]), *fragments)
    # Everything valid up to the GPU: with no device visible the program stops there, before TensorRT.
    no_gpu = _run([exe, *base, "--plugin", tmp_path / "libplugin.so"], env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    _assert_one_line_error(no_gpu, "no usable CUDA device: ")


# ------------------------------------------------------------------------------ GPU + TensorRT


def _gpu_problem() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt Python package is not installed"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device visible to torch"
    return None


@pytest.mark.skipif(_gpu_problem() is not None, reason=str(_gpu_problem()))
def test_top5_matches_onnxruntime_on_the_gpu(tmp_path):
    import onnxruntime as ort
    import tensorrt as trt
    from helpers import perturbed_checkpoint

    version = tuple(int(x) for x in trt.__version__.split(".")[:2])
    location = plugin_build.find_tensorrt()
    headers = [d for d in [*_header_dirs(), location.include_dir] if d is not None and _header_version(d) == version]
    if not headers or location.library is None:
        pytest.skip(f"needs the TensorRT {trt.__version__} headers ($TENSORRT_INCLUDE_DIR or $TENSORRT_ROOT) and "
                    f"libnvinfer (found headers {[str(d) for d in _header_dirs()]}, library {location.library})")
    libraries = _plugin_libraries(tmp_path, headers[0])

    # micro at 64x64 with perturbed weights; export builds the fp32 engine of model.aa_plugin.onnx.
    ckpt = perturbed_checkpoint(tmp_path / "micro.pth", "micro")
    env = {**os.environ, "TRANSNEXT_AA_PLUGIN": str(libraries["plugin"]),
           "TRANSNEXT_DEPLOY_CACHE": str(tmp_path / "cache")}  # the engine builder's timing cache
    proc = _run([sys.executable, "-m", "transnext_deploy.cli", "export", "--size", "micro", "--resolution", "64",
                 "--checkpoint", ckpt, "--output", tmp_path / "out"], env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    artifact = tmp_path / "out" / "transnext_micro_classify_64x64"
    engine = artifact / "model.aa_plugin.fp32.engine"
    assert engine.is_file(), f"export built no engine:\n{proc.stdout[-3000:]}"

    build = tmp_path / "classify_build"
    cuda_root = _cuda_root()
    cmake = plugin_build.find_cmake()
    configure = _run([cmake, "-S", EXAMPLE, "-B", build, f"-DTENSORRT_INCLUDE_DIR={headers[0]}",
                      f"-DTENSORRT_LIBRARY_DIR={location.library_dir}", "-DTRANSNEXT_EXAMPLE_WERROR=ON",
                      *([f"-DCUDAToolkit_ROOT={cuda_root}"] if cuda_root else [])])
    assert configure.returncode == 0, configure.stdout[-3000:] + configure.stderr[-3000:]
    compiled = _run([cmake, "--build", build, "-j4"])
    assert compiled.returncode == 0, compiled.stdout[-4000:] + compiled.stderr[-4000:]
    exe = build / "transnext_classify"

    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class number {i}\n" for i in range(1000)))
    session = ort.InferenceSession(str(artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(5)
    runs = [(libraries["plugin"], "auto", 1), (libraries["plugin"], "static", 3),
            (libraries["plugin_dynamic"], "registry", 3)]
    for library, mode, batch in runs:
        x = rng.standard_normal((batch, 3, 64, 64)).astype(np.float32)
        np.save(tmp_path / "images.npy", x)
        out = _run([exe, "--engine", engine, "--plugin", library, "--plugin-load", mode, "--input",
                    tmp_path / "images.npy", "--labels", labels])
        assert out.returncode == 0, out.stderr[-3000:]
        print(out.stdout)
        logits = session.run(None, {"images": x})[0].astype(np.float64)
        # fp32 engine (TF32 off) vs onnxruntime: logits within dz = 1e-4 x max(1, max|logits|), what
        # test_engine.py holds the engine to against PyTorch. A softmax probability p then moves by at
        # most 2 dz p. 5e-6 is the rounding of the 5 printed decimals.
        dz = 1e-4 * max(1.0, float(np.abs(logits).max()))
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        printed = _parse_top(out.stdout)
        assert len(printed) == batch and all(len(rows) == 5 for rows in printed)
        worst = 0.0
        for image, rows in enumerate(printed):
            fifth = np.sort(logits[image])[-5]
            probs = [prob for _, prob, _, _ in rows]
            assert probs == sorted(probs, reverse=True)
            for index, prob, logit, label in rows:
                ref = logits[image, index]
                worst = max(worst, abs(logit - ref))
                assert label == f"class number {index}"
                assert abs(logit - ref) <= dz + 5e-6, (mode, image, index, logit, ref)
                assert abs(prob - p[image, index]) <= 2 * dz * p[image, index] + 5e-6, (mode, image, index, prob)
                assert ref >= fifth - 2 * dz, (mode, image, index)  # a true top-5 class, up to near-ties
        print(f"{mode}, batch {batch}: max-abs logit difference {worst:.3g} (tolerance {dz:.3g} + 5e-6)")
        assert f"plugin {library}" in out.stdout.splitlines()[0]

    missing_plugin = _run([exe, "--engine", engine, "--input", tmp_path / "images.npy"])
    _assert_one_line_error(missing_plugin, "cannot deserialise", "--plugin is needed", after_tensorrt=True)
    wrong_mode = _run([exe, "--engine", engine, "--input", tmp_path / "images.npy", "--plugin", libraries["plugin_dynamic"],
                       "--plugin-load", "static"])
    _assert_one_line_error(wrong_mode, "registered no TransNeXtAggregatedAttention v1 creator", after_tensorrt=True)
    x = np.zeros((33, 3, 64, 64), np.float32)  # the exported profile's batch range is [1, 32]
    np.save(tmp_path / "too_many.npy", x)
    too_many = _run([exe, "--engine", engine, "--input", tmp_path / "too_many.npy", "--plugin", libraries["plugin"]])
    _assert_one_line_error(too_many, "batch 33 is outside the engine's profile [1, 32]", after_tensorrt=True)


def _header_version(include: Path) -> tuple[int, int] | None:
    path = include / "NvInferVersion.h"
    if not path.is_file():
        return None
    text = path.read_text()
    numbers = []
    for part in ("MAJOR", "MINOR"):
        m = re.search(rf"#define (?:TRT_{part}_ENTERPRISE|NV_TENSORRT_{part}) (\d+)", text)
        if not m:
            return None
        numbers.append(int(m.group(1)))
    return numbers[0], numbers[1]


def _plugin_libraries(tmp_path: Path, include: Path) -> dict[str, Path]:
    import torch

    static, dynamic = plugin_build.find_plugin_library(), plugin_build.find_plugin_library(dynamic=True)
    if static is not None and dynamic is not None:
        return {"plugin": static, "plugin_dynamic": dynamic}
    major, minor = torch.cuda.get_device_capability()
    try:
        result = plugin_build.build_plugin(targets=("plugin",), cuda_archs=[f"{major}{minor}"], jobs=os.cpu_count() or 2,
                                           build_dir=tmp_path / "aa_plugin_build", require_nvinfer=True,
                                           tensorrt_root=os.environ.get("TENSORRT_ROOT"), tensorrt_include_dir=include)
    except PluginBuildError as exc:
        pytest.skip(f"cannot build the TensorRT plugin here: {exc}")
    return {"plugin": result.libraries["plugin"], "plugin_dynamic": result.libraries["plugin_dynamic"]}


def _parse_top(stdout: str) -> list[list[tuple[int, float, float, str]]]:
    """Per image: (class index, probability, logit, label) as transnext_classify prints them."""
    images: list[list[tuple[int, float, float, str]]] = []
    for line in stdout.splitlines()[1:]:
        if re.fullmatch(r"image \d+:", line):
            images.append([])
            continue
        m = re.fullmatch(r"\s+\d+\. class\s+(\d+)  p=([0-9.]+)  logit=(-?[0-9.]+)(?:  (.*))?", line)
        assert m and images, line
        images[-1].append((int(m.group(1)), float(m.group(2)), float(m.group(3)), m.group(4) or ""))
    return images

