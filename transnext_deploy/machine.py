"""What this machine has: CPUs, the CPU's name, its load, and its CUDA GPUs.

One GPU detection for the whole package (`info`, export's engine step, bench and the backends):
it asks the NVIDIA driver itself (libcuda through ctypes), so it answers the same whether torch
is a CPU or a CUDA build and whatever onnxruntime was built for. At the bottom of the package.
"""

from __future__ import annotations

import ctypes
import os
import platform
from dataclasses import dataclass
from pathlib import Path


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it, else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float | None:
    """The 1-minute load average (None where the OS does not tell): above the thread count, other
    work shared the CPUs with the timed runs."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


@dataclass(frozen=True)
class CudaDevice:
    index: int
    name: str
    compute_capability: tuple[int, int]
    total_memory_bytes: int

    @property
    def sm(self) -> str:
        return f"{self.compute_capability[0]}{self.compute_capability[1]}"

    def as_dict(self) -> dict:
        return {"index": self.index, "name": self.name,
                "compute_capability": f"{self.compute_capability[0]}.{self.compute_capability[1]}",
                "sm": self.sm, "total_memory_mib": round(self.total_memory_bytes / 2**20)}

    def __str__(self) -> str:
        return f"{self.name} (sm_{self.sm})"


_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76


def _cu_error(lib, code: int) -> str:
    name = ctypes.c_char_p()
    try:
        if lib.cuGetErrorName(code, ctypes.byref(name)) == 0 and name.value:
            return f"{name.value.decode()} ({code})"
    except AttributeError:
        pass
    return f"error {code}"


def cuda_devices() -> tuple[list[CudaDevice], str | None]:
    """The CUDA GPUs the NVIDIA driver reports, and why there are none (None when some were found)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return [], "no CUDA GPU: the NVIDIA driver library libcuda.so.1 is not installed"
    rc = lib.cuInit(0)
    if rc != 0:
        return [], f"no CUDA GPU: cuInit failed with {_cu_error(lib, rc)}"
    count = ctypes.c_int(0)
    rc = lib.cuDeviceGetCount(ctypes.byref(count))
    if rc != 0 or count.value == 0:
        return [], "no CUDA GPU: the driver reports no device" + (f" ({_cu_error(lib, rc)})" if rc else "")
    devices = []
    for i in range(count.value):
        dev = ctypes.c_int()
        if lib.cuDeviceGet(ctypes.byref(dev), i) != 0:
            continue
        name = ctypes.create_string_buffer(256)
        lib.cuDeviceGetName(name, 256, dev)
        major, minor = ctypes.c_int(), ctypes.c_int()
        lib.cuDeviceGetAttribute(ctypes.byref(major), _CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)
        lib.cuDeviceGetAttribute(ctypes.byref(minor), _CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)
        total = ctypes.c_size_t()
        getter = getattr(lib, "cuDeviceTotalMem_v2", None) or lib.cuDeviceTotalMem
        getter(ctypes.byref(total), dev)
        devices.append(CudaDevice(i, name.value.decode(errors="replace"), (major.value, minor.value), total.value))
    if not devices:
        return [], "no CUDA GPU: the driver lists devices but none could be opened"
    return devices, None


__all__ = ["CudaDevice", "available_cpus", "cpu_name", "cuda_devices", "load_average"]
