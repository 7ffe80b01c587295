"""Admin for the keyring: keys (enable or disable only) and the lease history (read-only).

The sealed private key never leaves the database through the admin: it is not a field of
any form, list, filter or search here, and every query that reaches a key defers it, so
its bytes are not even loaded into the web process.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.db.models import Count, F, Q, QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.forms import ModelForm
from django.http import HttpRequest
from django.utils import timezone
from django.utils.safestring import SafeString

from kernel.admin import ReadOnlyAdmin, changelist_link
from keyring.models import KeyLease, SigningKey
from keyring.selectors import held_now
from keyring.services import set_keys_enabled

SECRET = "encrypted_private_key"


class HeldFilter(admin.SimpleListFilter):
    """Keys that an open lease holds right now, or that are free."""

    title = "held"
    parameter_name = "held"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        return [("yes", "held"), ("no", "free")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(held_now())
        if self.value() == "no":
            return queryset.exclude(held_now())
        return queryset


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
    """Keys are created by `manage.py seed` and deleted by nobody (leases name them).

    Only `enabled` (and with it `disabled_at`) can change, through the form or the actions,
    both by `set_keys_enabled`; nothing else is ever written back, so a stale page cannot
    overwrite the `last_used_at` a release just set. A retired key (`manage.py keys
    retire`) changes no more: its form is read-only, and the enable action skips it.
    """

    list_display = (
        "kid",
        "algorithm",
        "enabled",
        "last_used_at",
        "created_at",
        "lease_count",
        "is_held",
    )
    list_filter = ("enabled", HeldFilter, "algorithm")
    search_fields = ("kid",)
    # Rule 4's order: the key at the top is the next one a batch will lease.
    ordering = (F("last_used_at").asc(nulls_first=True), "id")
    actions = ("disable_keys", "enable_keys")
    exclude = (SECRET,)  # never a form field, whatever `fields` says one day
    fields = (
        "kid",
        "algorithm",
        "enabled",
        "disabled_at",
        "retired_at",
        "out_of_keyring",
        "public_key_pem",
        "last_used_at",
        "created_at",
        "lease_count",
        "is_held",
        "leases",
    )
    readonly_fields = tuple(name for name in fields if name != "enabled")

    def get_queryset(self, request: HttpRequest) -> QuerySet[SigningKey]:
        """Counts in the same query as the keys (no query per row), secret left unread."""
        return (
            super()
            .get_queryset(request)
            .defer(SECRET)
            .annotate(lease_count=Count("leases"), held=held_now())
        )

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        """No filter on the sealed key from the URL: `?encrypted_private_key__gt=` would
        otherwise let anyone read it back a byte at a time."""
        if lookup.split(LOOKUP_SEP)[0] == SECRET:
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_readonly_fields(
        self, request: HttpRequest, obj: SigningKey | None = None
    ) -> tuple[str, ...]:
        if obj is not None and obj.retired_at is not None:
            return self.fields
        return self.readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SigningKey | None = None) -> bool:
        return False

    def save_model(
        self, request: HttpRequest, obj: SigningKey, form: ModelForm, change: bool
    ) -> None:
        set_keys_enabled(SigningKey.objects.filter(pk=obj.pk), enabled=obj.enabled)

    @admin.display(description="leases", ordering="lease_count")
    def lease_count(self, key: SigningKey) -> int:
        return key.lease_count

    @admin.display(description="held", boolean=True, ordering="held")
    def is_held(self, key: SigningKey) -> bool:
        return key.held

    @admin.display(description="times out of the keyring")
    def out_of_keyring(self, key: SigningKey) -> str:
        """Every disabled period, as the audit's LRU replay reads them."""
        periods = key.disabled_periods.order_by("disabled_at")
        return (
            "; ".join(
                f"{period.disabled_at:%Y-%m-%d %H:%M:%S} to "
                + (f"{period.enabled_at:%Y-%m-%d %H:%M:%S}" if period.enabled_at else "now")
                for period in periods
            )
            or "never"
        )

    @admin.display(description="lease history")
    def leases(self, key: SigningKey) -> SafeString:
        return changelist_link("keyring.keylease", "leases of this key", key__id__exact=key.pk)

    @admin.action(description="Disable selected keys", permissions=["change"])
    def disable_keys(self, request: HttpRequest, queryset: QuerySet[SigningKey]) -> None:
        """A disabled key gets no new lease; a batch holding it now finishes with it."""
        self._set_enabled(request, queryset, enabled=False)

    @admin.action(description="Enable selected keys", permissions=["change"])
    def enable_keys(self, request: HttpRequest, queryset: QuerySet[SigningKey]) -> None:
        self._set_enabled(request, queryset, enabled=True)

    def _set_enabled(
        self, request: HttpRequest, queryset: QuerySet[SigningKey], *, enabled: bool
    ) -> None:
        changed = set_keys_enabled(queryset, enabled=enabled)
        state = "enabled" if enabled else "disabled"
        retired = queryset.exclude(retired_at=None).count() if enabled else 0
        skipped = f" {retired} retired key(s) left out: they stay out for good." if retired else ""
        self.message_user(request, f"{changed} key(s) {state}.{skipped}", messages.SUCCESS)


class LeaseStateFilter(admin.SimpleListFilter):
    """Open leases (a batch holds the key now) or closed ones (released or expired)."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        return [("open", "open (held)"), ("closed", "closed (released)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "open":
            return queryset.filter(released_at=None)
        if self.value() == "closed":
            return queryset.filter(~Q(released_at=None))
        return queryset


def _seconds(duration: timedelta) -> str:
    return f"{duration.total_seconds():.3f} s"


@admin.register(KeyLease)
class KeyLeaseAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kid",
        "batch",
        "token",
        "acquired_at",
        "expires_at",
        "released_at",
        "outcome",
        "held_for",
    )
    list_filter = (LeaseStateFilter, "outcome", "batch__run")
    list_select_related = ("key", "batch")
    # One lease per batch attempt: as many rows as batches, or more.
    show_full_result_count = False
    raw_id_fields = ("key", "batch")
    search_fields = ("key__kid",)
    search_number_field = "batch_id"
    search_help_text = "A batch id, or part of a key's kid."
    ordering = ("-id",)
    fields = (
        "id",
        "key",
        "batch",
        "token",
        "acquired_at",
        "expires_at",
        "released_at",
        "outcome",
        "held_for",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[KeyLease]:
        """Key and batch joined (their names are on every row), the sealed key left unread."""
        return (
            super()
            .get_queryset(request)
            .select_related("key", "batch")
            .defer(f"key__{SECRET}", "key__public_key_pem")
        )

    @admin.display(description="key", ordering="key__kid")
    def kid(self, lease: KeyLease) -> str:
        return lease.key.kid

    @admin.display(description="held / duration")
    def held_for(self, lease: KeyLease) -> str:
        """How long the key was held; an open lease says so, and whether it is overdue."""
        if lease.released_at is not None:
            return _seconds(lease.released_at - lease.acquired_at)
        now = timezone.now()
        overdue = " (overdue)" if now > lease.expires_at else ""
        return f"held for {_seconds(now - lease.acquired_at)}{overdue}"
