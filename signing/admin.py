"""Admin for runs, batches and their audits.

A run's batch size is fixed for good (rule 5); a trigger would refuse the change anyway,
but the admin never offers it.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.utils.html import format_html_join
from django.utils.safestring import SafeString

from kernel.admin import ReadOnlyAdmin, changelist_link, short
from signing.models import Batch, RunAudit, SigningRun


def merkle_root_hex(root: bytes | memoryview | None) -> str:
    """A root in hex, as the API shows a run's; a dash when there is none."""
    return "-" if root is None else bytes(root).hex()


@admin.register(SigningRun)
class SigningRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "status",
        "batch_size",
        "record_count",
        "batch_count",
        "created_at",
        "started_at",
        "finished_at",
        "failure",
        "batches",
    )
    list_filter = ("status", "follow")
    search_fields = ("failure_reason",)
    search_number_field = "pk"
    search_help_text = "A run id, or words of its failure reason."
    ordering = ("-id",)
    fields = (
        "id",
        "status",
        "batch_size",
        "record_count",
        "batch_count",
        "max_in_flight",
        "planned_through",
        "follow",
        "followed_through",
        "stop_requested_at",
        "created_at",
        "started_at",
        "finished_at",
        "failure_reason",
        "root",
        "batches",
    )

    @admin.display(description="Merkle root")
    def root(self, run: SigningRun) -> str:
        return merkle_root_hex(run.merkle_root)

    @admin.display(description="failure reason", ordering="failure_reason")
    def failure(self, run: SigningRun) -> str:
        return short(run.failure_reason)

    @admin.display(description="batches")
    def batches(self, run: SigningRun) -> SafeString:
        """A link, not an inline: a run of batch size 1 has one batch per record."""
        return changelist_link("signing.batch", f"{run.batch_count} batches", run__id__exact=run.pk)


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "run",
        "seq",
        "first_record_id",
        "last_record_id",
        "size",
        "status",
        "attempts",
        "leased_at",
        "signed_at",
        "error",
    )
    list_filter = ("status", "run")
    list_select_related = ("run",)
    # A run of batch size 1 has as many batches as records: no full count.
    show_full_result_count = False
    # Never a <select> of every run, should this admin ever become editable.
    raw_id_fields = ("run",)
    search_fields = ("last_error",)
    search_number_field = "first_record_id"
    search_help_text = "A record id (the batches whose range holds it), or words of the last error."
    ordering = ("-run", "seq")
    fields = (
        "id",
        "run",
        "seq",
        "first_record_id",
        "last_record_id",
        "size",
        "waiting",
        "status",
        "attempts",
        "last_error",
        "created_at",
        "leased_at",
        "signed_at",
        "root",
        "leases",
        "signatures",
    )

    @admin.display(description="Merkle root")
    def root(self, batch: Batch) -> str:
        return merkle_root_hex(batch.merkle_root)

    def search_by_number(self, queryset: QuerySet, number: int) -> QuerySet:
        """Batches are ranges of record ids: a number finds the batches holding that record."""
        return queryset.filter(first_record_id__lte=number, last_record_id__gte=number)

    @admin.display(description="last error", ordering="last_error")
    def error(self, batch: Batch) -> str:
        return short(batch.last_error)

    @admin.display(description="leases")
    def leases(self, batch: Batch) -> SafeString:
        return changelist_link(
            "keyring.keylease", "leases of this batch", batch__id__exact=batch.pk
        )

    @admin.display(description="signatures")
    def signatures(self, batch: Batch) -> SafeString:
        return changelist_link(
            "records.signature", "signatures of this batch", batch__id__exact=batch.pk
        )


@admin.register(RunAudit)
class RunAuditAdmin(ReadOnlyAdmin):
    """What `manage.py audit --run` found when the run finished (recorded by a worker)."""

    list_display = ("run", "passed", "audited_at")
    list_filter = ("passed",)
    search_number_field = "run_id"
    ordering = ("-run_id",)
    fields = ("run", "passed", "audited_at", "checks")

    @admin.display(description="checks")
    def checks(self, audit: RunAudit) -> SafeString:
        return format_html_join(
            "\n",
            "<p><strong>{}</strong> rule {}: {} — {} breach(es) {}</p>",
            (
                (
                    "PASS" if check["passed"] else "FAIL",
                    check["rule"],
                    check["description"],
                    check["breach_count"],
                    "; ".join(check["breaches"][:5]),
                )
                for check in audit.report.get("checks", [])
            ),
        )
