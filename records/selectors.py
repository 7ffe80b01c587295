"""Reads of records and signatures."""

from collections.abc import Iterator
from dataclasses import dataclass

from django.db import connection

from keyring.models import SigningKey
from records import sql
from records.models import Record, Signature

# Records read (and signed) per piece of a batch: a batch of any size is read in pages of
# this many, so a worker holds a page or two of it at a time, whatever the batch size.
PAGE_SIZE = 10_000


def unsigned_record_pages(
    *, first_record_id: int, last_record_id: int, page_size: int | None = None
) -> Iterator[list[tuple[int, str]]]:
    """The (id, payload) pairs still unsigned in a batch's range, in id order, a page at a time.

    A range is contiguous over ids that were unsigned when the run was planned; ids in it
    that an earlier run signed are skipped here, not signed again. Named SQL, not the ORM:
    it runs once per batch, and building the query cost the workers more than running it.
    """
    page_size = page_size or PAGE_SIZE
    after_id = first_record_id - 1
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                sql.UNSIGNED_PAGE,
                {"after_id": after_id, "last_id": last_record_id, "limit": page_size},
            )
            page = cursor.fetchall()
        if page:
            yield page
        if len(page) < page_size:
            return
        after_id = page[-1][0]


def record_totals() -> dict[str, int]:
    return {"records": Record.objects.count(), "signed": Signature.objects.count()}


@dataclass(frozen=True, slots=True)
class Inventory:
    """What a reset would delete, counted: commands show it before they delete anything."""

    records: int
    signatures: int
    keys: int

    @property
    def empty(self) -> bool:
        return not (self.records or self.signatures or self.keys)

    def __str__(self) -> str:
        return (
            f"{_count(self.records, 'record')}, {_count(self.signatures, 'signature')} and "
            f"{_count(self.keys, 'key')} (private keys with them)"
        )


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def inventory() -> Inventory:
    return Inventory(
        records=Record.objects.count(),
        signatures=Signature.objects.count(),
        keys=SigningKey.objects.count(),
    )
