"""The database operations of the run path, as one interface with two implementations.

PostgreSQL (signing.backends.postgresql) runs each as named SQL, most of them calling the
PL/pgSQL functions of the migrations; embedded mode's SQLite (signing.backends.sqlite) runs
the same steps in Python, inside BEGIN IMMEDIATE transactions. Each returns the same
values, so the callers above (signing.runs, signing.audit, keyring.services) never ask
which database they are on. signing.backends.backend() picks one, once, from settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from keyring.leases import GrantedLease, LeaseHint

# What a fenced store says: (lease still held?, batch claimed?, signatures inserted).
StoreCounts = tuple[int, int, int]
# What a plan made: (batches, records, the highest record id it saw: 0 if none).
Planned = tuple[int, int, int]
# A batch taken up: its status, its range, and the first page of its records still unsigned
# (none unless it is leased).
TakeUp = tuple[str, int, int, bool, list[tuple[int, str]]]


class Backend(Protocol):
    """Every method runs on Django's default connection, in the caller's transaction when
    there is one. A lease travels in as one LeaseHint and comes out as a GrantedLease."""

    # Whether the workers that sign are this process's threads (embedded mode's in-process
    # broker) rather than processes of their own with their own environment.
    signs_in_this_process: bool

    # The keyring lock and its clock.
    def lock_keyring(self) -> None:
        """Serialize with every other lease and release until this transaction ends."""

    def clock(self) -> datetime:
        """The time by the clock leases are stamped with."""

    # Leases.
    def lease_lru_key(self, *, batch_id: int, ttl_seconds: float) -> GrantedLease | None:
        """Lease the least recently used free enabled key to a batch; None if all are busy."""

    def release_lease(self, *, lease_id: int, outcome: str) -> int | None:
        """Close an open lease and stamp its key as used; its batch id, or None if the lease
        was closed already (idempotent)."""

    def extend_lease(self, lease: LeaseHint, *, ttl_seconds: float) -> bool:
        """Push an open, unexpired lease's expiry one TTL past now, under its token only."""

    def expire_leases(self) -> list[tuple[int, int, int]]:
        """Close every open lease past its expiry, under the keyring lock; (lease id, batch
        id, run id) of each, in lease id order."""

    # A run.
    def plan_batches(self, *, run_id: int, batch_size: int) -> Planned:
        """Cut the unsigned records into the run's batches; (batches, records, the highest
        record id the plan saw), all read as one (one statement, or under the write lock)."""

    def claim_batches(
        self, *, run_id: int, ttl_seconds: float, release_lease_ids: Sequence[int] = ()
    ) -> list[GrantedLease]:
        """Release the leases given (each only if its batch is signed and of this run), then
        claim the run's next pending batches up to its in-flight limit, each leased the LRU
        free key, in seq order, in one turn of the keyring lock."""

    def take_up(self, lease: LeaseHint, *, ttl_seconds: float, page_size: int) -> TakeUp | None:
        """Check a message's lease whole; on its first take-up stamp it, count the batch's
        attempt and give the lease a full TTL. (status, first, last record id, the first
        `page_size` records still unsigned while it is leased) of the batch, or None when
        the hint names no live lease."""

    def block_run_changes(self) -> None:
        """Until this transaction ends, no run is inserted or changes status."""

    def lock_record_inserts(self) -> None:
        """Wait until every record insert in flight has committed or rolled back, and hold
        new ones off until this transaction ends: from then on, every record id below the
        highest one this transaction sees is committed, and none can appear later."""

    # A run's end, told to whoever watches it (`manage.py sign`): no one has to poll for it.
    def announce_run_finished(self, run_id: int) -> None:
        """Once this transaction commits, wake every process waiting in wait_for_finished_run."""

    def listen_for_finished_runs(self) -> None:
        """From now on, this connection hears every run that finishes (before reading one)."""

    def wait_for_finished_run(self, *, timeout: float) -> None:
        """Return when a run has finished since the last call (any run: the caller reads its
        own again), or after `timeout` seconds."""

    # The store, fenced by the lease.
    def store_signatures(
        self,
        lease: LeaseHint,
        *,
        record_ids: list[int],
        signatures: list[bytes],
        merkle_root: bytes,
    ) -> StoreCounts:
        """Write a batch's signatures and move it from leased to signed with its Merkle root,
        all or nothing."""

    def empty_stage(self) -> None:
        """This connection's stage of a big batch's signatures, made if missing, emptied."""

    def stage(self, *, record_ids: list[int], signatures: list[bytes]) -> None:
        """Add a page of signatures to the stage."""

    def store_staged_signatures(
        self, lease: LeaseHint, *, staged: int, merkle_root: bytes
    ) -> StoreCounts:
        """store_signatures from the stage, only if it holds all `staged` signatures."""

    # Records, and the whole service's data.
    def load_records(self, payloads: Iterable[str]) -> int:
        """Bulk-load records; how many were loaded."""

    def reset_all(self) -> None:
        """Empty every table of the service; ids are not restarted."""

    # The audit and the reaper.
    def overlapping_leases(self, *, run_id: int | None) -> list[tuple[int, int, str]]:
        """(lease, lease, kid) of every two leases of one key that overlap in time."""

    def reaper_turn(self) -> AbstractContextManager[bool]:
        """Process-wide: whether this thread may run a recovery pass now."""

    def try_reaper_lock(self) -> bool:
        """Inside the pass's transaction: whether no other process is running one."""
