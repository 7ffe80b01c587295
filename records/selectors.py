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
    return list(
        unsigned_records()
        .filter(id__gte=first_record_id, id__lte=last_record_id)
        .order_by("id")
        .values_list("id", "payload")
    )


def record_totals() -> dict[str, int]:
    return {"records": Record.objects.count(), "signed": Signature.objects.count()}
