"""Reads of records and signatures."""

from django.db import connection

from records import sql
from records.models import Record, Signature


def batch_records(*, first_record_id: int, last_record_id: int) -> list[tuple[int, str]]:
    """The (id, payload) pairs still unsigned in a batch's range, in id order.

    A range is contiguous over ids that were unsigned when the run was planned; ids in it
    that an earlier run signed are skipped here, not signed again. Named SQL, not the ORM:
    it runs once per batch, and building the query cost the workers more than running it.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            sql.UNSIGNED_IN_RANGE, {"first_id": first_record_id, "last_id": last_record_id}
        )
        return cursor.fetchall()


def record_totals() -> dict[str, int]:
    return {"records": Record.objects.count(), "signed": Signature.objects.count()}
