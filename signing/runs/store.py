"""The store step: a batch's signatures written whole, fenced by its lease, and the batch
moved from leased to signed in the same statement (the batch's status is what makes a
redelivered SigningTriggered store nothing the second time)."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import DatabaseError, connection

from kernel.crypto import SignedRecord
from kernel.events import EventLogger
from kernel.vendor import is_sqlite
from signing.models import Batch
from signing.runs import sql
from signing.runs import sqlite as embedded

log = EventLogger(__name__)


class StoreOutcome(enum.Enum):
    STORED = "stored"
    # The batch was signed under this very lease already: a redelivered SigningTriggered.
    ALREADY_STORED = "already_stored"
    # The lease was released, expired or re-granted: another attempt owns the batch.
    LEASE_LOST = "lease_lost"


def store_signatures(
    *, lease_id: int, token: int, batch_id: int, key_id: int, signatures: list[SignedRecord]
) -> tuple[StoreOutcome, int]:
    """Write all of a batch's signatures in one statement, or none of them.

    The lease row is locked first (FOR NO KEY UPDATE): a release or expiry waits for this
    statement, and this one sees any that committed before it. A lease that is closed,
    past its `expires_at` (even if the reaper has not closed it yet), or whose token moved
    on means the batch is, or may soon be, another attempt's: nothing is written.
    Returns the outcome and the number of records that already had a signature
    (conflicts: there must be none).
    """
    fence = {"lease_id": lease_id, "token": token, "batch_id": batch_id, "key_id": key_id}
    arrays = {
        "record_ids": [signed.record_id for signed in signatures],
        "signatures": [signed.signature for signed in signatures],
    }
    if is_sqlite():
        counts = embedded.store_signatures(**fence, **arrays)
    else:
        with _binary_cursor() as cursor:
            cursor.execute(sql.STORE_SIGNATURES, {**fence, **arrays})
            counts = cursor.fetchone()
    return _outcome(*counts, written=len(signatures), batch_id=batch_id, lease_id=lease_id)


class SignatureStage:
    """A big batch's signatures, staged a page at a time in this connection's own temporary
    table (signing.runs.sql.CREATE_STAGE says why), then stored whole by store_staged_signatures.

    Used as a context manager around one batch; emptied on the way in and out.
    """

    def __init__(self) -> None:
        self.count = 0

    def __enter__(self) -> SignatureStage:
        if is_sqlite():
            embedded.empty_stage()
        else:
            with connection.cursor() as cursor:
                cursor.execute(sql.CREATE_STAGE)
                cursor.execute(sql.CLEAR_STAGE)
        return self

    def add(self, signatures: list[SignedRecord]) -> None:
        record_ids = [signed.record_id for signed in signatures]
        raw = [signed.signature for signed in signatures]
        if is_sqlite():
            embedded.stage(record_ids, raw)
        else:
            with _binary_cursor() as cursor:
                cursor.execute(sql.STAGE_SIGNATURES, {"record_ids": record_ids, "signatures": raw})
        self.count += len(signatures)

    def __exit__(self, *exc_info: object) -> None:
        try:
            if is_sqlite():
                embedded.empty_stage()
            else:
                with connection.cursor() as cursor:
                    cursor.execute(sql.CLEAR_STAGE)
        except DatabaseError:  # the session is gone, and its temporary table with it
            pass


class StageIncomplete(Exception):
    """The stage holds fewer signatures than were staged: the session was replaced half-way
    (a database restart). Nothing was stored; the batch is signed again."""


def store_staged_signatures(
    *, lease_id: int, token: int, batch_id: int, key_id: int, stage: SignatureStage
) -> tuple[StoreOutcome, int]:
    """store_signatures for a staged batch: one fenced statement, and only if the stage
    still holds every signature staged (else StageIncomplete, nothing written)."""
    fence = {"lease_id": lease_id, "token": token, "batch_id": batch_id, "key_id": key_id}
    if is_sqlite():
        counts = embedded.store_staged_signatures(**fence, staged=stage.count)
    else:
        with _binary_cursor() as cursor:
            cursor.execute(sql.STORE_STAGED_SIGNATURES, {**fence, "staged": stage.count})
            counts = cursor.fetchone()
    leased, claimed, _ = counts
    if (
        leased
        and not claimed
        and Batch.objects.filter(pk=batch_id, status=Batch.Status.LEASED).exists()
    ):
        raise StageIncomplete(f"batch {batch_id}: the stage lost signatures before the store")
    return _outcome(*counts, written=stage.count, batch_id=batch_id, lease_id=lease_id)


def _outcome(
    leased: int, claimed: int, inserted: int, *, written: int, batch_id: int, lease_id: int
) -> tuple[StoreOutcome, int]:
    if not leased:
        return StoreOutcome.LEASE_LOST, 0
    if not claimed:
        return StoreOutcome.ALREADY_STORED, 0
    conflicts = written - inserted
    if conflicts:
        log.error("signatures.conflicts", batch_id=batch_id, lease_id=lease_id, conflicts=conflicts)
    return StoreOutcome.STORED, conflicts


@contextmanager
def _binary_cursor() -> Iterator[psycopg.Cursor]:
    """A cursor that binds parameters server-side, so they can travel in binary.

    Django's cursors bind on the client (values spelled into the query text). This one
    shares Django's connection and transaction, and its errors are Django's.
    """
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor
