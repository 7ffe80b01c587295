"""Structured log events: a name and its fields, written as `name key=value …` or JSON.

Every log line of ours names what happened (`batch.stored`, `lease.expired`) and carries
the ids an operator follows a run by (run, batch, lease, key). `EventLogger` keeps them as
fields on the record; the text formatter shows the familiar line, and with
SIGNING_LOG_FORMAT=json `JsonFormatter` writes one JSON object per line for a log shipper.
Never pass key material or the KEK as a field: nothing here filters.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any


class EventLogger:
    """`log.info("lease.expired", lease_id=7, batch_id=3)` instead of a format string."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, *, exc_info: bool = False, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields, exc_info=exc_info)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)

    def _log(self, level: int, event: str, fields: dict[str, Any], exc_info: bool = False) -> None:
        if not self.logger.isEnabledFor(level):
            return
        text = " ".join([event, *(f"{name}={value}" for name, value in fields.items())])
        self.logger.log(
            level, text, extra={"event": event, "fields": fields}, exc_info=exc_info, stacklevel=3
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, then the event and its fields (or the
    message, for lines that are not events, such as Dramatiq's own)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        event = getattr(record, "event", None)
        if event is None:
            entry["message"] = record.getMessage()
        else:
            entry["event"] = event
            entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)
