"""The store step: a batch's signatures written whole, fenced by its lease, and the batch
moved from leased to signed in the same statement (the batch's status is what makes a
redelivered SigningTriggered store nothing the second time)."""

from __future__ import annotations

import enum
from contextlib import suppress

from django.db import DatabaseError

from kernel.crypto import SignedRecord
from kernel.events import EventLogger
from keyring.leases import LeaseHint
from signing.audit.roots import BatchRootBuilder, batch_root
from signing.backends import backend
from signing.models import Batch

log = EventLogger(__name__)


class StoreOutcome(enum.Enum):
    STORED = "stored"
    # The batch was signed under this very lease already: a redelivered SigningTriggered.
    ALREADY_STORED = "already_stored"
    # The lease was released, expired or re-granted: another attempt owns the batch.
    LEASE_LOST = "lease_lost"


def store_signatures(
    lease: LeaseHint, *, signatures: list[SignedRecord]
) -> tuple[StoreOutcome, int]:
    """Write all of a batch's signatures in one statement, or none of them.

    The lease row is locked first (FOR NO KEY UPDATE): a release or expiry waits for this
    statement, and this one sees any that committed before it. A lease that is closed,
    past its `expires_at` (even if the reaper has not closed it yet), or whose token moved
    on means the batch is, or may soon be, another attempt's: nothing is written.
    The batch's Merkle root, computed here from the signatures, is stored by the same
    statement (the batch row it moves to signed), so a signed batch always has its root.
    Returns the outcome and the number of records that already had a signature
    (conflicts: there must be none).
    """
    record_ids = [signed.record_id for signed in signatures]
    raw = [signed.signature for signed in signatures]
    counts = backend().store_signatures(
        lease,
        record_ids=record_ids,
        signatures=raw,
        merkle_root=batch_root(zip(record_ids, raw, strict=True)),
    )
    return _outcome(*counts, written=len(signatures), lease=lease)


class SignatureStage:
    """A big batch's signatures, staged a page at a time in this connection's own temporary
    table (signing.backends.sql.CREATE_STAGE says why), then stored whole by
    store_staged_signatures.

    Used as a context manager around one batch; emptied on the way in and out. It builds
    the batch's Merkle root as the pages come (in record id order: the pages are read in
    it), in memory that grows with the log of the batch's size.
    """

    def __init__(self) -> None:
        self.count = 0
        self.root = BatchRootBuilder()

    def __enter__(self) -> SignatureStage:
        backend().empty_stage()
        return self

    def add(self, signatures: list[SignedRecord]) -> None:
        record_ids = [signed.record_id for signed in signatures]
        raw = [signed.signature for signed in signatures]
        backend().stage(record_ids=record_ids, signatures=raw)
        self.root.add(zip(record_ids, raw, strict=True))
        self.count += len(signatures)

    def __exit__(self, *exc_info: object) -> None:
        with suppress(DatabaseError):  # a session gone takes its temporary table with it
            backend().empty_stage()


class StageIncomplete(Exception):
    """The stage holds fewer signatures than were staged: the session was replaced half-way
    (a database restart). Nothing was stored; the batch is signed again."""


def store_staged_signatures(lease: LeaseHint, *, stage: SignatureStage) -> tuple[StoreOutcome, int]:
    """store_signatures for a staged batch: one fenced statement, and only if the stage
    still holds every signature staged (else StageIncomplete, nothing written)."""
    counts = backend().store_staged_signatures(
        lease, staged=stage.count, merkle_root=stage.root.root()
    )
    leased, claimed, _ = counts
    if (
        leased
        and not claimed
        and Batch.objects.filter(pk=lease.batch_id, status=Batch.Status.LEASED).exists()
    ):
        raise StageIncomplete(f"batch {lease.batch_id}: the stage lost signatures before the store")
    return _outcome(*counts, written=stage.count, lease=lease)


def _outcome(
    leased: int, claimed: int, inserted: int, *, written: int, lease: LeaseHint
) -> tuple[StoreOutcome, int]:
    if not leased:
        return StoreOutcome.LEASE_LOST, 0
    if not claimed:
        return StoreOutcome.ALREADY_STORED, 0
    conflicts = written - inserted
    if conflicts:
        log.error(
            "signatures.conflicts",
            batch_id=lease.batch_id,
            lease_id=lease.lease_id,
            conflicts=conflicts,
        )
    return StoreOutcome.STORED, conflicts
