"""Reads of records and signatures."""

from django.db.models import Exists, OuterRef, QuerySet

from records.models import Record, Signature


def unsigned_records() -> QuerySet[Record]:
    return Record.objects.exclude(Exists(Signature.objects.filter(record=OuterRef("pk"))))


def batch_records(*, first_record_id: int, last_record_id: int) -> list[tuple[int, str]]:
    """The (id, payload) pairs still unsigned in a batch's range, in id order.

    A range is contiguous over ids that were unsigned when the run was planned; ids in it
    that an earlier run signed are skipped here, not signed again.
    """
    # The range is repeated on the signatures: whatever join the planner picks, it reads
    # the range's slice of the primary key, never the whole table (a hash anti-join over
    # every signature made each dispatch slower than the last, docs/benchmarks.md).
    signed = Signature.objects.filter(
        record=OuterRef("pk"), record_id__gte=first_record_id, record_id__lte=last_record_id
    )
    return list(
        Record.objects.filter(id__gte=first_record_id, id__lte=last_record_id)
        .exclude(Exists(signed))
        .order_by("id")
        .values_list("id", "payload")
    )


def record_totals() -> dict[str, int]:
    return {"records": Record.objects.count(), "signed": Signature.objects.count()}
