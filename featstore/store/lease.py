"""Leases: one small object per unit of work, so two writers of one entry split the work.

A writer calls ``claim(entry, i, owner, ttl)`` before computing chunk ``i`` of an entry
(a whole shard when the entry is sharded: its chunk index is the shard index). The lease
object ``features/<key>/_lease/<i>`` records the owner and an expiry time; another writer
skips a chunk leased by a live owner and takes the lease over once it has expired (a
crashed holder stops renewing it). Done markers stay the truth: a lease only says who is
working on a chunk, so a lost or duplicated lease can cost duplicated work (harmless:
chunks are whole and a recomputed chunk has the same bytes) but never rows.

How creation is made race-safe, by backend (creation itself: ObjectFolder.create in
featstore/store/objects.py, shared with the dataset name claims):

- local directory: the record is written to a temporary file and hard-linked to the lease
  path (``link`` fails if the path exists, atomically); an expired lease is taken over
  through a takeover file named after the expired lease's token, created the same way, so
  only one of several writers that saw the same expired lease wins;
- S3 (s3fs): conditional PUTs: ``If-None-Match: *`` to create, ``If-Match: <etag>`` to
  replace an expired lease (AWS S3 and moto's server both honour them);
- any other fsspec backend (memory://, gcs, ...): write, then read back and check the
  owner. Two writers can still both believe they hold the lease if their writes interleave
  within one round trip; that residual race duplicates a chunk's work, never loses rows;
- HDF5 stores take one writer per file, so every claim succeeds without an object.

Expiry compares wall clocks of different machines: keep ``ttl`` well above their skew
(the default is 10 minutes) and renew long units with ``renew``, which extends a lease only
while it still carries this writer's token (never re-creating one another writer released).
:class:`featstore.store.lease_keeper.LeaseKeeper` renews a unit's leases every heartbeat
(``ttl / 3``) and fences its writes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from featstore.errors import DamagedEntryError, EntryNotFoundError, LeaseError
from featstore.progress import Progress
from featstore.store.base import Entry
from featstore.store.objects import ObjectFolder, default_owner, owner_is_dead

LEASE_DIR = "_lease"
DEFAULT_TTL = 600.0


@dataclass(frozen=True)
class Lease:
    """A claim on chunk ``index`` of entry ``key`` by ``owner`` until ``expires`` (epoch s)."""

    key: str
    index: int
    owner: str
    expires: float
    token: str
    renewed: float = 0.0  # when the holder last wrote it (epoch s): the lease's age

    @property
    def age(self) -> float:
        """Seconds since the holder took or last renewed the lease."""
        return max(0.0, time.time() - self.renewed) if self.renewed else 0.0

    @property
    def expired(self) -> bool:
        """Past its expiry, or held by a process of this host that is no longer running."""
        return time.time() >= self.expires or owner_is_dead(self.owner)

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


class _Backend:
    """Lease objects of one entry; subclasses implement the atomic steps per storage kind."""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry

    def read(self, index: int) -> tuple[dict[str, Any], Any] | None:
        """(record, version) of the lease object, or None when there is none."""
        raise NotImplementedError

    def create(self, index: int, record: dict[str, Any]) -> bool:
        """Write the lease if none exists; False if another writer has one."""
        raise NotImplementedError

    def replace(self, index: int, record: dict[str, Any], version: Any) -> bool:
        """Replace the lease read with ``version`` by ``record``; False if it changed since."""
        raise NotImplementedError

    def delete(self, index: int) -> None:
        raise NotImplementedError

    def held(self) -> list[int]:
        """Indices that have a lease object (live or expired)."""
        raise NotImplementedError


class _NoLeases(_Backend):
    """Single-writer backends (HDF5): a claim always succeeds and leaves no object."""

    def read(self, index: int) -> tuple[dict[str, Any], Any] | None:
        return None

    def create(self, index: int, record: dict[str, Any]) -> bool:
        return True

    def replace(self, index: int, record: dict[str, Any], version: Any) -> bool:
        return True

    def delete(self, index: int) -> None:
        return None

    def held(self) -> list[int]:
        return []


class _FsspecLeases(_Backend):
    """Lease objects next to the entry's done markers, in the entry's ObjectFolder."""

    def __init__(self, entry: Entry, folder: ObjectFolder) -> None:
        super().__init__(entry)
        self.folder = folder

    def read(self, index: int) -> tuple[dict[str, Any], Any] | None:
        found = self.folder.read_versioned(str(index))
        if found is None:
            return None
        raw, etag = found
        try:
            record = json.loads(raw)
        except ValueError:  # torn or foreign object: treat it as expired
            record = {"owner": "?", "expires": 0.0, "token": f"bad-{len(raw)}"}
        return record, (raw, etag)

    def held(self) -> list[int]:
        return sorted(int(t) for t in self.folder.names() if t.isdigit())

    def create(self, index: int, record: dict[str, Any]) -> bool:
        return self.folder.create(str(index), json.dumps(record).encode())

    def replace(self, index: int, record: dict[str, Any], version: Any) -> bool:
        raw, etag = version
        return self.folder.replace(str(index), json.dumps(record).encode(), raw, etag)

    def delete(self, index: int) -> None:
        self.folder.delete(str(index))


def _backend(entry: Entry) -> _Backend:
    folder = entry.side_objects(LEASE_DIR)
    return _NoLeases(entry) if folder is None else _FsspecLeases(entry, folder)


def _lease_from(record: dict[str, Any], entry: Entry, index: int) -> Lease:
    return Lease(
        key=entry.key,
        index=index,
        owner=str(record.get("owner", "?")),
        expires=float(record.get("expires", 0.0)),
        token=str(record.get("token", "")),
        renewed=float(record.get("renewed", 0.0)),
    )


def read_lease(entry: Entry, index: int) -> Lease | None:
    """The lease on chunk ``index`` (live or expired), or None."""
    found = _backend(entry).read(index)
    return None if found is None else _lease_from(found[0], entry, index)


def claim(
    entry: Entry, index: int, owner: str | None = None, ttl: float = DEFAULT_TTL
) -> Lease | None:
    """Take the lease on chunk ``index`` for ``owner``; None if another live owner holds it.

    A lease already held by ``owner`` is renewed. An expired lease is taken over.
    """
    if ttl <= 0:
        raise LeaseError(f"a lease needs a positive ttl in seconds, not {ttl}")
    entry.chunk_bounds(index)  # IndexError for a chunk the entry does not have
    owner = owner or default_owner()
    backend = _backend(entry)
    now = time.time()
    lease = Lease(entry.key, index, owner, now + ttl, uuid.uuid4().hex, now)
    if backend.create(index, lease.to_record()):
        return lease
    found = backend.read(index)
    if found is None:  # released between our attempt and the read: try once more
        return lease if backend.create(index, lease.to_record()) else None
    record, version = found
    current = _lease_from(record, entry, index)
    if current.owner != owner and not current.expired:
        return None
    return lease if backend.replace(index, lease.to_record(), version) else None


def renew(entry: Entry, lease: Lease, ttl: float = DEFAULT_TTL) -> Lease:
    """Extend ``lease`` (a new token, a later expiry) if the lease object still carries its
    token; LeaseError if it was taken over or released meanwhile (it is never re-created)."""
    if ttl <= 0:
        raise LeaseError(f"a lease needs a positive ttl in seconds, not {ttl}")
    backend = _backend(entry)
    now = time.time()
    renewed = Lease(entry.key, lease.index, lease.owner, now + ttl, uuid.uuid4().hex, now)
    if isinstance(backend, _NoLeases):
        return renewed
    found = backend.read(lease.index)
    if found is not None and found[0].get("token") == lease.token:
        if backend.replace(lease.index, renewed.to_record(), found[1]):
            return renewed
        found = backend.read(lease.index)
    holder = None if found is None else _lease_from(found[0], entry, lease.index)
    raise LeaseError(
        f"lease on chunk {lease.index} of entry {entry.key} is now held by "
        f"{holder.owner if holder else 'nobody'}; it expired before it was renewed"
    )


def release(entry: Entry, lease: Lease) -> bool:
    """Remove ``lease`` if it is still ours (call after the chunk's marker is written)."""
    backend = _backend(entry)
    found = backend.read(lease.index)
    if found is None or found[0].get("token") != lease.token:
        return False
    backend.delete(lease.index)
    return True


def leases(entry: Entry) -> list[Lease]:
    """Every lease object of ``entry``, live or expired."""
    out = []
    for index in _backend(entry).held():
        lease = read_lease(entry, index)
        if lease is not None:
            out.append(lease)
    return out


def clear_expired(entry: Entry) -> list[int]:
    """Delete expired leases (and every lease of a chunk already done); returns their indices."""
    backend = _backend(entry)
    done = entry.done_chunks()
    cleared = []
    for lease in leases(entry):
        if lease.expired or lease.index in done:
            backend.delete(lease.index)
            cleared.append(lease.index)
    return cleared


def claim_missing(
    entry: Entry,
    owner: str | None = None,
    ttl: float = DEFAULT_TTL,
    chunks: Iterable[int] | None = None,
) -> Iterator[Lease]:
    """Yield leases on the entry's missing chunks (or ``chunks``), one at a time, as claimed.

    Claims are lazy: the next chunk is claimed only when the caller asks for it, after it
    has written the previous one, so two writers interleave instead of one grabbing all.
    A chunk that became done meanwhile is skipped.
    """
    owner = owner or default_owner()
    candidates = list(entry.missing_chunks() if chunks is None else chunks)
    for index in candidates:
        if index in entry.done_chunks():
            continue
        lease = claim(entry, index, owner, ttl)
        if lease is None:
            continue
        if entry.marker(index) is not None:  # finished by another writer just now
            release(entry, lease)
            continue
        yield lease


def fill_with_leases(
    entry: Entry,
    compute: Callable[[int, int], Any],
    owner: str | None = None,
    ttl: float = DEFAULT_TTL,
    progress: Progress | None = None,
) -> list[int]:
    """Write every missing chunk this writer can lease: ``compute(start, stop)`` gives its rows.

    Returns the chunk indices written here. Chunks leased by other live writers are left
    to them; call again (or check ``entry.missing_chunks()``) to pick up what they drop.
    """
    written: list[int] = []
    total = len(entry.missing_chunks())
    for lease in claim_missing(entry, owner, ttl):
        start, stop = entry.chunk_bounds(lease.index)
        try:
            entry.write_chunk(lease.index, compute(start, stop))
        finally:
            release(entry, lease)
        written.append(lease.index)
        if progress is not None:
            progress(len(written), total, {"chunk": lease.index})
    return written


def live_leases(entry: Entry) -> list[Lease]:
    """Leases of ``entry`` whose holder is still working: not expired, chunk not done."""
    live = [lease for lease in leases(entry) if not lease.expired]
    if not live:
        return []
    done = entry.done_chunks()
    return [lease for lease in live if lease.index not in done]


def describe_holders(held: list[Lease]) -> str:
    """``host H pid P (chunks 0, 3; lease age 4 s, until 12:00:05 UTC)`` for each holder."""
    by_owner: dict[str, list[Lease]] = {}
    for lease in held:
        by_owner.setdefault(lease.owner, []).append(lease)
    parts = []
    for owner, owned in sorted(by_owner.items()):
        host, _, rest = owner.partition(":")
        pid = rest.partition(":")[0]
        who = f"host {host} pid {pid}" if pid.isdigit() else f"owner {owner}"
        until = time.strftime("%H:%M:%S UTC", time.gmtime(max(x.expires for x in owned)))
        chunks = ", ".join(str(x.index) for x in sorted(owned, key=lambda x: x.index))
        ages = [x.age for x in owned if x.renewed]
        age = f"lease age {min(ages):.0f} s, " if ages else ""
        parts.append(f"{who} (chunks {chunks}; {age}until {until})")
    return "; ".join(parts)


def held_entries(store: Any, keys: Iterable[str] | None = None) -> dict[str, str]:
    """Entries (all, or ``keys``) a live writer holds a lease on: key -> who holds it."""
    out = {}
    for key in store.entry_keys() if keys is None else keys:
        try:
            entry = store.get_entry(key)
        except (DamagedEntryError, EntryNotFoundError):
            continue  # unreadable or gone: no lease to honour
        held = live_leases(entry)
        if held:
            out[key] = describe_holders(held)
    return out


def check_not_held(store: Any, key: str) -> None:
    """LeaseError naming the holder when a live writer holds a lease on entry ``key``: what
    `featstore rm` asks before removing it (``--force`` skips the question)."""
    holders = held_entries(store, [key])
    if key in holders:
        raise LeaseError(
            f"entry {key} is being written: leased by {holders[key]}; wait for that run to "
            "finish (or stop it), or pass --force to remove the entry anyway"
        )


def gc_leases(store: Any, *, dry_run: bool = False) -> list[str]:
    """Stale leases of every entry (expired, dead owner on this host, chunk done): removed
    unless ``dry_run``; returns ``<entry key>/_lease/<index>`` for each."""
    removed: list[str] = []
    for key in store.entry_keys():
        try:
            entry = store.get_entry(key)
        except DamagedEntryError:  # unreadable metadata: verify reports it, gc leaves it be
            continue
        if dry_run:
            done = entry.done_chunks()
            stale = [lease.index for lease in leases(entry) if lease.expired or lease.index in done]
        else:
            stale = clear_expired(entry)
        removed.extend(f"{key}/{LEASE_DIR}/{index}" for index in sorted(stale))
    return removed
