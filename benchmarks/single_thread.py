"""Pin every thread pool of a benchmark to one thread, and check that it stayed there.

Import this module first, before torch, numpy or numba load: the OpenMP, BLAS and numba pools read
their sizes from the environment when they start. ``pin()`` then sets torch's intra- and inter-op
pools and limits any BLAS already loaded (threadpoolctl). ``cpu_wall_flag`` marks a timed row whose
CPU time exceeds 1.2x its wall time: a second thread was charged to it, so it was not single-threaded.
"""

from __future__ import annotations

import contextlib
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"
# idle OpenMP threads sleep, not spin: a spinning pool would be charged to the next backend timed
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

CPU_OVER_WALL_LIMIT = 1.2


def pin() -> None:
    """torch on one intra-op and one inter-op thread; every loaded BLAS / OpenMP pool on one thread."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # already set, or inter-op work already ran
        torch.set_num_interop_threads(1)
    threadpool_limits(1)


def cpu_wall_flag(cpu_s: float, wall_s: float) -> str:
    """'' or a warning when CPU time exceeds CPU_OVER_WALL_LIMIT x wall time."""
    ratio = cpu_s / wall_s if wall_s > 0 else 0.0
    return f"  <- CPU {ratio:.2f}x wall: not single-threaded" if ratio > CPU_OVER_WALL_LIMIT else ""
