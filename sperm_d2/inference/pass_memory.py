"""The memory one forward pass needs and the memory free on its device, in bytes: what bounds
the auto batch size (:mod:`sperm_d2.inference.batch_size`).

On the CPU the pass's need is the process's peak RSS during the pass minus its RSS before.
The peak (``VmHWM``) is reset right before the pass by writing ``5`` to
``/proc/self/clear_refs`` (Linux): without the reset, a peak set earlier in the process hides
the pass's own (it measured 0 for a pass that needed 64 MB). Where the peak cannot be reset or
read, the need is unknown (``None``) and the batch size is chosen by time alone.

The reset lowers the kernel's peak for the whole process: ``ru_maxrss`` of
``getrusage(RUSAGE_SELF)`` (and the maximum RSS ``wait4``/``time -v`` report for the process)
then count only from the last reset. :func:`process_peak_rss` keeps the peak across resets;
read the process peak with it, not with ``ru_maxrss``.
"""

import os
import resource
import sys

import torch

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"
#: the highest peak RSS (bytes) a reset has erased in this process (see process_peak_rss)
_erased_peak = 0


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
            self._before = self._rss() if reset_peak_rss() else 0

    def stop(self) -> int | None:
        """Bytes the pass needed above what was held before it, ``None`` where that cannot be
        measured. On the CPU an upper bound: the process's peak RSS since :meth:`start` reset
        it (other threads' memory included) minus the RSS at the start."""
        if self.cuda:
            return max(0, torch.cuda.max_memory_allocated(self.device) - self._before)
        if not self._before:
            return None
        peak = _vm_hwm()
        return None if peak is None else max(0, peak - self._before)

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


def _vm_hwm() -> int | None:
    """The process's peak RSS since it started or was last reset (``VmHWM``), in bytes."""
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the process's peak RSS to its current RSS (Linux ``clear_refs``); whether it was.
    The peak it erases is kept for :func:`process_peak_rss`."""
    global _erased_peak
    peak = _vm_hwm()
    if peak is None:
        return False
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")  # 5: reset the peak RSS only (1-4 clear page bits, not used here)
    except OSError:
        return False
    # only a rise and fall between the read above and the reset is lost (a few lines apart)
    _erased_peak = max(_erased_peak, peak)
    return True


def process_peak_rss() -> int:
    """The process's peak RSS in bytes since it started, the peaks erased by
    :func:`reset_peak_rss` included (``ru_maxrss`` alone misses them)."""
    peak = _vm_hwm()
    if peak is None:  # not Linux: ru_maxrss is never reset there (bytes on macOS, KiB elsewhere)
        usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = usage if sys.platform == "darwin" else usage * 1024
    return max(_erased_peak, peak)
