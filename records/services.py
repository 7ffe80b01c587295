"""The seed's Collection Service: load records, and store a batch's signatures, fenced."""

from __future__ import annotations

import random
from collections.abc import Iterator

import dramatiq
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from kernel.events import EventLogger
from kernel.roles import ResetNeedsOwner, insufficient_privilege
from kernel.vendor import is_sqlite
from keyring.services import forget_private_keys
from records import sql
from records import sqlite as embedded

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
