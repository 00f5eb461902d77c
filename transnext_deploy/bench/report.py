"""What bench reports: one row per backend x resolution x batch, the report around the rows, and
how its numbers are written (JSON, table cells)."""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import TransNeXtDeployError
from ..machine import available_cpus, cpu_name, cuda_devices, load_average


class BenchError(TransNeXtDeployError):
    """Bad benchmark options, or a report that cannot be written; str() is one line."""


def case_label(backend: str, precision: str | None) -> str:
    """A backend as the table, the figure and the polygraphy commands name it: `tensorrt fp16`,
    `onnxruntime-cpu` (a precision only for the engine backends)."""
    return backend if precision is None else f"{backend} {precision}"


@dataclass
class BenchRow:
    backend: str  # a name of backends.registry.BACKENDS
    resolution: tuple[int, int]
    batch: int
    status: str  # "ok", "not available" (missing here), "skipped" (opt-in), "failed" (raised while running)
    reason: str = ""
    precision: str | None = None  # an engine backend's precision (a row each); None for the others
    device: str = ""
    graph: str = ""
    runs: int = 0
    warmup: int = 0
    first_call_ms: float | None = None
    latency_ms: dict = field(default_factory=dict)  # p50, p90, p99, mean, min, max
    times_ms: list[float] = field(default_factory=list)  # every timed pass, in order
    throughput_img_s: float | None = None
    memory_mib: float | None = None
    memory_method: str = ""
    accuracy: dict = field(default_factory=dict)  # max_abs, mean_abs, relative, cosine, top1_agreement
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def label(self) -> str:
        return case_label(self.backend, self.precision)

    @property
    def status_text(self) -> str:
        return self.status if self.ok else f"{self.status}: {self.reason}"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["resolution"] = list(self.resolution)
        d["label"] = self.label
        d["status_text"] = self.status_text
        return d


@dataclass
class BenchReport:
    meta: dict
    rows: list[BenchRow]
    polygraphy: list[dict]
    seconds: float

    def as_dict(self) -> dict:
        return {"meta": self.meta, "rows": [r.as_dict() for r in self.rows], "polygraphy": self.polygraphy,
                "seconds": self.seconds}

    def write_json(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.as_dict(), indent=2, default=_json_default))
        except OSError as exc:
            raise BenchError(f"cannot write {path}: {exc.strerror or exc}") from None
        return path


def check_report_paths(json_path: str | os.PathLike | None, plot_path: str | os.PathLike | None) -> None:
    """Refuse, before any measurement, where the report and the figure cannot go."""
    for path, option in ((json_path, "--json"), (plot_path, "--plot")):
        if path is not None and Path(path).is_dir():
            raise BenchError(f"{option} {path} is a directory; give a file path")
    if plot_path is not None and Path(plot_path).suffix.lower() != ".png":
        raise BenchError(f"--plot writes a PNG: give a path ending in .png, got {plot_path}")


def load_report(path: str | os.PathLike) -> BenchReport:
    """A report written by `BenchReport.write_json` (e.g. to plot it again)."""
    data = json.loads(Path(path).read_text())
    names = set(BenchRow.__dataclass_fields__)
    rows = []
    for d in data["rows"]:
        d = {k: v for k, v in d.items() if k in names}
        d["resolution"] = tuple(d["resolution"])
        rows.append(BenchRow(**d))
    return BenchReport(data["meta"], rows, data.get("polygraphy", []), data.get("seconds", 0.0))


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def machine_info(threads: int, device: str) -> dict:
    """The machine a report was measured on: CPU, threads, versions, the GPU torch ran on."""
    import onnxruntime as ort
    import torch

    info = {"cpu": cpu_name(), "cpus_available": available_cpus(), "threads": threads, "torch_device": device,
            "torch": torch.__version__, "onnxruntime": ort.__version__, "python": platform.python_version()}
    if device == "cuda" and torch.cuda.is_available():
        devices, _ = cuda_devices()
        if devices:
            info["gpu"] = devices[0].name
    load = load_average()
    if load is not None:
        info["load_average_1min"] = load
    return info


def fmt_number(value: float | None, kind: str) -> str:
    """Table formatting shared by the CLI."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "ms":
        return f"{value:.1f}" if value >= 10 else f"{value:.2f}"
    if kind == "ips":
        return f"{value:.1f}" if value >= 10 else f"{value:.2f}"
    if kind == "mib":
        return f"{value:.0f}"
    if kind == "err":
        return "0" if value == 0 else f"{value:.1e}"
    if kind == "cos":
        return f"{value:.6f}"
    if kind == "top1":
        return f"{value:.0%}"
    return str(value)


__all__ = ["BenchError", "BenchReport", "BenchRow", "case_label", "check_report_paths", "fmt_number", "load_report",
           "machine_info"]
