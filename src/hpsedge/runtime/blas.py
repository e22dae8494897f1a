"""Thread control for numpy work in the runtime: keep OpenBLAS's own threads asleep, split work over ours.

Why. OpenBLAS (numpy's BLAS) parallelises a large GEMM/GEMV over its own pool, and after the call its worker
threads keep busy-waiting for new work for a while (``OPENBLAS_THREAD_TIMEOUT``, 2**28 cycles by default: about
0.1 s) before they sleep. In a ``predict()`` loop the next thing to run is ONNX Runtime's (or torch's) own thread
pool, which then shares the cores with spinning BLAS threads: a 1-person PARE call measured 135 ms instead of 85
ms. So the SMPL decoder never lets OpenBLAS use more than one thread (:func:`single_threaded_blas`, reference
counted so concurrent callers nest) and splits its own work over :class:`WorkerPool` threads, which block (no
spinning) when idle.

:class:`WorkerPool` runs ``n`` tasks on the calling thread plus up to ``workers`` helper threads that claim tasks
dynamically: a helper that is slow to wake (a busy neighbour on the other core) simply gets fewer tasks, and the
caller never waits for a helper that has not started. numpy releases the GIL inside BLAS calls and ufunc loops,
so the threads really run in parallel.

Only the standard library and ctypes are used (no threadpoolctl). Where numpy's BLAS is not an OpenBLAS this
module can find (MKL, Accelerate, not Linux), :func:`single_threaded_blas` does nothing.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["WorkerPool", "blas_threads", "find_openblas", "single_threaded_blas", "worker_pool"]

# [(set_num_threads, get_num_threads)] once probed, or [None] where numpy's BLAS is not a findable OpenBLAS
_BLAS: list[Any] = []
_BLAS_LOCK = threading.Lock()
_depth = 0  # callers currently inside single_threaded_blas()
_saved: int | None = None  # the thread count to restore when the last of them leaves


def find_openblas() -> Any:
    """ctypes handles ``(set_num_threads, get_num_threads)`` of the OpenBLAS numpy loaded, or None (not Linux,
    MKL, not found). Probed once per process."""
    if _BLAS:
        return _BLAS[0]
    found = None
    try:
        import ctypes

        import numpy  # noqa: F401  (make sure numpy's BLAS is loaded before reading the maps)

        with open("/proc/self/maps") as fh:
            libs = {ln.split()[-1] for ln in fh if "openblas" in ln.lower() and "/" in ln}
        # numpy's own first (scipy may bundle another)
        for lib_path in sorted(libs, key=lambda p: ("numpy" not in p, p)):
            lib = ctypes.CDLL(lib_path)
            for prefix, suffix in (
                ("scipy_openblas", "64_"),
                ("scipy_openblas", ""),
                ("openblas", "64_"),
                ("openblas", ""),
            ):
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
                    found = (setter, getter)
                    break
            if found:
                break
    except Exception:  # pragma: no cover - any platform oddity: just do not touch BLAS threads
        found = None
    _BLAS.append(found)
    return found


def blas_threads() -> int | None:
    """OpenBLAS's current thread count, or None where it cannot be found."""
    blas = find_openblas()
    return None if blas is None else int(blas[1]())


class single_threaded_blas:
    """Inside the block OpenBLAS runs every call on the calling thread, so its pool is never woken (and never
    left spinning). Nests and may be entered from several threads at once: the first caller in sets the count to
    1, the last one out restores it. Note: the count is process-wide, so BLAS calls made meanwhile by unrelated
    threads also run single-threaded. Lowering the count does not wake OpenBLAS's threads."""

    __slots__ = ()

    def __enter__(self) -> None:
        global _depth, _saved
        with _BLAS_LOCK:
            if _depth == 0:
                blas = find_openblas()
                if blas is not None:
                    prev = int(blas[1]())
                    if prev > 1:
                        blas[0](1)
                        _saved = prev
            _depth += 1

    def __exit__(self, *exc: Any) -> None:
        global _depth, _saved
        with _BLAS_LOCK:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                find_openblas()[0](_saved)
                _saved = None


#: A task: ``fn(i, private)``. With ``private`` False it writes its results in place and returns None; with
#: ``private`` True (helpers of a stealable job) it computes into its own buffers and returns a ``commit``
#: callable that copies them into place, or None when it already wrote in place.
TaskFn = Callable[[int, bool], "Callable[[], None] | None"]


class _Job:
    """``n`` tasks claimed one at a time by whichever thread asks first.

    The calling thread runs :meth:`work` then :meth:`finish`. A *stealable* job never makes the caller wait long
    for a helper: a helper computes privately and commits under the job's lock, and :meth:`finish` waits at most
    ``grace`` seconds for the helpers' running tasks before it closes the job and runs those tasks itself (a
    helper descheduled by a busy machine, or by another library's spinning threads, then costs one task, not a
    time slice); a late helper's commit is dropped.
    """

    __slots__ = ("_claimed", "_closed", "_fn", "_idle", "_lock", "_n", "_running", "error", "stealable")

    def __init__(self, fn: TaskFn, n: int, stealable: bool) -> None:
        self._fn, self._n, self.stealable = fn, n, stealable
        self._lock = threading.Lock()
        self._claimed = 0
        self._closed = False
        self._running: set[int] = set()  # claimed by helpers, not finished
        self._idle = threading.Event()
        self._idle.set()
        self.error: BaseException | None = None

    def claim(self, helper: bool = False) -> int | None:
        """The next unclaimed task's index, or None. The caller's thread must run what it claims."""
        with self._lock:
            if self._claimed >= self._n or self._closed or self.error is not None:
                return None
            i = self._claimed
            self._claimed += 1
            if helper:
                self._running.add(i)
                self._idle.clear()
            return i

    def _helper_work(self) -> None:
        while (i := self.claim(helper=True)) is not None:
            commit = error = None
            try:
                commit = self._fn(i, self.stealable)
            except BaseException as exc:
                error = exc
            with self._lock:
                try:
                    if not self._closed:
                        if error is None and self.stealable and callable(commit):
                            try:
                                commit()
                            except BaseException as exc:
                                error = exc
                        if error is not None and self.error is None:
                            self.error = error
                finally:
                    self._running.discard(i)
                    if not self._running:
                        self._idle.set()

    def work(self) -> None:
        """Claim and run tasks on the calling thread until none are left."""
        while (i := self.claim()) is not None:
            self._fn(i, False)

    def finish(self, grace: float | None = None) -> None:
        """No more claims; wait for the helpers' running tasks (stealable: at most ``grace`` seconds, then run the
        unfinished ones here), then re-raise a helper's failure. After this no helper writes anything."""
        with self._lock:
            self._claimed = self._n
        if self.stealable:
            self._idle.wait(grace)
        else:
            self._idle.wait()
        with self._lock:
            self._closed = True
            left = sorted(self._running) if self.stealable else []
            error = self.error
        if error is not None:
            raise error
        for i in left:
            self._fn(i, False)


class WorkerPool:
    """``workers`` daemon helper threads that block on a queue when idle (they never spin).

    ``job = pool.start(fn, n)`` offers tasks ``fn(0, ·) .. fn(n-1, ·)`` to the helpers; the caller may do other
    work, then must call ``job.work()`` (it runs tasks itself until none are left) and ``job.finish()``.
    :meth:`run` does all three for a plain ``fn(i)``.
    """

    def __init__(self, workers: int) -> None:
        self.workers = max(0, int(workers))
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _ensure_threads(self) -> None:
        if len(self._threads) == self.workers:
            return
        with self._lock:
            while len(self._threads) < self.workers:
                t = threading.Thread(
                    target=self._loop, name=f"hpsedge-worker-{len(self._threads)}", daemon=True
                )
                t.start()
                self._threads.append(t)

    def _loop(self) -> None:
        q = self._queue
        while True:
            job = q.get()
            if job is None:
                return
            job._helper_work()

    def start(self, fn: TaskFn, n: int, stealable: bool = False) -> _Job:
        """Offer ``n`` tasks to the helpers (at most ``n - 1`` of them are woken: the caller takes one too)."""
        job = _Job(fn, n, stealable)
        wake = min(self.workers, n - 1)
        if wake > 0:
            self._ensure_threads()
            for _ in range(wake):
                self._queue.put(job)
        return job

    def run(self, fn: Callable[[int], None], n: int) -> None:
        """Run ``fn(0) .. fn(n-1)`` (in place, not stealable) on the caller's thread and the helpers."""
        job = self.start(lambda i, _private: fn(i), n)
        try:
            job.work()
        finally:
            job.finish()

    def close(self) -> None:
        """Stop the helper threads (a pool is normally kept for the life of the process)."""
        with self._lock:
            for _ in self._threads:
                self._queue.put(None)
            self._threads = []


_POOLS: dict[int, WorkerPool] = {}
_POOLS_LOCK = threading.Lock()


def worker_pool(threads: int) -> WorkerPool:
    """The process-wide pool for ``threads`` threads in all (the caller's + ``threads - 1`` helpers)."""
    pool = _POOLS.get(threads)
    if pool is None:
        with _POOLS_LOCK:
            pool = _POOLS.get(threads)
            if pool is None:
                pool = _POOLS[threads] = WorkerPool(threads - 1)
    return pool


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's helper threads and may have inherited a held lock: start afresh."""
    global _BLAS_LOCK, _POOLS_LOCK, _depth, _saved
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()
    _BLAS_LOCK = threading.Lock()
    if _saved is not None and _BLAS and _BLAS[0] is not None:  # forked mid-decode: the callers are gone
        _BLAS[0][0](_saved)
    _depth, _saved = 0, None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
