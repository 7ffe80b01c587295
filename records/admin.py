"""Admin for records and signatures: read-only, and cheap on tables of 100,000+ rows.

Every list is one query for its page plus the paginator's count of the filtered rows:
related names come from joins, "signed" from an EXISTS on the signature's primary key, and
the unfiltered total is never counted.
"""

from __future__ import annotations

import base64

from django.contrib import admin
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from kernel.admin import ReadOnlyAdmin, short
from records.models import Record, Signature


def _signature_of_record() -> Exists:
    return Exists(Signature.objects.filter(record=OuterRef("pk")))


class SignedFilter(admin.SimpleListFilter):
    """Records that have their signature, or that are still waiting for one."""

    title = "signed"
    parameter_name = "signed"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        return [("yes", "signed"), ("no", "not signed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(_signature_of_record())
        if self.value() == "no":
            return queryset.exclude(_signature_of_record())
        return queryset


@admin.register(Record)
class RecordAdmin(ReadOnlyAdmin):
    """Records come from `seed`, `ingest` and POST /api/records/, never from here: a record
    edited after signing would not verify."""

    list_display = ("id", "payload_start", "created_at", "signed")
    list_filter = (SignedFilter,)
    show_full_result_count = False
    # Payload text is searched only for terms that are not an id: a scan of every record.
    search_fields = ("payload",)
    search_number_field = "pk"
    search_help_text = "A record id, or words of its payload."
    ordering = ("-id",)
    fields = ("id", "payload", "created_at", "signature_link")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Record]:
        return super().get_queryset(request).annotate(signed=_signature_of_record())

    @admin.display(description="payload")
    def payload_start(self, record: Record) -> str:
        return short(record.payload)

    @admin.display(description="signed", boolean=True, ordering="signed")
    def signed(self, record: Record) -> bool:
        return record.signed

    @admin.display(description="signature")
    def signature_link(self, record: Record) -> SafeString | str:
        if not record.signed:
            return "not signed yet"
        url = reverse("admin:records_signature_change", args=[record.pk])
        return format_html('<a href="{}">{}</a>', url, "signature of this record")


def _hex(signature: Signature) -> str:
    return bytes(signature.signature).hex()


@admin.register(Signature)
class SignatureAdmin(ReadOnlyAdmin):
    """A signature is shown as hex (as `encode(signature, 'hex')` prints it) and base64."""

    list_display = ("record_number", "kid", "batch", "lease", "signed_at", "signature_start")
    list_filter = ("batch__run", "key__algorithm")
    list_select_related = ("key", "batch", "lease")
    show_full_result_count = False
    # Never a <select> of 100,000 records, should this admin ever become editable.
    raw_id_fields = ("record", "key", "batch", "lease")
    search_fields = ("key__kid",)
    search_number_field = "pk"
    search_help_text = "A record id, or part of the signing key's kid."
    ordering = ("-record",)
    fields = ("record", "key", "batch", "lease", "signed_at", "signature_hex", "signature_base64")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Signature]:
        """Key, batch and lease joined (named on every row), the sealed key left unread."""
        return (
            super()
            .get_queryset(request)
            .select_related("key", "batch", "lease")
            .defer("key__encrypted_private_key", "key__public_key_pem")
        )

    @admin.display(description="record", ordering="record")
    def record_number(self, signature: Signature) -> int:
        return signature.record_id

    @admin.display(description="key", ordering="key__kid")
    def kid(self, signature: Signature) -> str:
        return signature.key.kid

    @admin.display(description="signature (hex)")
    def signature_start(self, signature: Signature) -> str:
        return short(_hex(signature), 24)

    @admin.display(description="signature (hex)")
    def signature_hex(self, signature: Signature) -> str:
        return _hex(signature)

    @admin.display(description="signature (base64)")
    def signature_base64(self, signature: Signature) -> str:
        return base64.b64encode(bytes(signature.signature)).decode("ascii")
