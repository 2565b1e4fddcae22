"""What the bench scripts share: the machine they ran on, and best-of-N timing that waits for
the device (a CUDA kernel returns before it is done)."""

from __future__ import annotations

import platform
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch

_T = TypeVar("_T")


def cpu_model() -> str:
    """The CPU's model name (lscpu), or what the platform module knows."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def sync(device: Any) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def best_time(
    fn: Callable[[], _T], device: Any, repeats: int, warmup: bool = True
) -> tuple[float, _T | None]:
    """Best wall time of ``repeats`` calls of ``fn`` (after one warm-up call: allocator,
    kernels, BLAS handles) and the last call's result."""
    if warmup:
        fn()
    best, out = float("inf"), None
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best, out
