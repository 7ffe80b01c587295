"""Embedded mode's collection service: records.sql's statements for SQLite.

store_signatures keeps the PostgreSQL statement's order and fencing, in one BEGIN
IMMEDIATE transaction: SQLite's write lock stands in for the lease row's lock, so a
release or expiry cannot slip between the lease check and the insert.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.utils import timezone

from keyring.sqlite import live_lease
from signing.models import Batch

INSERT_SIGNATURES = """
INSERT INTO records_signature (record_id, key_id, batch_id, lease_id, signature, signed_at)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (record_id) DO NOTHING
"""
INSERT_RECORD = "INSERT INTO records_record (payload, created_at) VALUES (%s, %s)"
ROWS_PER_INSERT = 10_000

# The keys first: a lease, a signature or a record may be deleted only once the keyring
# is empty (keyring migration 0006, records migration 0007), which only a reset does.
# Foreign keys are checked at commit, when all are gone.
RESET_TABLES = (
    "keyring_keydisabledperiod",
    "keyring_signingkey",
    "keyring_keylease",
    "records_signature",
    "signing_runaudit",
    "signing_batch",
    "signing_signingrun",
    "records_record",
)


def store_signatures(
    *,
    lease_id: int,
    token: int,
    batch_id: int,
    key_id: int,
    record_ids: list[int],
    signatures: list[bytes],
) -> tuple[int, int, int]:
    """STORE_SIGNATURES: (lease still held?, batch claimed?, signatures inserted)."""
    with transaction.atomic():
        now = timezone.now()
        fence = {"lease_id": lease_id, "token": token, "batch_id": batch_id, "key_id": key_id}
        if not live_lease(**fence, now=now).exists():
            return 0, 0, 0
        claimed = Batch.objects.filter(pk=batch_id, status=Batch.Status.LEASED).update(
            status=Batch.Status.SIGNED, signed_at=now
        )
        if not claimed:
            return 1, 0, 0
        signed_at = connection.ops.adapt_datetimefield_value(now)
        with connection.cursor() as cursor:
            cursor.executemany(
                INSERT_SIGNATURES,
                [
                    (record_id, key_id, batch_id, lease_id, signature, signed_at)
                    for record_id, signature in zip(record_ids, signatures, strict=True)
                ],
            )
            return 1, 1, cursor.rowcount


# CREATE_STAGE's table; `temp.` names it in the connection's own temporary database.
STAGE = "temp.signing_staged_signature"


def empty_stage() -> None:
    """CREATE_STAGE and CLEAR_STAGE: this connection's temporary table, made if missing,
    and emptied (before a big batch is staged, and after it is stored)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {STAGE} "
            "(record_id INTEGER NOT NULL, signature BLOB NOT NULL)"
        )
        cursor.execute(f"DELETE FROM {STAGE}")


def stage(record_ids: list[int], signatures: list[bytes]) -> None:
    """STAGE_SIGNATURES."""
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {STAGE} (record_id, signature) VALUES (%s, %s)",
            list(zip(record_ids, signatures, strict=True)),
        )


def store_staged_signatures(
    *, lease_id: int, token: int, batch_id: int, key_id: int, staged: int
) -> tuple[int, int, int]:
    """STORE_STAGED_SIGNATURES: store_signatures, from the stage, if it holds `staged`."""
    with transaction.atomic(), connection.cursor() as cursor:
        now = timezone.now()
        fence = {"lease_id": lease_id, "token": token, "batch_id": batch_id, "key_id": key_id}
        if not live_lease(**fence, now=now).exists():
            return 0, 0, 0
        cursor.execute(f"SELECT count(*) FROM {STAGE}")
        if cursor.fetchone()[0] != staged:
            return 1, 0, 0
        claimed = Batch.objects.filter(pk=batch_id, status=Batch.Status.LEASED).update(
            status=Batch.Status.SIGNED, signed_at=now
        )
        if not claimed:
            return 1, 0, 0
        cursor.execute(
            "INSERT INTO records_signature "
            "(record_id, key_id, batch_id, lease_id, signature, signed_at) "
            f"SELECT record_id, %s, %s, %s, signature, %s FROM {STAGE} WHERE true "
            "ON CONFLICT (record_id) DO NOTHING",
            [key_id, batch_id, lease_id, connection.ops.adapt_datetimefield_value(now)],
        )
        return 1, 1, cursor.rowcount


def load_records(payloads: Iterable[str]) -> int:
    """COPY_RECORDS: insert the payloads, ROWS_PER_INSERT at a time; how many were loaded.

    One transaction: in autocommit each row would be a commit of its own, each synced to
    disk (synchronous=FULL): 15 s for 100k rows instead of 1.5 s.
    """
    created_at = connection.ops.adapt_datetimefield_value(timezone.now())
    loaded = 0
    with transaction.atomic(), connection.cursor() as cursor:
        for chunk in _chunks(payloads, ROWS_PER_INSERT):
            cursor.executemany(INSERT_RECORD, [(payload, created_at) for payload in chunk])
            loaded += len(chunk)
        cursor.execute("ANALYZE records_record")
    return loaded


def reset_all(*, using: str = DEFAULT_DB_ALIAS) -> None:
    """RESET_ALL: empty every table of the service. Ids go on from where they were
    (AUTOINCREMENT keeps its counters in sqlite_sequence): they never repeat."""
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        for table in RESET_TABLES:  # names from the fixed list above, never from input
            cursor.execute(f"DELETE FROM {table}")


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
