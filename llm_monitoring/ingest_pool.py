"""Worker processes for an ingest pass: batches stored in parallel, results handed back in order."""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import multiprocessing.util
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from llm_monitoring.storage.engine import Database

Task = TypeVar("Task")
Result = TypeVar("Result")

# (database, task) -> result: runs in a worker with the worker's own connection, or here.
BatchWork = Callable[[Database, Task], Result]


def in_order(work: BatchWork[Task, Result], database: Database, tasks: Sequence[Task], workers: int) -> Iterator[Result]:
    """Results of `work` over `tasks`, in order, with at most one waiting result per worker.

    With one worker, an in-memory database or no fork, everything runs here. After a failure,
    tasks not started are dropped and running ones finish before this returns, so a retry never
    overlaps them.
    """
    workers = min(workers, len(tasks))
    if workers < 2 or database.in_memory or "fork" not in multiprocessing.get_all_start_methods():
        for task in tasks:
            yield work(database, task)
        return
    # fork: workers inherit the imported modules, so they start in milliseconds. Each opens its own
    # connection: the unique content hash keeps concurrent batches exactly-once, as with two runners.
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_start_worker,
        initargs=(os.getpid(),),
    )
    try:
        waiting: deque[Future[Result]] = deque()
        for task in tasks:
            waiting.append(pool.submit(_in_worker, work, database.url, task))
            if len(waiting) > workers:
                yield waiting.popleft().result()
        while waiting:
            yield waiting.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def cycle_collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector for one pass (forked workers inherit the pause).

    A batch in flight holds hundreds of thousands of objects, and the collector rescans them every
    few thousand allocations: measured, a quarter of the pass's CPU. Parsed runs and rows hold no
    reference cycles, so reference counting frees them batch by batch and memory stays bounded.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_worker_databases: dict[str, Database] = {}

_PR_SET_PDEATHSIG = 1


def _in_worker(work: BatchWork[Task, Result], url: str, task: Task) -> Result:
    database = _worker_databases.get(url)
    if database is None:
        database = _worker_databases[url] = Database(url)
        # Close the connection cleanly when the worker exits, instead of dropping it.
        multiprocessing.util.Finalize(database, database.dispose, exitpriority=10)
    return work(database, task)


def _start_worker(parent_pid: int) -> None:
    # Ctrl-C reaches the whole process group. A worker killed mid-batch would break the pool, and the
    # step would be retried; ignoring it lets running batches commit while the parent stops the pass.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)


def _die_with_parent(parent_pid: int) -> None:
    """A worker must not outlive its parent (SIGKILL, the OOM killer, a terminated run): each holds
    memory and a database connection, and a forked worker never sees its task pipe close, since
    every worker inherited its write end. Linux sends the parent's death as SIGKILL; elsewhere a
    thread watches for the worker being re-parented. (Linux signals the death of the forking
    *thread*: the pool is created and shut down by the thread running the pass, which so outlives
    its workers.)"""
    try:
        armed = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (AttributeError, OSError):
        armed = False
    if not armed:
        threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True, name="parent-watch").start()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)


def _exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)
