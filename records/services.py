"""The seed's Collection Service: load records, and store a batch's signatures, fenced."""

from __future__ import annotations

import enum
import random
from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq
import psycopg
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from kernel.crypto import SignedRecord
from kernel.events import EventLogger
from kernel.roles import insufficient_privilege
from kernel.vendor import is_sqlite
from keyring.services import forget_private_keys
from records import sql
from records import sqlite as embedded
from signing.exceptions import ResetNeedsOwner
from signing.models import Batch

log = EventLogger(__name__)

# Printable characters for seeded payloads: ASCII, Latin accents, Greek, CJK and an emoji,
# so every run exercises 1- to 4-byte UTF-8 in the signing input.
PAYLOAD_ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?-_'\"()[]{}#%&*+/=@"
    "éèàñüößçåøÉÑÜ"
    "αβγδΩλπ"
    "中文日本語한국어"
    "€£¥"
    "🙂🚀"
)


PAYLOAD_CHUNK = 10_000


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
    table (records.sql.CREATE_STAGE says why), then stored whole by store_staged_signatures.

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


def random_payloads(count: int, *, rng: random.Random) -> Iterator[str]:
    """Random printable payloads of 16 to 256 characters.

    Drawn PAYLOAD_CHUNK payloads at a time, each chunk's characters in one `choices` call
    (fast), so memory stays flat however many records are seeded.
    """
    for first in range(0, count, PAYLOAD_CHUNK):
        lengths = [rng.randint(16, 256) for _ in range(min(PAYLOAD_CHUNK, count - first))]
        characters = "".join(rng.choices(PAYLOAD_ALPHABET, k=sum(lengths)))
        offset = 0
        for length in lengths:
            yield characters[offset : offset + length]
            offset += length


def load_records(payloads: Iterator[str]) -> int:
    """Bulk-load records with COPY (batched INSERTs on SQLite); return how many were loaded.

    The table is analyzed at once: plans of the first run would otherwise be made for an
    empty table until autovacuum comes round (up to a minute later).
    """
    if is_sqlite():
        return embedded.load_records(payloads)
    now = timezone.now()
    loaded = 0
    with connection.cursor() as cursor:
        with cursor.copy(sql.COPY_RECORDS) as copy:
            for payload in payloads:
                copy.write_row((payload, now))
                loaded += 1
        cursor.execute(sql.ANALYZE_RECORDS)
    return loaded


def reset_all() -> None:
    """Delete every record, signature, run, batch, lease and key (`seed --reset`).

    Ids are not restarted (records.sql.RESET_ALL), so a message from before the reset names
    no row of the new data. Queued messages are dropped too once the reset commits: they
    could only be refused. A broker that does not answer then keeps them; that is fine.
    Only the database owner may TRUNCATE: the app role gets ResetNeedsOwner.
    """
    if is_sqlite():
        embedded.reset_all()
    else:
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql.RESET_ALL)
        except DatabaseError as error:
            if insufficient_privilege(error):  # the app role: kernel/roles.py says why
                raise ResetNeedsOwner() from None
            raise
    transaction.on_commit(_drop_queued_messages)
    forget_private_keys()


def _drop_queued_messages() -> None:
    try:
        dramatiq.get_broker().flush_all()
    except Exception as error:  # the stale messages are refused by their lease check anyway
        log.warning("reset.queue_not_flushed", error=error)
