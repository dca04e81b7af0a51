"""Where the painter runs and in which precision.

Kept apart from the painter so the queue worker can ask "which device?" without importing the
optimizer loop, and so the CPU bf16 decision is made once per process rather than per request.
"""

from __future__ import annotations

import contextlib
import resource
import sys
from collections.abc import Iterator

import torch

Precision = str  # "fp32" | "bf16"


def pick_device(name: str = "auto") -> torch.device:
    """`auto` prefers cuda > mps > cpu. A named GPU must be there: ValueError says so at once,
    rather than torch failing mid-way through loading the network."""
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if (device.index or 0) >= count:
                raise ValueError(f"there is no {name} here: {count} CUDA device(s) found")
        mps = getattr(torch.backends, "mps", None)
        if device.type == "mps" and not (mps is not None and mps.is_available()):
            raise ValueError("there is no mps device here (Apple silicon only)")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_fast_bf16() -> bool:
    """bf16 only pays off on CPUs with native bf16/VNNI-class vector units (AVX512 or AMX).

    Measured on the project's 2-core AVX512 hosts: channels_last + bf16 autocast is ~1.8x faster
    per VGG forward+backward with gradient cosine 0.999 vs fp32 (see shared/README.md and
    bench/engine_speed.py), so `auto` picks it there; on older CPUs bf16 is emulated and slower.
    """
    capability = torch.backends.cpu.get_cpu_capability()
    return capability.startswith("AVX512") or "AMX" in capability


def pick_precision(requested: str, device: torch.device) -> Precision:
    """Resolve `auto`: bf16 on CUDA and fast-bf16 CPUs, fp32 elsewhere (MPS bf16 is patchy)."""
    if requested in ("fp32", "bf16"):
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu" and cpu_has_fast_bf16():
        return "bf16"
    return "fp32"


@contextlib.contextmanager
def autocast(device: torch.device, precision: Precision) -> Iterator[None]:
    """Autocast only the network forward; losses and the optimizer stay in fp32."""
    if precision == "bf16" and device.type in ("cuda", "cpu"):
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


def memory_format(device: torch.device, precision: Precision) -> torch.memory_format:
    """channels_last is what makes oneDNN/cuDNN bf16 convolutions fast; fp32 CPU gains nothing."""
    if precision == "bf16" or device.type == "cuda":
        return torch.channels_last
    return torch.contiguous_format


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, object]:
    """CUDA max allocated for GPU runs; otherwise the process's peak RSS (lifetime, not per run)."""
    if device.type == "cuda":
        return {"kind": "cuda_max_allocated", "bytes": int(torch.cuda.max_memory_allocated(device))}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # Linux reports KiB, macOS bytes
    return {"kind": "process_peak_rss", "bytes": int(rss * scale)}


def free_memory(device: torch.device) -> int | None:
    """Bytes this process could still use on `device` (None if the platform does not say):
    free device memory on CUDA, what MPS recommends minus what it holds, and on a CPU the
    kernel's MemAvailable (free plus reclaimable cache) rather than physical size."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "mps":
        mps = getattr(torch, "mps", None)
        if mps is not None and hasattr(mps, "recommended_max_memory"):
            return int(mps.recommended_max_memory() - mps.current_allocated_memory())
        return None
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def is_oom(error: BaseException) -> bool:
    """torch raises OutOfMemoryError on CUDA; MPS reports a RuntimeError with this text."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(error, oom_type) or "out of memory" in str(error).lower()


def make_deterministic(device: torch.device) -> None:
    """`--seed` promises the same picture twice; on CUDA that needs cuDNN's deterministic
    kernels (found on an H200: two seeded runs differed otherwise). Process-wide and sticky,
    which suits a worker that owns its GPU; the CPU is deterministic already."""
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def configure_worker(device: torch.device) -> None:
    """For a long-lived worker: let cuDNN time its kernels once per input shape and keep the
    fastest (a worker sees few shapes: the presets' sizes). Unmeasured here (no GPU where this
    was written); a seeded run's make_deterministic() turns it off again, as it must."""
    if device.type == "cuda" and not torch.backends.cudnn.deterministic:
        torch.backends.cudnn.benchmark = True


def free_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
