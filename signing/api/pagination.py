"""Pages of lists: `?limit=` and `?offset=` bounded before they reach the database."""

from rest_framework.pagination import LimitOffsetPagination

# PostgreSQL's OFFSET and LIMIT are bigints: a larger number was a 500 (DataError).
MAX_OFFSET = 2**63 - 1


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """LimitOffsetPagination with at most 1000 rows a page and an offset PostgreSQL takes."""

    max_limit = 1000

    def get_offset(self, request) -> int:
        return min(super().get_offset(request), MAX_OFFSET)
