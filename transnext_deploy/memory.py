"""Peak resident-memory growth of this process, as bench and benchmarks/bench_attention.py measure it.

Linux only: the resident-set high-water mark (VmHWM of /proc/self/status) is reset to the current
resident set through /proc/self/clear_refs, after freed heap memory has been handed back to the OS
(glibc malloc_trim), so the baseline is what is live, not what the allocator kept from earlier
work. Where the mark cannot be reset, the probes answer None. At the bottom of the package.
"""

from __future__ import annotations

import ctypes
import gc
import re
from collections.abc import Callable
from pathlib import Path


def proc_status_kib(key: str) -> int | None:
    """A `kB` field of /proc/self/status (VmRSS, VmHWM, ...), or None."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def release_free_memory() -> None:
    """Collect garbage and hand memory that malloc keeps after frees back to the OS (glibc)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_high_water_mark() -> bool:
    """Reset VmHWM to the current resident set (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssPeakProbe:
    """start() ... stop(): how far the resident set grew at its peak in between, in MiB."""

    method = "peak resident-set growth (VmHWM)"

    def __init__(self, method: str | None = None):
        if method:
            self.method = method
        self.ok = False
        self.base: int | None = None

    def start(self) -> None:
        release_free_memory()
        self.base = proc_status_kib("VmRSS")
        self.ok = self.base is not None and reset_high_water_mark()

    def stop(self) -> float | None:
        peak = proc_status_kib("VmHWM")
        if not self.ok or peak is None or self.base is None:
            return None
        return max(0.0, (peak - self.base) / 1024)


def peak_rss_growth_mib(fn: Callable[[], object]) -> float | None:
    """Peak resident-set growth while fn() runs, in MiB; None (and fn not run) when the kernel does not tell."""
    probe = RssPeakProbe()
    probe.start()
    if not probe.ok:
        return None
    fn()
    return probe.stop()


__all__ = ["RssPeakProbe", "peak_rss_growth_mib", "proc_status_kib", "release_free_memory", "reset_high_water_mark"]
