"""The seed's Collection Service: load records, and store a batch's signatures, fenced."""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Iterator

import dramatiq
from django.db import connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.utils import timezone

from keyring.models import ClockTimestamp, KeyLease
from keyring.services import forget_private_keys
from records import sql
from signing.crypto import SignedRecord
from signing.models import Batch

log = logging.getLogger(__name__)

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


class StoreOutcome(enum.Enum):
    STORED = "stored"
    # The batch was signed under this very lease already: a redelivered SigningTriggered.
    ALREADY_STORED = "already_stored"
    # The lease was released, expired or re-granted: another attempt owns the batch.
    LEASE_LOST = "lease_lost"


def store_signatures(
    *, lease_id: int, token: int, batch_id: int, key_id: int, signatures: list[SignedRecord]
) -> tuple[StoreOutcome, int]:
    """Write all of a batch's signatures in one transaction, or none of them.

    The lease row is locked first (FOR NO KEY UPDATE): a release or expiry waits for this
    transaction, and this one sees any that committed before it. A lease that is closed,
    past its `expires_at` (even if the reaper has not closed it yet), or whose token moved
    on means the batch is, or may soon be, another attempt's: nothing is written.
    Returns the outcome and the number of records that already had a signature
    (conflicts: there must be none).
    """
    with transaction.atomic():
        lease = (
            KeyLease.objects.select_for_update(no_key=True)
            .filter(pk=lease_id)
            .annotate(live=ExpressionWrapper(Q(expires_at__gt=ClockTimestamp()), BooleanField()))
            .values("token", "released_at", "batch_id", "key_id", "live")
            .first()
        )
        if (
            lease is None
            or lease["released_at"] is not None
            or not lease["live"]
            or (lease["token"], lease["batch_id"], lease["key_id"]) != (token, batch_id, key_id)
        ):
            return StoreOutcome.LEASE_LOST, 0
        claimed = Batch.objects.filter(pk=batch_id, status=Batch.Status.LEASED).update(
            status=Batch.Status.SIGNED, signed_at=ClockTimestamp()
        )
        if not claimed:
            return StoreOutcome.ALREADY_STORED, 0
        with connection.cursor() as cursor:
            cursor.execute(
                sql.INSERT_SIGNATURES,
                {
                    "key_id": key_id,
                    "batch_id": batch_id,
                    "lease_id": lease_id,
                    "record_ids": [signed.record_id for signed in signatures],
                    "signatures": [signed.signature for signed in signatures],
                },
            )
            (inserted,) = cursor.fetchone()
    conflicts = len(signatures) - inserted
    if conflicts:
        log.error(
            "signatures.conflicts batch_id=%s lease_id=%s conflicts=%s",
            batch_id,
            lease_id,
            conflicts,
        )
    return StoreOutcome.STORED, conflicts


def random_payloads(count: int, *, rng: random.Random) -> Iterator[str]:
    """Random printable payloads of 16 to 256 characters."""
    lengths = [rng.randint(16, 256) for _ in range(count)]
    characters = "".join(rng.choices(PAYLOAD_ALPHABET, k=sum(lengths)))
    offset = 0
    for length in lengths:
        yield characters[offset : offset + length]
        offset += length


def load_records(payloads: Iterator[str]) -> int:
    """Bulk-load records with COPY; return how many were loaded.

    The table is analyzed at once: plans of the first run would otherwise be made for an
    empty table until autovacuum comes round (up to a minute later).
    """
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

    Queued messages go too, once the reset commits: they name rows that are gone, and the
    restarted ids would make them name new rows instead (an audit_run left over from the
    last run would audit the next run 1 while it is still signing).
    """
    with connection.cursor() as cursor:
        cursor.execute(sql.RESET_ALL)
    transaction.on_commit(dramatiq.get_broker().flush_all)
    forget_private_keys()
