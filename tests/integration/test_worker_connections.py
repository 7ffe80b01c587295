"""signing.ops.connections.DatabaseConnections: a healthy connection is kept across messages
with no query; one that failed and no longer answers is closed, so the retry reconnects."""

from __future__ import annotations

import psycopg
import pytest
from django.db import OperationalError, connection

from signing.ops.connections import DatabaseConnections

pytestmark = pytest.mark.django_db(transaction=True)


def after_a_message() -> None:
    DatabaseConnections().after_process_message(broker=None, message=None)


def test_a_healthy_connection_is_kept_and_not_checked():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    raw = connection.connection
    after_a_message()
    assert connection.connection is raw
    # close_old_connections would have cleared this, and the next query begun with SELECT 1.
    assert connection.health_check_done
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] == pid


def test_a_connection_that_failed_and_is_gone_is_closed_and_the_next_use_reconnects():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        password=settings["PASSWORD"],
        dbname=settings["NAME"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    with pytest.raises(OperationalError), connection.cursor() as cursor:
        cursor.execute("SELECT 1")  # what the message saw: it fails, and is retried
    assert connection.errors_occurred
    after_a_message()
    assert connection.connection is None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid


def test_a_connection_left_out_of_autocommit_is_closed():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    connection.set_autocommit(False)  # a message that forgot to restore it
    after_a_message()
    assert connection.connection is None
    assert connection.get_autocommit()  # the next use opens a fresh one, in autocommit
