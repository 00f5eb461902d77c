"""bundle/format.py: a bundle is checked before anything in it is used: every file against its sha256,
no path leaving the bundle, tarballs member by member before a byte is extracted (on the tiny
synthetic bundle of tests/bundles.py)."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
from bundles import CLASSES, SIDE, member, one_line, tarball_with

from transnext_deploy.artifacts import MANIFEST_FILE, STANDARD_FILE
from transnext_deploy.bundle import runtime
from transnext_deploy.bundle.format import LABELS_FILE, BundleError, open_bundle


# ------------------------------------------------------------------------------------------ refusals


def test_a_changed_file_is_refused(tiny_bundle):
    (tiny_bundle / LABELS_FILE).write_text("tampered\n" * CLASSES)
    with pytest.raises(BundleError) as info:
        runtime.load(tiny_bundle)
    assert "labels.txt does not match its sha256" in one_line(info.value)


def test_a_missing_file_is_refused(tiny_bundle):
    (tiny_bundle / "models" / f"{SIDE}x{SIDE}" / STANDARD_FILE).unlink()
    with pytest.raises(BundleError, match="model.onnx is missing"):
        runtime.load(tiny_bundle)


def test_a_listed_file_replaced_by_a_link_leaving_the_bundle_is_refused(tiny_bundle, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_bytes((tiny_bundle / LABELS_FILE).read_bytes())  # same bytes: only the link is wrong
    (tiny_bundle / LABELS_FILE).unlink()
    (tiny_bundle / LABELS_FILE).symlink_to(outside)
    with pytest.raises(BundleError, match="is a link"):
        runtime.load(tiny_bundle)


def test_a_manifest_path_leaving_the_bundle_is_refused(tiny_bundle):
    manifest = json.loads((tiny_bundle / MANIFEST_FILE).read_text())
    manifest["files"]["../escape"] = {"sha256": "0" * 64, "bytes": 0}
    (tiny_bundle / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"leaves the bundle"):
        runtime.load(tiny_bundle)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        runtime.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no manifest.json"):
        runtime.load(tmp_path / "empty")
    (tmp_path / "junk.tar.gz").write_bytes(b"junk")
    with pytest.raises(BundleError, match="not a bundle directory or a readable tarball"):
        runtime.load(tmp_path / "junk.tar.gz")


UNSAFE = {
    "absolute path": (member("/tmp/evil.txt", data=b"x"), "absolute path"),
    "dot-dot": (member("bundle/../evil.txt", data=b"x"), "leaves the bundle"),
    "symlink leaving": (member("bundle/lib/evil", tarfile.SYMTYPE, linkname="../../etc/passwd"), "points outside"),
    "absolute symlink": (member("bundle/evil", tarfile.SYMTYPE, linkname="/etc/passwd"), "points outside"),
    "hard link leaving": (member("bundle/evil", tarfile.LNKTYPE, linkname="../outside"), "points outside"),
    "character device": (member("bundle/tty", tarfile.CHRTYPE), "device or pipe"),
    "block device": (member("bundle/disk", tarfile.BLKTYPE), "device or pipe"),
    "fifo": (member("bundle/pipe", tarfile.FIFOTYPE), "device or pipe"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_tarball_members_are_refused_before_anything_is_extracted(case, tiny_bundle, tmp_path, private_tmp):
    (info, data), expected = UNSAFE[case]
    tarball = tarball_with(tiny_bundle, tmp_path / "b.tar.gz", lambda tar: tar.addfile(info, data))
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(BundleError) as info_:
        runtime.load(tarball)
    assert expected in one_line(info_.value)
    assert list(private_tmp.iterdir()) == []  # nothing extracted
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not Path("/tmp/evil.txt").exists()


def test_a_tarball_with_a_changed_file_is_refused_before_extraction(tiny_bundle, tmp_path, private_tmp):
    (tiny_bundle / LABELS_FILE).write_text("tampered\n")
    tarball = tarball_with(tiny_bundle, tmp_path / "b.tar.gz", lambda tar: None)
    with pytest.raises(BundleError) as info:
        runtime.load(tarball)
    assert "labels.txt does not match its sha256" in one_line(info.value)
    assert list(private_tmp.iterdir()) == []


def test_links_inside_the_bundle_are_allowed(tiny_bundle, tmp_path, private_tmp):
    link = member("bundle/labels-link.txt", tarfile.SYMTYPE, linkname=LABELS_FILE)
    tarball = tarball_with(tiny_bundle, tmp_path / "b.tar.gz", lambda tar: tar.addfile(*link))
    opened = open_bundle(tarball)
    try:
        assert (opened.root / "labels-link.txt").read_text().startswith("class 0")
    finally:
        opened.close()
    assert list(private_tmp.iterdir()) == []


def test_write_bytes_atomically_leaves_the_old_file_or_the_whole_new_one(tmp_path):
    from transnext_deploy.files import sha256_stream, sha256sum, write_bytes_atomically

    path = tmp_path / "cache" / "engine.bin"  # parents made
    write_bytes_atomically(path, b"first")
    write_bytes_atomically(path, b"second")
    assert path.read_bytes() == b"second"
    with pytest.raises(TypeError):
        write_bytes_atomically(path, "not bytes")  # fails while writing
    assert path.read_bytes() == b"second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["engine.bin"]  # no temporary left behind
    with open(path, "rb") as f:
        assert sha256_stream(f) == sha256sum(path) == hashlib.sha256(b"second").hexdigest()
