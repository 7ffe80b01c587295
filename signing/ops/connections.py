"""The workers' database connections: kept across messages, closed after one that failed.

django_dramatiq's DbConnectionsMiddleware calls close_old_connections() before and after
every message. With CONN_HEALTH_CHECKS on (settings: a restarted PostgreSQL's connections are
replaced, not reused), each of those calls makes the next query start with a `SELECT 1`: two
round trips and two commits per batch for a check that nearly always passes (issue 17).

This middleware looks at a thread's connections only after a message, and hands one to
Django's close_if_unusable_or_obsolete (what close_old_connections calls) only when that
would close it: it saw an error (closed if it no longer answers), it was left out of
autocommit, or it has outlived CONN_MAX_AGE. A healthy one is left alone without a query.
A PostgreSQL restarted while a worker idles costs the first message after it one failed
attempt, retried with backoff on a new connection (the actors' retries), as a restart
mid-message always did.
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper


class DatabaseConnections(dramatiq.Middleware):
    def after_process_message(self, broker: dramatiq.Broker, message: Any, **_: Any) -> None:
        for connection in connections.all(initialized_only=True):
            if connection.connection is None:
                continue
            if _may_be_unusable_or_obsolete(connection):
                connection.close_if_unusable_or_obsolete()

    after_skip_message = after_process_message

    def _close_all(self, *_: Any, **__: Any) -> None:
        connections.close_all()

    before_consumer_thread_shutdown = _close_all
    before_worker_thread_shutdown = _close_all
    before_worker_shutdown = _close_all


def _may_be_unusable_or_obsolete(connection: BaseDatabaseWrapper) -> bool:
    """The cases in which close_if_unusable_or_obsolete closes (or checks) a connection."""
    return (
        connection.errors_occurred
        or connection.get_autocommit() != connection.settings_dict["AUTOCOMMIT"]
        or (connection.close_at is not None and time.monotonic() >= connection.close_at)
    )
