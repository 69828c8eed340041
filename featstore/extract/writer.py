"""A background writer thread: whole chunks go to the store while the network computes.

The queue is bounded, so a slow disk applies back-pressure instead of filling memory,
and a write error is re-raised in the computing thread at the next submit or close. With a
``fence`` (a :class:`~featstore.store.lease_keeper.LeaseKeeper`), a chunk whose lease this
writer lost is dropped, never written over the new holder's (see store/lease_keeper.py).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import numpy as np

from featstore.errors import ExtractionError, FeatstoreError, LeaseError


class ChunkWriter:
    """Runs ``entry.write_chunk(index, data)`` calls on a separate thread, in order."""

    def __init__(self, max_pending: int = 8, fence: Any = None) -> None:
        self.fence = fence
        self.chunks_dropped = 0
        self.keys_written: set[str] = set()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, max_pending))
        self._error: BaseException | None = None
        self.chunks_written = 0
        self.bytes_written = 0
        self.write_seconds = 0.0
        self.wait_seconds = 0.0  # time the computing thread waited for a free slot
        self._thread = threading.Thread(target=self._run, name="featstore-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self._error is not None:
                continue  # drain after a failure
            entry, index, data = job
            try:
                t0 = time.perf_counter()
                if not self._write(entry, index, data):
                    self.chunks_dropped += 1
                    continue
                self.write_seconds += time.perf_counter() - t0
                self.chunks_written += 1
                self.keys_written.add(entry.key)
                self.bytes_written += int(np.asarray(data).nbytes)
            except BaseException as exc:  # re-raised in the caller's thread
                self._error = exc

    def _write(self, entry: Any, index: int, data: np.ndarray) -> bool:
        """Write one chunk; False when the fence says its lease is no longer this writer's."""
        fence = self.fence
        if fence is None:
            entry.write_chunk(index, data)
            return True
        if not fence.admit(entry, index):
            return False
        try:
            entry.write_chunk(index, data, before_marker=lambda: fence.confirm(entry, index))
        except LeaseError:
            fence.after_lost(entry, index)
            return False
        return True

    def _raise(self) -> None:
        if self._error is not None:
            exc = self._error
            if isinstance(exc, Exception) and not isinstance(exc, FeatstoreError):
                raise ExtractionError(f"writing features failed: {exc}") from exc
            raise exc

    def submit(self, entry: Any, index: int, data: np.ndarray) -> None:
        """Queue chunk ``index`` of ``entry``; blocks while the queue is full."""
        self._raise()
        t0 = time.perf_counter()
        self._queue.put((entry, index, data))
        self.wait_seconds += time.perf_counter() - t0

    def close(self) -> None:
        """Wait for every queued chunk to be written; raise the first write error."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()

    def abort(self) -> None:
        """Write what is queued, then stop without raising (another error is propagating)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=60)
