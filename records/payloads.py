"""What a payload must be to be stored: the rules the API and `manage.py ingest` share.

A payload is signed as UTF-8 (`"sig-v1\\n" + id + "\\n" + payload`) and kept in a
PostgreSQL `text` column, so it must be text that both can hold exactly: a string with no
NUL character (PostgreSQL text cannot hold U+0000) and no lone surrogate (U+D800 to
U+DFFF: JSON's `"\\ud800"` escape makes one, and it has no UTF-8 encoding). Whitespace is
kept as sent, an empty payload is allowed. Embedded mode's SQLite could hold both, but the
same payload must be accepted or refused on either backend.

The reasons never quote the payload: payloads are data we sign, and may be secret, so they
stay out of error responses and logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Characters (code points) in one payload: the same bound as a message sent to
# POST /api/verify/, so any stored payload can also be verified by its text there.
MAX_PAYLOAD_CHARS = 100_000

# Records in one call of records.services.ingest_records (one API request, one chunk of
# `manage.py ingest`).
MAX_RECORDS_PER_INGEST = 10_000

_NUL = "\x00"
_SURROGATE = re.compile("[\ud800-\udfff]")


def payload_problem(value: object) -> str | None:
    """Why `value` cannot be stored as a payload, or None if it can."""
    if not isinstance(value, str):
        return f"must be a JSON string, not {json_type(value)}"
    if len(value) > MAX_PAYLOAD_CHARS:
        return f"is longer than {MAX_PAYLOAD_CHARS:,} characters"
    if (at := value.find(_NUL)) >= 0:
        return (
            f"contains a NUL character (U+0000) at character {at + 1:,}, which PostgreSQL "
            "text cannot hold"
        )
    if (match := _SURROGATE.search(value)) is not None:
        return (
            f"contains a lone surrogate (U+{ord(match.group()):04X}) at character "
            f"{match.start() + 1:,}: not Unicode text, it has no UTF-8 encoding"
        )
    return None


def json_type(value: object) -> str:
    """The JSON name of a parsed JSON value's type (what the sender wrote), for messages."""
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def quoted_name(name: str) -> str:
    """A field name the sender wrote, quoted for a message and cut short: it is input."""
    return repr(name if len(name) <= 40 else name[:40] + "…")


def quoted_names(names: Iterable[str], *, at_most: int = 3) -> str:
    """Unknown field names for a message: the first few, sorted, quoted and cut short."""
    ordered = sorted(names)
    shown = ", ".join(quoted_name(name) for name in ordered[:at_most])
    return shown + (f" and {len(ordered) - at_most:,} more" if len(ordered) > at_most else "")
