"""How many threads an evaluation uses: BLAS, OpenMP, torch and FAISS set together.

scikit-learn's solvers run in BLAS, the torch solvers in torch's intra-op pool and FAISS in
its own OpenMP pool; left alone each sizes itself to every core of the machine, and two of
them at once (or two sweep cells) oversubscribe it. :func:`evaluation_threads` sets all of
them from the cores this process may use (or a given count) for the duration of one
evaluation and restores them afterwards. The results of the solvers do not depend on the
count (tests check 1 vs 2 threads give the same numbers), so the count is not part of a
result key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from featstore.devices import available_cpus

__all__ = ["THREADS_ENV", "evaluation_threads", "free_cpus", "gpu_count", "resolve_threads"]

THREADS_ENV = "FEATSTORE_EVAL_THREADS"


def resolve_threads(n: int | None = None) -> int:
    """``n``, else ``$FEATSTORE_EVAL_THREADS``, else the free CPUs this process may run on."""
    if n is None:
        raw = os.environ.get(THREADS_ENV, "").strip()
        if raw:
            try:
                n = int(raw)
            except ValueError:
                n = 0
            if n < 1:
                from featstore.errors import EvaluationError

                raise EvaluationError(
                    f"{THREADS_ENV}={raw!r} is not a positive number of threads; unset it or "
                    "give e.g. 2"
                )
    return max(1, int(n)) if n is not None else free_cpus()


def free_cpus() -> int:
    """CPUs this process may use that other processes are not already running on.

    The affinity count less the 1-minute load average (at least 1). Measured on a shared
    2-core machine with other work running: the torch solvers took 45 s with 2 threads
    and 10 s with 1 (flowers12 SVM), because an OpenMP pool waits at every barrier for
    its descheduled threads. Results do not depend on the count, so this is safe.
    """
    cpus = available_cpus()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return cpus
    return max(1, min(cpus, int(cpus - load + 1)))


@contextmanager
def evaluation_threads(n: int | None = None) -> Iterator[int]:
    """Limit BLAS/OpenMP (threadpoolctl), torch and FAISS to ``resolve_threads(n)`` threads.

    threadpoolctl restores the OpenMP pools when it exits, which also resets torch's pool
    (they share libgomp), so torch's own count is restored after it.
    """
    import torch
    from threadpoolctl import threadpool_limits

    threads = resolve_threads(n)
    torch_before = torch.get_num_threads()
    faiss_mod: Any = None
    try:
        import faiss as faiss_mod

        faiss_before = faiss_mod.omp_get_max_threads()
    except (ImportError, AttributeError):  # pragma: no cover - faiss is a dependency
        faiss_mod, faiss_before = None, 0
    try:
        with threadpool_limits(limits=threads):
            torch.set_num_threads(threads)
            if faiss_mod is not None:
                faiss_mod.omp_set_num_threads(threads)
            yield threads
    finally:
        if faiss_mod is not None:
            faiss_mod.omp_set_num_threads(faiss_before)
        torch.set_num_threads(torch_before)


def gpu_count() -> int:
    """Number of GPUs faiss can use (0 with the faiss-cpu build)."""
    import faiss

    try:
        return int(faiss.get_num_gpus())
    except AttributeError:  # very old builds
        return 0
