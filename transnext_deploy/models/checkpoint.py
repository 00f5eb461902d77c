"""Loading official TransNeXt checkpoints, and fetching them from the hub.

Checkpoints are read with `torch.load(weights_only=True)`: tensors and plain containers only,
nothing from the file is executed. Accepted layouts: a bare state dict, or one wrapped in
`model` / `state_dict` / `module` (nested wrappers too), with an optional `module.` prefix on
every key (DataParallel/DDP saves).
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..artifacts import HUB_URL_ENV
from ..cache import cache_dir
from ..errors import TransNeXtDeployError, one_line
from ..progress import Progress, no_progress
from .config import VARIANTS
from .transnext import TransNeXt

WRAPPER_KEYS = ("model", "state_dict", "module")
DEFAULT_HUB_URL = "https://huggingface.co"
# What one error line lists before it says "and N more".
MAX_KEYS_IN_MESSAGE = 3


class CheckpointError(TransNeXtDeployError):
    """A checkpoint that cannot be read or does not fit the model; the message is one line."""


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # key, ckpt, model
    ignored: list[str] = field(default_factory=list)  # e.g. `head.*` when loading into a backbone

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        def listing(keys: list[str]) -> str:
            shown = ", ".join(keys[:MAX_KEYS_IN_MESSAGE])
            more = len(keys) - MAX_KEYS_IN_MESSAGE
            return shown + (f" and {more} more" if more > 0 else "")

        parts = []
        if self.mismatched:
            parts.append(f"{len(self.mismatched)} mis-shaped (" + listing(
                [f"{k}: checkpoint {tuple(c)} vs model {tuple(m)}" for k, c, m in self.mismatched]) + ")")
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({listing(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({listing(self.unexpected)})")
        return "; ".join(parts) if parts else "all keys match"


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file and unwrap it to a flat {name: tensor} state dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # its pickle-protocol warning would break the one-line report
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - untrusted bytes can fail the unpickler in any way
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {_unreadable_reason(path, exc)}") from None
    return unwrap_state_dict(obj, source=str(path))


# torch.load's weights-only refusal wraps the real cause in advice to turn the safe loader off;
# the cause follows this marker.
_UNPICKLER_MARKER = "WeightsUnpickler error:"


def _unreadable_reason(path: Path, exc: BaseException) -> str:
    """What the file is, and the loader's own cause, in one line. Never suggests weights_only=False."""
    with open(path, "rb") as f:
        head = f.read(4)
    text = str(exc)
    if _UNPICKLER_MARKER in text:
        text = text.split(_UNPICKLER_MARKER, 1)[1].split("Check the documentation", 1)[0]
    cause = one_line(text)[:160] or type(exc).__name__
    if not head:
        return "the file is empty"
    if head.startswith(b"PK"):
        return f"a zip archive without a PyTorch state dict the safe loader accepts ({cause})"
    if head[:1] == b"\x80":
        return f"a pickle holding more than tensors and plain containers, which the safe loader refuses ({cause})"
    return "neither a zip archive nor a pickle (the two formats torch.save writes)"


def unwrap_state_dict(obj: object, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    while isinstance(obj, Mapping):
        wrapper = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if wrapper is None:
            break
        obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source} holds no state dict (expected a mapping of parameter names to tensors)")
    state = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: entry {key!r} is not a named tensor")
        state[key] = value
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def guess_variant(state: Mapping[str, torch.Tensor]) -> str | None:
    """Name of the published variant whose parameter names and shapes this state dict has."""
    for name, config in VARIANTS.items():
        dims_ok = all(
            tuple(state.get(f"patch_embed{i + 1}.proj.weight", torch.empty(0)).shape[:1]) == (config.embed_dims[i],)
            for i in range(4))
        depth_ok = all(
            f"block{i + 1}.{config.depths[i] - 1}.norm1.weight" in state
            and f"block{i + 1}.{config.depths[i]}.norm1.weight" not in state for i in range(4))
        aa_last = "block4.0.attn.learnable_tokens" in state
        if dims_ok and depth_ok and aa_last == bool(config.window_sizes[3]):
            return name
    return None


def compare_state_dict(model: TransNeXt, state: Mapping[str, torch.Tensor]) -> tuple[LoadReport, dict]:
    expected = model.state_dict()
    report = LoadReport()
    usable = {}
    for key, value in state.items():
        if key not in expected:
            if model.backbone and key.startswith("head."):
                report.ignored.append(key)
            else:
                report.unexpected.append(key)
        elif tuple(value.shape) != tuple(expected[key].shape):
            report.mismatched.append((key, tuple(value.shape), tuple(expected[key].shape)))
        else:
            usable[key] = value
    report.missing = [k for k in expected if k not in state]
    return report, usable


def load_checkpoint(model: TransNeXt, path: str | os.PathLike, strict: bool = True) -> LoadReport:
    """Load a checkpoint into `model`. With `strict`, any missing, unexpected or mis-shaped key
    raises CheckpointError with a one-line report; otherwise the fitting tensors are loaded."""
    state = read_state_dict(path)
    report, usable = compare_state_dict(model, state)
    if strict and not report.ok:
        variant = guess_variant(state)
        hint = f"; the checkpoint looks like transnext_{variant}" if variant and variant != model.name else ""
        raise CheckpointError(f"{Path(path).name} does not fit transnext_{model.name}: {report.summary()}{hint}")
    model.load_state_dict(usable, strict=False)
    return report


# --------------------------------------------------------------------------------------------
# official weights on the hub


@dataclass(frozen=True)
class OfficialWeights:
    variant: str
    resolution: int
    repo: str  # hub repository, e.g. DaiShiResearch/transnext-tiny-224-1k
    filename: str  # e.g. transnext_tiny_224_1k.pth
    pretrain_size: int  # pretrain size to build the model with for these weights

    def url(self, hub_url: str | None = None) -> str:
        base = (hub_url or os.environ.get(HUB_URL_ENV) or DEFAULT_HUB_URL).rstrip("/")
        return f"{base}/{self.repo}/resolve/main/{self.filename}"


def _official_table() -> dict[tuple[str, int], OfficialWeights]:
    table = {}
    for v in ("micro", "tiny", "small", "base"):
        table[(v, 224)] = OfficialWeights(v, 224, f"DaiShiResearch/transnext-{v}-224-1k", f"transnext_{v}_224_1k.pth", 224)
    for v in ("small", "base"):
        table[(v, 384)] = OfficialWeights(
            v, 384, f"DaiShiResearch/transnext-{v}-384-1k-ft-1k", f"transnext_{v}_384_1k_ft_1k.pth", 224)
    table[("micro_AAAA", 256)] = OfficialWeights(
        "micro_AAAA", 256, "DaiShiResearch/transnext-micro-AAAA-256-1k", "transnext_micro_AAAA_256_1k.pth", 256)
    return table


OFFICIAL_WEIGHTS = _official_table()


def official_weights(variant: str, resolution: int | None = None) -> OfficialWeights:
    """The published weights for a variant; `resolution` picks the 384 fine-tuned ones."""
    choices = [w for (v, _), w in OFFICIAL_WEIGHTS.items() if v == variant]
    if not choices:
        raise CheckpointError(f"no official weights are published for {variant!r}")
    if resolution is None:
        return min(choices, key=lambda w: w.resolution)
    match = [w for w in choices if w.resolution == resolution]
    if not match:
        have = ", ".join(str(w.resolution) for w in choices)
        raise CheckpointError(f"transnext_{variant} has official weights at {have} only, not {resolution}")
    return match[0]


def download_weights(
    weights: OfficialWeights,
    directory: str | os.PathLike | None = None,
    hub_url: str | None = None,
    progress: Progress = no_progress,
    timeout: float = 60.0,
) -> Path:
    """Download official weights once into the cache (or `directory`) and return the file path.

    The file is streamed to a temporary name beside its destination, checked to be a loadable
    state dict, then renamed into place, so an interrupted download never leaves a file that
    looks complete.
    """
    directory = Path(directory) if directory is not None else cache_dir()
    target = directory / weights.filename
    if target.is_file():
        return target
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"cannot create download directory {directory}: {exc.strerror or exc}") from None
    url = weights.url(hub_url)
    fd, tmp_name = tempfile.mkstemp(prefix=weights.filename + ".", suffix=".part", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = response.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                progress(f"downloading {weights.filename}: {done / 1e6:.0f} MB", advance=len(chunk), total=total)
        if total is not None and done != total:
            raise CheckpointError(f"download of {url} stopped at {done} of {total} bytes")
        read_state_dict(tmp)
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise CheckpointError(f"could not download {url} ({reason}); fetch it by hand and pass its path") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


OFFICIAL = "official"  # --checkpoint official: the published weights, downloaded once


def check_checkpoint_option(checkpoint: str | os.PathLike | None) -> None:
    """Refuse, before any work, a --checkpoint that is neither None, "official" nor an existing file."""
    if checkpoint is not None and str(checkpoint) != OFFICIAL and not Path(checkpoint).is_file():
        raise CheckpointError(f"checkpoint not found: {checkpoint}")


def resolve_checkpoint(checkpoint: str | os.PathLike | None, variant: str) -> Path | None:
    """The file a --checkpoint value names: None (random weights), the official weights of `variant`
    (downloaded once into the user cache), or the given file."""
    check_checkpoint_option(checkpoint)
    if checkpoint is None:
        return None
    if str(checkpoint) == OFFICIAL:
        return download_weights(official_weights(variant))
    return Path(checkpoint)
