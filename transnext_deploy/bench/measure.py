"""Timing one case: warm-up passes with memory measured around them, then timed passes interleaved
across backends round by round in alternating order (ABBA), and the row each backend gets."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..backends.base import Backend, NoProbe
from ..errors import one_line
from .report import BenchRow


@dataclass(frozen=True)
class Timing:
    """How each case is timed (BenchOptions' runs, warmup, min_runs, max_seconds, memory)."""

    runs: int = 10
    warmup: int = 1
    min_runs: int = 3
    max_seconds: float = 5.0  # per backend and case: stop the rounds after this long once min_runs are done
    memory: bool = True


def _percentiles(times_ms: list[float]) -> dict:
    a = np.asarray(times_ms)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "min": float(a.min()),
            "max": float(a.max())}


# Pause before each timed call when backends alternate. PyTorch's OpenMP workers and onnxruntime's
# pool spin for a while after a call; without the pause they take CPU time from the next backend's
# call on a small machine (measured here on 2 cores: eager PyTorch 10-15% slower right after an
# onnxruntime call).
SETTLE_SECONDS = 0.05


def settle() -> None:
    """Let the worker threads of the previous runtime go idle before the next timed call."""
    time.sleep(SETTLE_SECONDS)


def _warm_up(label: str, backend: Backend, x: np.ndarray, row: BenchRow, timing: Timing,
             tick: Callable[[str], None]) -> dict:
    """The untimed passes of one backend, with its memory measured around them; returns its state."""
    probe = backend.probe() if timing.memory else NoProbe()
    row.memory_method = probe.method
    state = {"backend": backend, "probe": probe, "times": [], "out": None, "first": None,
             "prepared": backend.prepare(x)}
    if timing.warmup:
        probe.start()
        for i in range(timing.warmup):
            tick(f"{label} warm-up {i + 1}/{timing.warmup}")
            start = time.perf_counter()
            state["out"] = backend.run(state["prepared"])
            if state["first"] is None:
                state["first"] = (time.perf_counter() - start) * 1000
        row.memory_mib = probe.stop()
    return state


def _timed_rounds(state: dict[str, dict], rows: dict[str, BenchRow], timing: Timing,
                  tick: Callable[[str], None]) -> None:
    """The timed passes, interleaved across backends round by round in alternating order (ABBA)."""
    rounds = 0
    loop_start = time.perf_counter()
    while state and rounds < timing.runs:
        order = list(state) if rounds % 2 == 0 else list(state)[::-1]
        for label in order:
            st = state[label]
            tick(f"round {rounds + 1}/{timing.runs}: {label}")
            if len(state) > 1:
                settle()
            measure_memory = rounds == 0 and not timing.warmup
            try:
                if measure_memory:
                    st["probe"].start()
                start = time.perf_counter()
                st["out"] = st["backend"].run(st["prepared"])
                elapsed = (time.perf_counter() - start) * 1000
                if measure_memory:
                    rows[label].memory_mib = st["probe"].stop()
            except Exception as exc:  # noqa: BLE001 - reported in the row, the other backends go on
                fail(rows[label], exc)
                del state[label]
                continue
            st["times"].append(elapsed)
            if st["first"] is None:
                st["first"] = elapsed
        rounds += 1
        budget = timing.max_seconds * max(1, len(state))
        if rounds >= timing.min_runs and time.perf_counter() - loop_start > budget:
            break


def _finish_row(row: BenchRow, st: dict, reference: np.ndarray, timing: Timing) -> None:
    from ..compare import error_stats, top1_agreement

    times = st["times"]
    output = st["backend"].to_numpy(st["out"])[0]
    try:
        stats = error_stats(reference, output).as_dict()
    except ValueError as exc:  # shape mismatch
        fail(row, exc)
        return
    stats["top1_agreement"] = top1_agreement(reference, output)
    row.accuracy = stats
    row.runs = len(times)
    row.first_call_ms = st["first"]
    row.latency_ms = _percentiles(times)
    row.times_ms = [round(t, 4) for t in times]
    row.throughput_img_s = row.batch * 1000.0 / row.latency_ms["mean"]
    if row.backend == "torch-compile":
        row.notes = [f"first call, which compiles: {st['first'] / 1000:.1f} s"]
    if len(times) < timing.runs:
        h, w = row.resolution
        row.notes.append(f"{len(times)} of {timing.runs} runs at {h}x{w}, batch {row.batch}: "
                         f"time budget reached ({timing.max_seconds:g} s per backend)")


def measure_case(loaded: dict, resolution: tuple[int, int], batch: int, case, threads: int, timing: Timing,
                 tick: Callable[[str], None]) -> list[BenchRow]:
    """One resolution x batch for every loaded backend ({case: backend}, a case having `backend`,
    `precision` and `label`): per backend its warm-up passes (memory is measured around them), then
    the timed rounds."""
    x, reference = case
    rows: dict[str, BenchRow] = {}
    state: dict[str, dict] = {}
    for c, backend in loaded.items():
        row = rows[c.label] = BenchRow(c.backend, resolution, batch, "ok", precision=c.precision,
                                       graph=backend.graph, warmup=timing.warmup,
                                       device=_device_label(backend.device, threads), notes=list(backend.notes))
        if c.backend == "torch-plain" and backend.device == "cpu":
            row.notes.append("this is the reference")
        try:
            state[c.label] = _warm_up(c.label, backend, x, row, timing, tick)
        except Exception as exc:  # noqa: BLE001 - reported in the row, the other backends go on
            fail(row, exc)
    _timed_rounds(state, rows, timing, tick)
    for label, st in state.items():
        _finish_row(rows[label], st, reference, timing)
    return [rows[c.label] for c in loaded]


def fail(row: BenchRow, exc: BaseException) -> None:
    row.status, row.reason = "failed", one_line(exc)
    row.memory_mib = None
    if row.backend == "torch-compile":
        row.status, row.reason = "not available", "torch.compile failed: " + row.reason


def _device_label(device: str, threads: int) -> str:
    return f"cpu ({threads} threads)" if device == "cpu" else device


__all__ = ["SETTLE_SECONDS", "Timing", "fail", "measure_case", "settle"]
