"""Shared fixtures."""

from __future__ import annotations

import http.server
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest


# Fixtures that export or build a whole network, or start a server: a test that uses one is slow
# (`pytest -m "not slow"` is the quick CPU subset; CI runs everything). Tests that are slow on
# their own carry @pytest.mark.slow.
SLOW_FIXTURES = {
    "bench_setup",  # bench exports tiny and times every backend
    "shipped", "packaged", "server",  # package micro at two resolutions; a Triton server
    "artifact",  # the docs' blocks in an exported artifact
    "micro_artifacts", "micro_fp16", "micro_standard", "micro224", "micro64",  # exports
    "rtx_plugin", "plugin_libraries", "cuda_library", "driver", "check", "toolchain",  # CMake + nvcc builds
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@dataclass
class LocalHub:
    """A loopback HTTP server laid out like the model hub (`<repo>/resolve/main/<file>`)."""

    root: Path
    url: str
    truncate: set[str] = field(default_factory=set)  # file names served cut in half

    def __iter__(self):
        return iter((self.root, self.url))


@pytest.fixture()
def hub(tmp_path):
    root = tmp_path / "hub"
    root.mkdir()
    state = LocalHub(root, "")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802 - http.server's API
            path = root / self.path.lstrip("/").replace("/resolve/main", "")
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2] if path.name in state.truncate else data)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture()
def tiny_bundle(tmp_path) -> Path:
    """A 10-class bundle over 8x8 images (tests/bundles.py): checks and runtime choices in seconds."""
    from bundles import make_bundle

    return make_bundle(tmp_path / "bundle")


@pytest.fixture()
def private_tmp(tmp_path, monkeypatch) -> Path:
    """tempfile's directory, watched: an extraction would leave something here."""
    import tempfile

    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory
