"""Can this process reach the database and the broker right now? One cheap round trip each:
/healthz asks, and so does dispatch before it promises a run will move."""

from __future__ import annotations

import dramatiq
from django.db import connection


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_broker() -> None:
    """Ping the broker the workers consume from (Redis or RabbitMQ)."""
    broker = dramatiq.get_broker()
    client = getattr(broker, "client", None)  # RedisBroker
    if client is not None:
        client.ping()
        return
    connection_ = getattr(broker, "connection", None)  # RabbitmqBroker: opens one if needed
    if connection_ is not None and not connection_.is_open:
        raise ConnectionError("the broker connection is closed")
