"""The seed's Collection Service: records ingested one request (or chunk) at a time, and
the payloads of seeded records. Loading seeded records, and the reset, are the backend
seam's (signing.backends), called by signing.runs.seeding."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from django.db import transaction

from kernel.events import EventLogger
from records.exceptions import PayloadRefused, WrongRecordCount
from records.models import Record
from records.payloads import MAX_RECORDS_PER_INGEST, payload_problem

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


def ingest_records(payloads: Sequence[str]) -> list[int]:
    """Store each payload as a new record, all in one transaction; their ids, in order.

    All or nothing: the count (1 to MAX_RECORDS_PER_INGEST) and every payload are checked
    before anything is written (WrongRecordCount, or PayloadRefused naming the first bad
    one), and the rows go in as one multi-row INSERT … RETURNING on PostgreSQL (a few on
    SQLite, which bounds a statement's parameters) inside one transaction. Ids increase in
    the order given, but need not be contiguous: other writers draw from the same sequence.

    The API and `manage.py ingest` both call this; what must happen once records have
    arrived belongs right after the call, where both can see it.
    """
    if not 1 <= len(payloads) <= MAX_RECORDS_PER_INGEST:
        raise WrongRecordCount(
            f"{len(payloads):,} records: send 1 to {MAX_RECORDS_PER_INGEST:,} at a time"
        )
    for index, payload in enumerate(payloads):
        if (reason := payload_problem(payload)) is not None:
            raise PayloadRefused(index, reason)
    with transaction.atomic():
        created = Record.objects.bulk_create([Record(payload=payload) for payload in payloads])
    ids = [record.pk for record in created]
    log.info("records.ingested", count=len(ids), first_id=ids[0], last_id=ids[-1])
    return ids
