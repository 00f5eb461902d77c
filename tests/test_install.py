"""Where the plugin sources, the build directory and the host library are, for a checkout, a wheel
with the prebuilt library and a wheel without it; when the host library is rebuilt; the build tools.

These use fake layouts and a fake build (no compiler runs here); the real build is covered by
test_plugin_build.py and test_ops_host.py, and the real install (wheel in a fresh venv, export
and build-plugin from another directory) by .ci/check-install, which CI runs before the tests.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from transnext_deploy import artifacts
from transnext_deploy import plugin as plugin_build
from transnext_deploy.plugin import build as build_module
from transnext_deploy.plugin import locations, toolchain
from transnext_deploy.plugin.build import PluginBuildError

REPO = Path(__file__).resolve().parents[1]
HOST = artifacts.LIBRARY_FILES["host"]


@pytest.fixture()
def clean_env(monkeypatch, tmp_path):
    for name in (artifacts.PLUGIN_DIR_ENV, artifacts.CACHE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "transnext-deploy" / "plugins"


def _installed(monkeypatch, tmp_path, *, prebuilt: bool, sources: bool = True) -> Path:
    """A site-packages/transnext_deploy layout as the wheel installs it, with this module's
    package_dir() pointed at it."""
    package = tmp_path / "site-packages" / "transnext_deploy"
    package.mkdir(parents=True)
    if sources:
        shutil.copytree(REPO / "plugins", package / "plugins")
    if prebuilt:
        (package / "lib").mkdir()
        (package / "lib" / HOST).write_bytes(b"\x7fELF prebuilt")
    monkeypatch.setattr(locations, "package_dir", lambda: package)
    return package


class FakeBuild:
    """Stands in for build_plugin: records each call and writes the library where CMake would."""

    def __init__(self):
        self.calls: list[Path] = []

    def __call__(self, targets, build_dir, jobs=2, **kwargs):
        out = Path(build_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / HOST).write_bytes(b"\x7fELF built %d" % len(self.calls))
        self.calls.append(out)
        return plugin_build.BuildResult(out, tuple(targets), {"host": out / HOST}, [])


def test_checkout_layout(clean_env):
    assert plugin_build.checkout_root() == REPO
    assert plugin_build.plugin_source_dir() == REPO / "plugins"
    assert plugin_build.default_build_dir() == REPO / "build" / "plugins"
    assert plugin_build.prebuilt_host_library() is None  # a checkout builds from its own sources


def test_wheel_uses_its_prebuilt_library_as_is_and_builds_into_the_cache(monkeypatch, tmp_path, clean_env):
    package = _installed(monkeypatch, tmp_path, prebuilt=True)
    fake = FakeBuild()
    monkeypatch.setattr(build_module, "build_plugin", fake)
    assert plugin_build.checkout_root() is None
    assert plugin_build.plugin_source_dir() == package / "plugins"
    assert plugin_build.prebuilt_host_library() == package / "lib" / HOST
    assert plugin_build.find_host_library() == package / "lib" / HOST
    assert plugin_build.ensure_host_library() == package / "lib" / HOST
    assert not fake.calls  # never rebuilt, whatever the mtimes of the unpacked sources
    # build-plugin's default directory is the user cache, never the package
    assert plugin_build.default_build_dir() == clean_env
    monkeypatch.setenv(artifacts.CACHE_ENV, str(tmp_path / "cache-root"))
    assert plugin_build.default_build_dir() == (tmp_path / "cache-root" / "plugins").resolve()
    monkeypatch.setenv(artifacts.PLUGIN_DIR_ENV, str(tmp_path / "mine"))
    assert plugin_build.default_build_dir() == (tmp_path / "mine").resolve()
    # an explicit build directory is looked at, not the prebuilt library
    assert plugin_build.find_host_library(tmp_path / "elsewhere") is None


def test_wheel_without_library_builds_it_once_into_the_cache(monkeypatch, tmp_path, clean_env):
    package = _installed(monkeypatch, tmp_path, prebuilt=False)
    fake = FakeBuild()
    monkeypatch.setattr(build_module, "build_plugin", fake)
    assert plugin_build.find_host_library() is None
    library = plugin_build.ensure_host_library()
    assert library == clean_env / HOST and fake.calls == [clean_env]
    assert package not in library.parents
    assert plugin_build.ensure_host_library() == library and len(fake.calls) == 1
    assert plugin_build.find_host_library() == library


def test_no_sources_anywhere_is_one_line(monkeypatch, tmp_path, clean_env):
    _installed(monkeypatch, tmp_path, prebuilt=False, sources=False)
    with pytest.raises(PluginBuildError, match=r"^plugin sources not found: .*reinstall transnext-deploy") as info:
        plugin_build.plugin_source_dir()
    assert "\n" not in str(info.value)


def test_checkout_rebuilds_when_the_sources_change_not_when_they_are_touched(monkeypatch, tmp_path):
    sources = tmp_path / "plugins"
    shutil.copytree(REPO / "plugins", sources)
    monkeypatch.setattr(locations, "plugin_source_dir", lambda: sources)
    fake = FakeBuild()
    monkeypatch.setattr(build_module, "build_plugin", fake)
    build = tmp_path / "build"
    first = plugin_build.ensure_host_library(build)
    assert len(fake.calls) == 1
    assert plugin_build.ensure_host_library(build) == first and len(fake.calls) == 1
    header = sources / "aggregated_attention" / "aggregatedAttentionMath.h"
    os.utime(header)  # a new mtime with the same content (a fresh clone, an unpacked archive)
    assert plugin_build.ensure_host_library(build) == first and len(fake.calls) == 1
    header.write_text(header.read_text() + "\n// changed\n")
    plugin_build.ensure_host_library(build)
    assert len(fake.calls) == 2
    (sources / "CMakeLists.txt").write_text((sources / "CMakeLists.txt").read_text() + "\n# changed\n")
    plugin_build.ensure_host_library(build)
    assert len(fake.calls) == 3
    # a library built by hand (build-plugin) without a stamp is rebuilt once, then stamped
    (build / (HOST + ".sources-sha256")).unlink()
    plugin_build.ensure_host_library(build)
    plugin_build.ensure_host_library(build)
    assert len(fake.calls) == 4


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_cmake_and_ninja_from_the_python_environment(monkeypatch, tmp_path):
    """`pip install cmake ninja` puts them in the environment's bin/, which need not be on PATH."""
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "cmake", None)  # `import cmake` fails: only bin/ counts here
    monkeypatch.setitem(sys.modules, "ninja", None)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "env" / "bin" / "python"))
    with pytest.raises(PluginBuildError, match=r"^cmake not found: `pip install cmake ninja`"):
        plugin_build.find_cmake()
    with pytest.raises(PluginBuildError, match=r"^no build tool found \(neither make nor ninja\): `pip install ninja`"):
        plugin_build.generator_args(tmp_path / "cmake-tree")
    cmake = _executable(tmp_path / "env" / "bin" / "cmake")
    ninja = _executable(tmp_path / "env" / "bin" / "ninja")
    assert plugin_build.find_cmake() == str(cmake)
    assert plugin_build.generator_args(tmp_path / "cmake-tree") == ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    # an existing CMake tree keeps its generator
    _executable(tmp_path / "cmake-tree" / "CMakeCache.txt")
    assert plugin_build.generator_args(tmp_path / "cmake-tree") == []


def test_make_is_kept_when_present(monkeypatch, tmp_path):
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: "/usr/bin/make" if name == "make" else None)
    assert plugin_build.generator_args(tmp_path) == []


def test_the_runtime_only_install_is_the_one_the_readme_shows():
    """README's "A machine that only runs bundles" installs what .ci/check-install checks, and those
    are among the package's own dependencies (torch not among them)."""
    import re
    import tomllib

    check = re.search(r'^RUNTIME_REQUIREMENTS="([^"]+)"', (REPO / ".ci" / "check-install").read_text(), re.M)
    assert check, "RUNTIME_REQUIREMENTS not found in .ci/check-install"
    runtime = check.group(1).split()
    readme = (REPO / "README.md").read_text().partition("### A machine that only runs bundles")[2]
    assert f"pip install {' '.join(runtime)}" in readme
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~\[ ]", d)[0].lower() for d in dependencies}
    assert set(runtime) <= names and "torch" in names and "torch" not in runtime
