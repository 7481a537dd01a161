"""Peak resident memory of a piece of work on the CPU, shared by the benchmarks (Linux ``/proc``)."""

from __future__ import annotations

from collections.abc import Callable


def status_bytes(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) of this process, in bytes."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def peak_rss_increase(work: Callable[[], object]) -> int:
    """Bytes by which ``work()`` raises this process's peak RSS above its RSS before it (what the
    allocator already holds is not counted: run it in a fresh process for a clean figure)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS mark (VmHWM) to the current RSS
    base = status_bytes("VmRSS")
    work()
    return max(status_bytes("VmHWM") - base, 0)
