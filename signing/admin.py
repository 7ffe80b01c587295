"""Admin for runs and batches, and the read-only base the other apps' admins share.

Runs, batches, leases and signatures are the history the audit replays: the admin shows
them and never writes them. A run's batch size in particular is fixed for good (rule 5);
a trigger would refuse the change anyway, but the admin never offers it.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from signing.models import Batch, RunAudit, SigningRun

# PostgreSQL's bigint: a larger number matches no id, and must not reach the database.
_MAX_BIGINT = 2**63 - 1


def whole_number(term: str) -> int | None:
    """The search term as an id, or None if it is not a plain (ASCII) whole number."""
    term = term.strip()
    if not (term.isascii() and term.isdigit()) or int(term) > _MAX_BIGINT:
        return None
    return int(term)


def changelist_link(model: str, text: str, **filters: object) -> SafeString:
    """A link to another admin list, filtered (e.g. a batch's leases)."""
    url = reverse(f"admin:{model.replace('.', '_')}_changelist")
    return format_html('<a href="{}?{}">{}</a>', url, urlencode(filters), text)


def short(text: str, length: int = 60) -> str:
    """Long text cut for a list column; the change page shows it whole."""
    return Truncator(text).chars(length)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable, never writable, even by a superuser.

    A row added, edited or deleted by hand would make the history the audit replays lie
    (or be refused by PostgreSQL halfway through), so only the view permission is left.
    Subclasses declare `fields`; all of them are shown read-only.

    Search: a whole number is looked up in `search_number_field` (an indexed id, compared as
    a number, never cast to text over 100,000 rows); any other term goes to `search_fields`.
    """

    search_number_field: str | None = None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> tuple[str, ...]:
        return tuple(self.fields or ())

    def search_by_number(self, queryset: QuerySet, number: int) -> QuerySet:
        return queryset.filter(**{self.search_number_field: number})

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        number = whole_number(search_term)
        if number is None or self.search_number_field is None:
            return super().get_search_results(request, queryset, search_term)
        return self.search_by_number(queryset, number), False


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
    list_filter = ("status",)
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
        "created_at",
        "started_at",
        "finished_at",
        "failure_reason",
        "batches",
    )

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
        "status",
        "attempts",
        "last_error",
        "created_at",
        "leased_at",
        "signed_at",
        "leases",
        "signatures",
    )

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
