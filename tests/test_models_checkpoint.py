"""Checkpoint loading (official layouts, strictness, safety) and the hub download path."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from transnext_deploy import create_model
from transnext_deploy.models.checkpoint import (
    CheckpointError,
    OfficialWeights,
    download_weights,
    guess_variant,
    load_checkpoint,
    official_weights,
)


@pytest.fixture(scope="module")
def micro_state():
    torch.manual_seed(1)
    return create_model("micro").state_dict()


@pytest.mark.parametrize("wrap", ["bare", "model", "state_dict", "module_prefix", "nested"])
def test_official_layouts_round_trip_strictly(tmp_path, micro_state, wrap):
    sd = micro_state
    obj = {
        "bare": sd,
        "model": {"model": sd, "epoch": 300},
        "state_dict": {"state_dict": sd},
        "module_prefix": {f"module.{k}": v for k, v in sd.items()},
        "nested": {"model": {"state_dict": {f"module.{k}": v for k, v in sd.items()}}},
    }[wrap]
    path = tmp_path / "transnext_micro_224_1k.pth"
    torch.save(obj, path)
    model = create_model("micro")
    report = load_checkpoint(model, path)
    assert report.ok and not report.ignored
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_classification_checkpoint_loads_into_backbone_ignoring_head(tmp_path, micro_state):
    path = tmp_path / "ckpt.pth"
    torch.save(micro_state, path)
    report = load_checkpoint(create_model("micro", backbone=True), path)
    assert report.ok and report.ignored == ["head.weight", "head.bias"]


def test_wrong_shape_names_the_key(tmp_path, micro_state):
    sd = dict(micro_state)
    sd["block1.0.attn.q.weight"] = torch.zeros(50, 48)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(create_model("micro"), path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "1 mis-shaped (block1.0.attn.q.weight: checkpoint (50, 48) vs model (48, 48))" in msg


def test_missing_and_unexpected_keys_are_named(tmp_path, micro_state):
    sd = dict(micro_state)
    del sd["block2.1.attn.learnable_tokens"]
    sd["block9.0.extra"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"1 missing \(block2\.1\.attn\.learnable_tokens\); "
                                              r"1 unexpected \(block9\.0\.extra\)"):
        load_checkpoint(create_model("micro"), path)
    report = load_checkpoint(create_model("micro"), path, strict=False)
    assert report.missing == ["block2.1.attn.learnable_tokens"] and report.unexpected == ["block9.0.extra"]


def test_checkpoint_of_another_variant_is_recognised(tmp_path):
    path = tmp_path / "transnext_tiny_224_1k.pth"
    torch.save(create_model("tiny").state_dict(), path)
    with pytest.raises(CheckpointError, match=r"does not fit transnext_micro: .*looks like transnext_tiny$"):
        load_checkpoint(create_model("micro"), path)


@pytest.mark.parametrize("name", ["micro", "tiny", "small", "base", "micro_AAAA"])
def test_guess_variant(name):
    assert guess_variant(create_model(name).state_dict()) == name


def test_corrupt_and_missing_files_fail_in_one_line(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a readable PyTorch checkpoint") as err:
        load_checkpoint(create_model("micro"), corrupt)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(create_model("micro"), tmp_path / "absent.pth")
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(CheckpointError, match="entry 'epoch' is not a named tensor"):
        load_checkpoint(create_model("micro"), empty)


@pytest.mark.parametrize("content, what", [
    (bytes(range(7, 256)) * 4, "neither a zip archive nor a pickle"),
    (b"", "the file is empty"),
    (b"\x80\x02\xe3garbage", "a pickle holding more than tensors"),
])
def test_unreadable_file_says_what_it_is_not_and_never_suggests_the_unsafe_loader(tmp_path, content, what):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(create_model("micro"), path)
    message = str(err.value)
    assert what in message
    assert "\n" not in message and "weights_only" not in message and "False" not in message, message


def test_unsafe_pickle_reports_the_unpicklers_own_cause(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"\x80\x02\xe3")  # opcode 227 does not exist
    with pytest.raises(CheckpointError, match=r"safe loader refuses \(.*227") as err:
        load_checkpoint(create_model("micro"), path)
    assert "Re-running" not in str(err.value)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_code_in_a_checkpoint_is_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": _Payload()}, f)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(create_model("micro"), path)
    assert not (tmp_path / "PWNED").exists()


# ---------------------------------------------------------------------------------------------
# hub download, against a local HTTP server holding files this test makes


def test_download_fetches_once_and_the_file_loads(hub, tmp_path):
    root, url = hub
    weights = official_weights("micro")
    assert weights.repo == "DaiShiResearch/transnext-micro-224-1k" and weights.filename == "transnext_micro_224_1k.pth"
    (root / weights.repo).mkdir(parents=True)
    sd = create_model("micro").state_dict()
    torch.save({"model": sd}, root / weights.repo / weights.filename)
    seen = []  # the package's progress shape: (description, advance, total)
    path = download_weights(weights, tmp_path / "cache", hub_url=url,
                            progress=lambda text, advance=0.0, total=None: seen.append((text, advance, total)))
    size = path.stat().st_size
    assert path.name == weights.filename and sum(a for _, a, _ in seen) == size and seen[-1][2] == size
    assert seen[-1][0] == f"downloading {weights.filename}: {size / 1e6:.0f} MB"
    report = load_checkpoint(create_model("micro"), path)
    assert report.ok
    (root / weights.repo / weights.filename).unlink()  # a second call must not go to the network
    assert download_weights(weights, tmp_path / "cache", hub_url=url) == path


def test_failed_downloads_leave_nothing_behind(hub, tmp_path):
    root, url = hub
    weights = official_weights("tiny")
    cache = tmp_path / "cache"
    with pytest.raises(CheckpointError, match="could not download .*transnext_tiny_224_1k.pth"):
        download_weights(weights, cache, hub_url=url)
    assert list(cache.iterdir()) == []
    (root / weights.repo).mkdir(parents=True)
    torch.save(create_model("micro").state_dict(), root / weights.repo / weights.filename)
    hub.truncate.add(weights.filename)
    with pytest.raises(CheckpointError, match="stopped at|could not download"):
        download_weights(weights, cache, hub_url=url)
    assert list(cache.iterdir()) == []


def test_official_weights_table():
    assert official_weights("small", 384).filename == "transnext_small_384_1k_ft_1k.pth"
    assert official_weights("small", 384).pretrain_size == 224
    assert official_weights("micro_AAAA").resolution == 256
    with pytest.raises(CheckpointError, match="224 only, not 384"):
        official_weights("tiny", 384)
    assert isinstance(official_weights("base"), OfficialWeights)
