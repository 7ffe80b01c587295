"""What the collection service refuses, by name."""

from __future__ import annotations


class IngestRefused(ValueError):
    """Records that were not stored: nothing of the call was."""


class WrongRecordCount(IngestRefused):
    """No records, or more than one call may store."""


class PayloadRefused(IngestRefused):
    """A payload that cannot be stored as it is (records.payloads says why)."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"payload {index}: {reason}")
        self.index = index
        self.reason = reason
