"""What a run ran on: CPU or Apple chip, cores, memory, OS, mlx device and BLAS.

Gathered without importing mlx (the BLAS comes from labbench.machine.blas, which asked the library
itself in its self-test), and summarised to one line for the journal and `just compare`.
"""

import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from typing import Any


@cache
def cpu_model() -> str:
    """'AMD EPYC', 'Apple M2 Pro'; the machine type when the system does not say."""
    if sys.platform == "darwin":
        try:
            done = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=5,
            )
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


@dataclass(frozen=True)
class MachineMemory:
    bytes: int
    kind: str  # "unified memory" (a Mac: CPU and GPU share it) or "available RAM" (Linux)


def machine_memory() -> MachineMemory | None:
    """The memory a training here can use: a Mac's unified memory (sysctl hw.memsize), Linux's
    MemAvailable (what is free now without swapping); None when the system does not say."""
    if sys.platform == "darwin":
        try:
            done = subprocess.run(
                ["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, timeout=5
            )
            return MachineMemory(int(done.stdout.strip()), "unified memory")
        except (OSError, subprocess.SubprocessError, ValueError):
            return None
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                key, _, value = line.partition(":")
                if key == "MemAvailable":
                    return MachineMemory(int(value.split()[0]) * 1024, "available RAM")
    except (OSError, ValueError, IndexError):
        pass
    total = memory_bytes()
    return MachineMemory(total, "RAM") if total else None


def os_name() -> str:
    if sys.platform == "darwin":
        return f"macOS {platform.mac_ver()[0]}".strip()
    return f"{platform.system()} {platform.release()}".strip()


def mlx_device() -> str:
    """mlx's default device, known from the platform and the installed wheels."""
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return "gpu"
    from importlib import metadata  # ~0.1 s to import: only when a run is recorded

    try:
        metadata.version("mlx-cuda")
        return "gpu"
    except metadata.PackageNotFoundError:
        return "cpu"


def gather_hardware(blas: str, blas_library: str | None = None) -> dict[str, Any]:
    """This machine, with the BLAS labbench resolved for the processes it starts."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": memory_bytes(),
        "os": os_name(),
        "machine": platform.machine(),
        "mlx_device": mlx_device(),
        "blas": blas,
        "blas_library": blas_library,
    }


def short_os(name: str) -> str:
    """'Linux 6.1.0-18-amd64' -> 'Linux 6.1': the kernel's build says nothing about speed."""
    system, _, release = name.partition(" ")
    version = ".".join(release.split("-")[0].split(".")[:2])
    return f"{system} {version}".strip()


def hardware_line(hardware: dict[str, Any]) -> str:
    """'AMD EPYC, 2 cores, 23 GiB, Linux 6.1, mlx cpu, OpenBLAS 0.3.33 (Zen)'."""
    parts = [hardware.get("cpu") or "unknown CPU"]
    if hardware.get("cores"):
        parts.append(f"{hardware['cores']} cores")
    if hardware.get("memory_bytes"):
        parts.append(f"{round(hardware['memory_bytes'] / 2**30)} GiB")
    if hardware.get("os"):
        parts.append(short_os(hardware["os"]))
    if hardware.get("mlx_device"):
        parts.append(f"mlx {hardware['mlx_device']}")
    if hardware.get("blas"):
        parts.append(hardware["blas"])
    return ", ".join(parts)
