"""Structured log events: a name and its fields, written as `name key=value …` or JSON.

Every log line of ours names what happened (`batch.stored`, `lease.expired`) and carries
the ids an operator follows a run by (run, batch, lease, key). `EventLogger` keeps them as
fields on the record; the text formatter shows the familiar line, and with
SIGNING_LOG_FORMAT=json `JsonFormatter` writes one JSON object per line for a log shipper.
Never pass key material or the KEK as a field: nothing here filters.

`log_context(run_id=…)` adds fields to every event logged inside it, in this thread: an
actor handling one run's message sets it once, so the lines of everything it calls (the
store, the lease release, a checkpoint) carry the run without each passing it along.

`logging_config` is the one logging configuration: settings use it, and so does the
Dramatiq master process (signing.ops.dramatiq_cli), which never loads Django.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
# The service's own loggers, at SIGNING_LOG_LEVEL; every other logger at WARNING.
OUR_LOGGERS = ("kernel", "keyring", "records", "signing")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# Never changed in place: log_context sets a new dict, so the shared default stays empty.
_context: ContextVar[dict[str, Any]] = ContextVar("signing_log_context", default={})  # noqa: B039


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add `fields` to every event this thread logs until the block ends (nested blocks
    add to the fields of the blocks around them; an event's own fields win)."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


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
        fields = {**_context.get(), **fields}
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


def logging_config(*, log_format: str, level: str, dramatiq_level: str) -> dict[str, Any]:
    """The `logging.config.dictConfig` of every process: one handler on stderr, in one
    format, that every line reaches, ours and other libraries' alike.

    Django's own defaults give `django` and `django.server` (runserver's request lines)
    handlers of their own, with formats of their own, which would write plain text beside
    JSON lines (and `django`'s lines twice with DEBUG on): here they have none, and their
    lines go to the one handler like everyone's.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "text": {"format": TEXT_FORMAT},
            "json": {"()": "kernel.events.JsonFormatter"},
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": log_format}},
        "root": {"handlers": ["console"], "level": "WARNING"},
        "loggers": {
            **{name: {"level": level, "propagate": True} for name in OUR_LOGGERS},
            "dramatiq": {"level": dramatiq_level, "propagate": True},
            "django": {"handlers": [], "level": "INFO", "propagate": True},
            "django.server": {"handlers": [], "level": "INFO", "propagate": True},
        },
    }
