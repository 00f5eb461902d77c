"""The deployable bundle: its layout, its manifest, and opening one safely.

A bundle is a directory (or a .tar.gz of one) that `transnext-deploy package` writes:

    manifest.json                  the one manifest: what, how to feed it, what comes out, sha256 of every file
    labels.txt                     class names, one per line (classification bundles)
    models/<H>x<W>/model.onnx      the validated graphs of one resolution (artifacts.GRAPH_FILES),
    models/<H>x<W>/validation.json     their validation against PyTorch,
    models/<H>x<W>/*.engine        and the TensorRT engines built for it, when any
    lib/                           plugin libraries built by the packaging machine (host library; TensorRT plugin)
    plugins/                       the plugin sources and CMake files (`cmake -S plugins`)

`open_bundle` checks a bundle before anything in it is used: every file the manifest lists must be
there with its sha256, no listed path may leave the bundle, and a tarball is checked member by
member (no absolute paths, no `..`, no links leaving the bundle, no devices or pipes) and hashed
as it is read, before a single byte is written to disk. Any failure is one line
(`BundleError`), and nothing is extracted.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..artifacts import MANIFEST_FILE

from ..files import sha256_stream, sha256sum
from ..errors import TransNeXtDeployError, one_line

FORMAT = "transnext-deploy bundle"
FORMAT_VERSION = 2  # 2: engines name their runtime and compute capabilities; graphs in fp32 and fp16
LABELS_FILE = "labels.txt"
MODELS_DIR = "models"
LIB_DIR = "lib"
PLUGINS_DIR = "plugins"
TAR_SUFFIXES = (".tar.gz", ".tgz")


class BundleError(TransNeXtDeployError):
    """A bundle that cannot be used (missing, tampered with, unsafe); str() is one line."""


def model_dir(resolution: tuple[int, int]) -> str:
    """The bundle-relative directory of one resolution: models/224x224."""
    return f"{MODELS_DIR}/{resolution[0]}x{resolution[1]}"


def is_tarball(path: str | os.PathLike) -> bool:
    return str(path).endswith(TAR_SUFFIXES)


def file_entries(root: Path) -> dict[str, dict]:
    """{relative posix path: {bytes, sha256}} of every regular file below `root` but the manifest."""
    entries = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            rel = path.relative_to(root).as_posix()
            if rel != MANIFEST_FILE:
                entries[rel] = {"bytes": path.stat().st_size, "sha256": sha256sum(path)}
    return entries


# ------------------------------------------------------------------------------------------ checks


def _check_relative(name: str, what: str) -> str:
    """A bundle-relative path that stays inside the bundle, normalised; else BundleError."""
    if not name or name.startswith("/") or PurePosixPath(name).is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise BundleError(f"{what}: absolute path {name!r} refused")
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise BundleError(f"{what}: path {name!r} leaves the bundle ('..')")
    normalised = posixpath.normpath(name)
    return "" if normalised == "." else normalised


def _check_manifest(manifest: object, where: str) -> dict:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{where}: {MANIFEST_FILE} is not a transnext-deploy bundle manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BundleError(f"{where}: bundle format {version!r} is newer than this transnext-deploy reads "
                          f"({FORMAT_VERSION}); upgrade transnext-deploy")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{where}: {MANIFEST_FILE} lists no files")
    for name, entry in files.items():
        _check_relative(name, where)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise BundleError(f"{where}: {MANIFEST_FILE} has no sha256 for {name}")
    return manifest


def _read_manifest(path: Path, where: str) -> dict:
    try:
        return _check_manifest(json.loads(path.read_text()), where)
    except FileNotFoundError:
        raise BundleError(f"{where}: no {MANIFEST_FILE}: not a bundle") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"{where}: unreadable {MANIFEST_FILE}: {one_line(exc)}") from None


def verify_directory(root: Path) -> dict:
    """Check a bundle directory against its manifest; returns the manifest."""
    where = str(root)
    manifest = _read_manifest(root / MANIFEST_FILE, where)
    real_root = root.resolve()
    for name, entry in manifest["files"].items():
        path = root / name
        if path.is_symlink() or not path.resolve().is_relative_to(real_root):
            raise BundleError(f"{where}: {name} is a link (the bundle lists regular files only)")
        if not path.is_file():
            raise BundleError(f"{where}: {name} is missing")
        if sha256sum(path) != entry["sha256"]:
            raise BundleError(f"{where}: {name} does not match its sha256 in {MANIFEST_FILE}: refusing the bundle")
    return manifest


def _tar_members(tar: tarfile.TarFile, where: str) -> tuple[str, dict[str, tarfile.TarInfo]]:
    """Check every member; returns (the bundle's directory prefix inside the tarball, regular files
    by bundle-relative path)."""
    members = tar.getmembers()
    names = [_check_relative(m.name, where) for m in members]
    for member in members:
        if member.isdev() or member.isfifo():
            raise BundleError(f"{where}: member {member.name!r} is a device or pipe: refused")
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            raise BundleError(f"{where}: member {member.name!r} is not a file or directory: refused")
    manifests = [n for m, n in zip(members, names) if m.isfile() and posixpath.basename(n) == MANIFEST_FILE]
    if not manifests:
        raise BundleError(f"{where}: no {MANIFEST_FILE} in the tarball: not a bundle")
    prefix = posixpath.dirname(min(manifests, key=lambda n: n.count("/")))

    def inside(path: str) -> bool:
        return not prefix or path == prefix or path.startswith(prefix + "/")

    files = {}
    for member, name in zip(members, names):
        if not inside(name):
            raise BundleError(f"{where}: member {member.name!r} lies outside the bundle directory {prefix}/")
        if member.issym() or member.islnk():
            target = member.linkname
            # A symbolic link is relative to its own directory, a hard link to the archive's root.
            base = posixpath.dirname(name) if member.issym() else ""
            resolved = posixpath.normpath(posixpath.join(base, target))
            if (PurePosixPath(target).is_absolute() or resolved == ".." or resolved.startswith("../")
                    or not inside(resolved) or resolved == prefix):
                raise BundleError(f"{where}: link {member.name!r} -> {target!r} points outside the bundle")
        rel = name[len(prefix) + 1:] if prefix else name
        if rel in files and member.isfile():
            raise BundleError(f"{where}: member {member.name!r} appears twice")
        if member.isfile() or member.issym() or member.islnk():
            files[rel] = member
    return prefix, files


def _verify_tarball(tar: tarfile.TarFile, where: str) -> tuple[str, dict]:
    prefix, members = _tar_members(tar, where)
    manifest_member = members[MANIFEST_FILE]
    try:
        manifest = _check_manifest(json.loads(tar.extractfile(manifest_member).read()), where)
    except ValueError as exc:
        raise BundleError(f"{where}: unreadable {MANIFEST_FILE}: {one_line(exc)}") from None
    for name, entry in manifest["files"].items():
        member = members.get(name)
        if member is None:
            raise BundleError(f"{where}: {name} is missing")
        if not member.isfile():
            raise BundleError(f"{where}: {name} is a link (the bundle lists regular files only)")
        if sha256_stream(tar.extractfile(member)) != entry["sha256"]:
            raise BundleError(f"{where}: {name} does not match its sha256 in {MANIFEST_FILE}: refusing the bundle")
    return prefix, manifest


@dataclass
class OpenBundle:
    """A checked bundle: `root` is its directory (a private extraction of a tarball, removed by close())."""

    root: Path
    manifest: dict
    source: str
    _extracted: Path | None = field(default=None, repr=False)

    def path(self, name: str) -> Path:
        return self.root / _check_relative(name, self.source)

    def close(self) -> None:
        if self._extracted is not None:
            shutil.rmtree(self._extracted, ignore_errors=True)
            self._extracted = None


def open_bundle(source: str | os.PathLike) -> OpenBundle:
    """Check a bundle directory or tarball (see the module docstring) and return it ready to use. A
    tarball is checked and hashed before it is extracted, into a private temporary directory."""
    path = Path(source).expanduser()
    where = str(source)
    if path.is_dir():
        return OpenBundle(path, verify_directory(path), where)
    if not path.exists():
        raise BundleError(f"bundle not found: {where}")
    try:
        tar = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise BundleError(f"{where}: not a bundle directory or a readable tarball: "
                          f"{one_line(exc)}") from None
    with tar:
        try:
            prefix, manifest = _verify_tarball(tar, where)
            target = Path(tempfile.mkdtemp(prefix="transnext-bundle-"))
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BundleError(f"{where}: damaged tarball: {one_line(exc)}") from None
        try:
            tar.extractall(target, filter="data")  # every member was checked above; the "data" filter besides
        except (tarfile.TarError, EOFError, OSError) as exc:
            shutil.rmtree(target, ignore_errors=True)
            raise BundleError(f"{where}: cannot extract: {one_line(exc)}") from None
    root = target / prefix if prefix else target
    return OpenBundle(root, manifest, where, target)


def write_tarball(root: Path, destination: Path) -> None:
    """`root` as destination (.tar.gz), members under root's name, no owners; written to a
    temporary name in the same directory and renamed into place."""
    tmp = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    try:
        # Level 1: the graphs are float weights, which gzip hardly shrinks at any level (micro at 224 and
        # 384: 409 MB -> 321 MB at level 1, 319 MB at level 6), and level 1 is the faster.
        with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
            tar.add(root, arcname=destination.name[: -len(next(s for s in TAR_SUFFIXES
                                                              if destination.name.endswith(s)))],
                    filter=clean)
        os.replace(tmp, destination)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LABELS_FILE",
    "LIB_DIR",
    "MODELS_DIR",
    "PLUGINS_DIR",
    "BundleError",
    "OpenBundle",
    "file_entries",
    "is_tarball",
    "model_dir",
    "open_bundle",
    "verify_directory",
    "write_tarball",
]
