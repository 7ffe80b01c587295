"""The read-only admin base every app's admin shares, and its small helpers.

Runs, batches, leases and signatures are the history the audit replays: the admin shows
them and never writes them.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

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
