"""The memory one forward pass needs and the memory free on its device, in bytes: what bounds
the auto batch size (:mod:`sperm_d2.inference.batch_size`)."""

import os
import resource

import torch


class MemoryProbe:
    """The working memory of one forward pass and the device's free memory, in bytes."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.device = torch.device(device) if self.cuda else None
        self._before = 0
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def free(self) -> int | None:
        """Bytes free for a pass: the GPU's free memory plus what torch holds cached unused;
        on the CPU ``MemAvailable`` (``None`` where it cannot be read)."""
        if self.cuda:
            free, _ = torch.cuda.mem_get_info(self.device)
            cached = torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(
                self.device
            )
            return free + cached
        return _mem_available()

    def start(self) -> None:
        """Call right before the pass."""
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            self._before = torch.cuda.memory_allocated(self.device)
        else:
            self._before = self._rss()

    def stop(self) -> int | None:
        """Bytes the pass needed above what was held before it (CPU: an upper bound, from the
        process's peak RSS, which only grows); ``None`` where it cannot be read."""
        if self.cuda:
            return max(0, torch.cuda.max_memory_allocated(self.device) - self._before)
        if not self._before:
            return None
        # ru_maxrss is in KiB on Linux, the only platform with /proc/self/statm. The peak is not
        # reset before the pass (/proc/self/clear_refs could): others read it (bench_infer.py)
        return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self._before)

    def _rss(self) -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page
        except (OSError, ValueError, IndexError):
            return 0


def _mem_available() -> int | None:
    """``MemAvailable`` of /proc/meminfo in bytes (``None`` off Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
