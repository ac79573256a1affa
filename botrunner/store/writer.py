"""The thread that owns the store's one SQLite connection, and its group commit.

* **One thread owns the one connection.** SQLite is synchronous; every call is queued to a
  dedicated writer thread, so the event loop never blocks on I/O or fsync, writes are serialized,
  and a read-modify-write (the GCRA rate limit, turn numbering) is atomic without locks.
* **Group commit.** The thread takes every job waiting in the queue (up to `max_batch`), runs
  them inside ONE transaction, each in its own SAVEPOINT (a failing job rolls back only itself),
  and commits once. Under load, 64 concurrent turns cost one fsync per batch instead of one per
  write. A caller is resumed only after the COMMIT that made its write durable has returned;
  with `journal_mode=WAL` and `synchronous=FULL` that means the WAL was fsynced, so nothing
  acknowledged is lost on a crash or power cut.
* **Decided before durable** (`call_early`): a job can hand its result back as soon as it has
  run, before the batch's COMMIT, together with a future that resolves once the COMMIT made it
  durable. The engine uses it to start the model request while the user's message is being
  fsynced; it waits for that future before it shows the user anything of the reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from botrunner.store.base import StoreClosed

T = TypeVar("T")
log = logging.getLogger("botrunner.store")


class _Job:
    __slots__ = ("fn", "write", "loop", "future", "durable")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        write: bool,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        durable: asyncio.Future[None] | None = None,
    ) -> None:
        self.fn = fn
        self.write = write
        self.loop = loop
        self.future = future
        # call_early: `future` gets the result before the COMMIT, `durable` after it.
        self.durable = durable


_STOP = object()

_Outcome = tuple[_Job, Any, BaseException | None]


def _resolve_all(outcomes: list[_Outcome], early: bool) -> None:
    for job, result, error in outcomes:
        future, durable = job.future, job.durable
        if not future.done():  # else the caller was cancelled (the job ran anyway) or resumed
            if error is not None:
                future.set_exception(error)
                if durable is not None:
                    durable.cancel()  # the job failed: there is nothing to wait for
                continue
            future.set_result(result)
        if durable is None or early or durable.done():
            continue
        # After the COMMIT, for a call_early job: its write is durable, or lost with `error`.
        if error is not None:
            durable.set_exception(error)
        else:
            durable.set_result(None)


def _deliver_all(outcomes: list[_Outcome], *, early: bool = False) -> None:
    """Resume the callers: one wake-up per event loop, not one per job. `early`: hand back the
    results of call_early jobs (before the COMMIT); otherwise settle every job."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, items in by_loop.items():
        # RuntimeError: that event loop is closed, so nobody is waiting.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve_all, items, early)


def _consume(future: asyncio.Future[None]) -> None:
    # A caller that went away never awaits its `durable`: don't log its error as unretrieved.
    if not future.cancelled():
        future.exception()


def _fail_all(jobs: list[_Job], error: BaseException) -> None:
    _deliver_all([(job, None, error) for job in jobs])


def _lost() -> sqlite3.OperationalError:
    return sqlite3.OperationalError("the transaction was rolled back by an error in its batch")


class SQLiteWriter:
    """Runs `call`ed jobs on one connection, in its own thread (see the module docstring).
    The store's methods are built on `call`."""

    def __init__(
        self, connect: Callable[[], sqlite3.Connection], *, name: str, max_batch: int
    ) -> None:
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._stopped: Future[None] = Future()
        ready: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._main, args=(connect, ready), name=name, daemon=True
        )
        self._thread.start()
        ready.result()  # connection or migration errors surface here, in the caller

    # -- thread side ------------------------------------------------------------------------

    def _main(self, connect: Callable[[], sqlite3.Connection], ready: Future[None]) -> None:
        try:
            conn = connect()
        except BaseException as exc:
            ready.set_exception(exc)
            self._stopped.set_result(None)
            return
        ready.set_result(None)
        try:
            stop = False
            while not stop:
                item = self._queue.get()
                if item is _STOP:
                    break
                batch = [item]
                while len(batch) < self._max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
                try:
                    self._run_batch(conn, batch)
                except Exception as exc:  # a bug or a broken connection: never hang callers
                    log.exception("store batch failed")
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    _fail_all(batch, exc)  # already-resolved futures ignore this
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA optimize")
            conn.close()
            while True:  # anything queued after close: refuse
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP:
                    _fail_all([item], StoreClosed("the store is closed"))
            self._stopped.set_result(None)

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        """Run `batch` in one transaction; each write job in its own savepoint. Results are
        delivered only after COMMIT returned (or the error that prevented it)."""
        begin = "BEGIN IMMEDIATE" if any(job.write for job in batch) else "BEGIN"
        done: list[_Outcome] = []
        try:
            conn.execute(begin)
        except sqlite3.Error as exc:
            _fail_all(batch, exc)
            return
        for index, job in enumerate(batch):
            if not conn.in_transaction:
                # A previous failure made SQLite roll the whole transaction back: the jobs
                # done so far lost their writes. Fail them and start again.
                _deliver_all([(j, None, err or _lost()) for j, _, err in done])
                done = []
                try:
                    conn.execute(begin)
                except sqlite3.Error as exc:
                    _fail_all(batch[index:], exc)
                    return
            if job.write:
                conn.execute("SAVEPOINT job")
            try:
                result = job.fn(conn)
            except Exception as exc:
                if job.write and conn.in_transaction:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                done.append((job, None, exc))
            else:
                if job.write:
                    conn.execute("RELEASE job")
                done.append((job, result, None))
        if not conn.in_transaction:
            # The last job's failure made SQLite roll the whole transaction back.
            _deliver_all([(j, None, err or _lost()) for j, _, err in done])
            return
        early = [outcome for outcome in done if outcome[0].durable is not None]
        if early:
            # Results are final unless the COMMIT fails; the callers learn that from `durable`.
            _deliver_all(early, early=True)
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            _deliver_all([(job, None, err or exc) for job, _, err in done])
            return
        _deliver_all(done)

    # -- loop side --------------------------------------------------------------------------

    async def call(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        """Run `fn(connection)` on the store's thread, inside a transaction, and return its
        result (after the commit, for writes). The building block of every store method; also
        an escape hatch for maintenance and tests. `fn` must not commit or roll back."""
        if self._closed:
            raise StoreClosed("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(fn, write, loop, future))
        return await future

    async def call_early(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> tuple[T, asyncio.Future[None]]:
        """Like `call(fn, write=True)`, but return as soon as `fn` has run, before the commit,
        with a future that resolves when the write is durable (or fails when the commit
        failed and the write was rolled back). Use it to overlap the fsync with other work;
        never report the write as done to anyone before `durable` resolved."""
        if self._closed:
            raise StoreClosed("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        durable: asyncio.Future[None] = loop.create_future()
        durable.add_done_callback(_consume)
        self._queue.put(_Job(fn, True, loop, future, durable))
        return await future, durable

    async def close(self) -> None:
        """Finish the queued work, then close the connection. Idempotent."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
        # Shielded: cancelling a close (a shutdown deadline) must not cancel the thread's
        # own future, which it still has to set.
        await asyncio.shield(asyncio.wrap_future(self._stopped))
