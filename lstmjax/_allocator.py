"""Keep freed memory in the process instead of returning it to the OS (glibc only).

XLA:CPU allocates each execution's temporaries (and torch its tensors) with
``malloc``; glibc serves blocks above its mmap threshold (at most 32 MiB) with a
fresh ``mmap`` and unmaps them on free, so *every* training step page-faults its
whole working set in again. On the 2-core VMs this project runs on that costs
~2 µs per 4 KiB page: 15k faults (~30 ms) per small-config LSTM train step, more
than the recurrence itself (``benchmarks/RESULTS.md``).

:func:`keep_freed_memory` sets ``M_MMAP_MAX=0`` (no mmap'd blocks), a huge
``M_TRIM_THRESHOLD`` (never give the heap back) and ``M_ARENA_MAX=1`` (one heap
for all threads), so a step reuses the pages of the previous one. It changes the
whole process: call it once from a program's entry point (``lstmjax.cli``, the
benchmarks), never from library code; that is why it lives here, beside the CLI,
and not in :mod:`lstmjax.fast`. The price is that the process keeps its peak heap
for its lifetime.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def keep_freed_memory() -> bool:
    """Tune glibc's ``malloc`` as described above; False where there is no glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(
        mallopt(_M_MMAP_MAX, 0) & mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) & mallopt(_M_ARENA_MAX, 1)
    )
