"""Holding leases while working: a heartbeat that renews them, and a fence on every write.

A writer that computes the chunks it leased hands them to a :class:`LeaseKeeper`. The
keeper renews every lease each *heartbeat* (``ttl / 3``), so a slow unit keeps its chunks,
and it fences the writes: a chunk is written only if

1. ``admit``: the lease is renewed right now (which proves the lease object still carries
   this writer's token: nobody took it over) and the chunk has no done marker yet;
2. ``confirm``, after the rows and before the done marker: the lease is still ours and has
   not expired by this machine's clock.

A writer that was paused (SIGSTOP, a frozen VM) past the TTL while another writer took its
lease over therefore drops the chunk instead of writing it: it never writes a done marker
for a chunk it did not finish, and it writes no rows once it has seen its lease lost. The
residual window is a pause of more than the TTL *during* one chunk's row write; if that
left rows that no longer match the new holder's marker, the chunk is forgotten (its marker
deleted) so that the writers still waiting recompute it, rather than left damaged.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from featstore.errors import DamagedChunkError, IncompleteEntryError, LeaseError
from featstore.store.base import Entry
from featstore.store.lease import LEASE_DIR, Lease, read_lease, release, renew

__all__ = ["LeaseKeeper", "heartbeat_of"]


def heartbeat_of(ttl: float) -> float:
    """Seconds between two renewals of a held lease: a third of the TTL."""
    return ttl / 3.0


class LeaseKeeper:
    """Renews the leases of one unit of work every heartbeat and fences its chunk writes."""

    def __init__(self, held: list[tuple[Entry, Lease]], ttl: float) -> None:
        self.ttl = float(ttl)
        self._held: dict[tuple[str, int], tuple[Entry, Lease]] = {
            (entry.key, lease.index): (entry, lease) for entry, lease in held
        }
        self.lost: set[tuple[str, int]] = set()
        self.dropped: list[tuple[str, int]] = []  # chunks not written: lease lost first
        self.written: list[tuple[str, int]] = []  # chunks whose marker the fence let through
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="featstore-lease-heartbeat")
        self._thread.daemon = True

    # --- heartbeat ----------------------------------------------------------------------
    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(heartbeat_of(self.ttl)):
            with self._lock:
                for key, (entry, lease) in list(self._held.items()):
                    if key not in self.lost:
                        self._renew(key, entry, lease)

    def _renew(self, key: tuple[str, int], entry: Entry, lease: Lease) -> bool:
        """Renew one lease (caller holds the lock); False and marked lost if taken over."""
        try:
            self._held[key] = (entry, renew(entry, lease, self.ttl))
        except LeaseError:
            self.lost.add(key)
            return False
        except OSError:  # storage briefly unreachable: the next heartbeat tries again
            return time.time() < lease.expires
        return True

    @property
    def leases(self) -> list[tuple[Entry, Lease]]:
        with self._lock:
            return list(self._held.values())

    # --- fence --------------------------------------------------------------------------
    def admit(self, entry: Entry, index: int) -> bool:
        """Whether chunk ``index`` of ``entry`` may be written now (see the module text)."""
        key = (entry.key, index)
        with self._lock:
            if key not in self._held or key in self.lost:
                self.dropped.append(key)
                return False
            if not self._renew(key, *self._held[key]):
                self.dropped.append(key)
                return False
        if entry.marker(index) is not None:  # finished by a writer that took it over
            self.dropped.append(key)
            return False
        return True

    def confirm(self, entry: Entry, index: int) -> None:
        """Called after the rows, before the done marker: LeaseError if the lease is lost."""
        key = (entry.key, index)
        if entry.side_objects(LEASE_DIR) is None:  # a single-writer backend (HDF5)
            self.written.append(key)
            return
        with self._lock:
            lease = self._held[key][1]
            alive = key not in self.lost and time.time() < lease.expires
        current = read_lease(entry, index) if alive else None
        if current is None or current.token != lease.token:
            with self._lock:
                self.lost.add(key)
            raise LeaseError(
                f"lease on chunk {index} of entry {entry.key} was taken over while it was "
                "written; its done marker is left to the new holder"
            )
        self.written.append(key)

    def after_lost(self, entry: Entry, index: int) -> None:
        """This writer wrote rows of a chunk whose lease it lost: if another writer's marker
        is there and the rows no longer match it, forget the chunk so that it is recomputed."""
        self.dropped.append((entry.key, index))
        if entry.marker(index) is None:
            return  # the new holder writes rows and marker after ours
        try:
            entry.read_chunk(index)
        except DamagedChunkError:
            entry.invalidate_chunk(index)
        except IncompleteEntryError:  # its marker went meanwhile: nothing claims these rows
            pass

    # --- end ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop renewing and release every lease still ours."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        for key, (entry, lease) in self.leases_by_key().items():
            if key not in self.lost:
                with contextlib.suppress(OSError):  # it expires on its own
                    release(entry, lease)

    def leases_by_key(self) -> dict[tuple[str, int], tuple[Entry, Lease]]:
        with self._lock:
            return dict(self._held)

    def __enter__(self) -> LeaseKeeper:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
