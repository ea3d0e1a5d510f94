"""Memory budget of a partition: how many regions the memory left can hold.

The budget is the memory a call may add to what the process held when it started (its
resident set size, read from ``/proc/self/statm`` where available). Before each layer, and
before each block of a wide layer, the engine turns the memory still free into a region
cap from the predicted bytes per region (the vertex values of the block being cut, the
polygon rows, and what the finished partition keeps per region: codes, per-layer geometry,
output maps), and the cut stops there with a flagged partial result.
"""

from __future__ import annotations

import math
import os

from ..errors import InputError

#: Default memory budget: this fraction of the RAM available when the call starts.
MEMORY_FRACTION = 0.25

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _read(path: str) -> bytes:
    # os-level reads: a text-mode open costs ~0.2 ms, which small partitions would feel
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def available_ram() -> int:
    """Bytes of RAM available to new allocations (``MemAvailable``; physical RAM where that
    cannot be read; 8 GiB as a last resort)."""
    try:
        text = _read("/proc/meminfo")
        i = text.index(b"MemAvailable:")
        return int(text[i + 13:text.index(b"kB", i)]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * _PAGE
    except (AttributeError, ValueError, OSError):
        return 8 << 30


def resident_bytes() -> int:
    """Resident set size of this process (0 where it cannot be read)."""
    try:
        return int(_read("/proc/self/statm").split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


class MemoryBudget:
    """Bytes a call may add to the process's resident memory.

    Parameters
    ----------
    budget : int, float or None
        Bytes (an int ≥ 1), a fraction in (0, 1] of the RAM available now, or None for no
        limit.
    """

    def __init__(self, budget: float | None):
        if budget is None:
            self.limit = math.inf
        elif isinstance(budget, bool) or not isinstance(budget, (int, float)):
            raise InputError(f"memory_budget must be a number of bytes or a fraction of the "
                             f"available RAM in (0, 1]; got {budget!r}")
        elif isinstance(budget, float) and not math.isfinite(budget):
            raise InputError(f"memory_budget must be finite; got {budget!r}")
        elif isinstance(budget, float) and budget <= 1.0:
            if budget <= 0:
                raise InputError(f"memory_budget must be positive; got {budget!r}")
            self.limit = budget * available_ram()
        elif budget < 1:
            raise InputError(f"memory_budget must be positive; got {budget!r}")
        else:
            self.limit = float(budget)
        self.budget = budget
        self.base = resident_bytes()

    def free(self) -> float:
        """Bytes still free under the budget."""
        return self.limit - max(0, resident_bytes() - self.base)

    def regions(self, per_region: float) -> int | None:
        """Most regions that fit at ``per_region`` predicted bytes each (None: unlimited)."""
        if math.isinf(self.limit):
            return None
        return max(0, int(self.free() // max(per_region, 1.0)))

    def describe(self) -> str:
        return f"memory_budget={self.budget!r} ({self.limit / 2**20:,.0f} MiB)"
