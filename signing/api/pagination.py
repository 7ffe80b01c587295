"""Pages of lists: `?limit=` and `?offset=` checked as the schema documents them.

DRF's LimitOffsetPagination ignores a limit it cannot read and clamps one too large, so a
typo (`?limit=ten`) silently gives another page than asked. Here a value the schema forbids
is a 400 in the API's error shape, naming the parameter: a whole number, given once, in range.
"""

from __future__ import annotations

import re
from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

# PostgreSQL's OFFSET is a bigint.
MAX_OFFSET = 2**63 - 1
MAX_LIMIT = 1000
_DIGITS = re.compile(r"[0-9]{1,19}")


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """LimitOffsetPagination with `limit` 1 to 1000 and `offset` 0 to 2**63 - 1, refused
    otherwise."""

    max_limit = MAX_LIMIT

    def get_limit(self, request: Request) -> int:
        return _whole_number(
            request, self.limit_query_param, self.default_limit, minimum=1, maximum=self.max_limit
        )

    def get_offset(self, request: Request) -> int:
        return _whole_number(request, self.offset_query_param, 0, minimum=0, maximum=MAX_OFFSET)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            _parameter(
                self.limit_query_param,
                f"Rows in the page, 1 to {self.max_limit} (default {self.default_limit}).",
                minimum=1,
                maximum=self.max_limit,
                default=self.default_limit,
            ),
            _parameter(
                self.offset_query_param,
                "Rows to skip before the page (default 0).",
                minimum=0,
                maximum=MAX_OFFSET,
                default=0,
            ),
        ]


def _whole_number(request: Request, name: str, default: int, *, minimum: int, maximum: int) -> int:
    values = request.query_params.getlist(name)
    if not values:
        return default
    if len(values) > 1:
        raise ValidationError({name: [f"Give {name} once, not {len(values)} times."]})
    if not _DIGITS.fullmatch(values[0]) or not minimum <= int(values[0]) <= maximum:
        raise ValidationError({name: [f"Must be a whole number from {minimum} to {maximum}."]})
    return int(values[0])


def _parameter(name: str, description: str, **schema: int) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "integer", **schema},
    }
