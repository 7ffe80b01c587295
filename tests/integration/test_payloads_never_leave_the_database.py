"""The data being signed is never logged nor left in the broker: when a SigningTriggered
fails for good, the worker's log lines (Dramatiq logs the whole message) and the dead-letter
queue hold ids, never a payload. Messages carry no payload at all: workers read the records
from the database under their lease."""

from __future__ import annotations

import dramatiq
import pytest

from keyring import sealing
from records.models import Record
from signing.models import Batch
from signing.runs.dispatch import start_run
from tests.conftest import ARTIFACTS, seed, wait_until
from tests.integration.test_forged_messages import take_queued

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]


def everything_in_redis(broker: dramatiq.Broker) -> bytes:
    """Every key and value in the broker's Redis database, whatever its type."""
    client = broker.client
    dump = []
    for key in client.scan_iter():
        kind = client.type(key)
        if kind == b"string":
            dump.append(client.get(key))
        elif kind == b"hash":
            dump.extend(b"%s=%s" % pair for pair in client.hgetall(key).items())
        elif kind == b"list":
            dump.extend(client.lrange(key, 0, -1))
        elif kind == b"zset":
            dump.extend(client.zrange(key, 0, -1))
        elif kind == b"set":
            dump.extend(client.smembers(key))
        dump.append(key)
    return b"\n".join(dump)


def test_a_failed_message_leaves_no_payload_in_the_log_or_the_dead_letter_queue(
    broker, start_workers, worker_env, request
):
    # Given a run whose messages wait in Redis, each to be tried once only
    seed(records=40, keys=4)
    run = start_run(batch_size=10, max_in_flight=4)
    for message in take_queued(broker):
        broker.enqueue(message.copy(options={**message.options, "max_retries": 0}))
    # When workers whose KEK does not open the keys take them: every attempt fails
    worker_env["SIGNING_KEK"] = sealing.generate_kek()
    start_workers(processes=1, threads=2)
    log_file = ARTIFACTS / f"workers-{request.node.name}.log"
    wait_until(
        lambda: log_file.read_text(errors="replace").count("Failed to process message") >= 4,
        timeout=60,
    )
    wait_until(lambda: not Batch.objects.filter(run=run, last_error="").exists(), timeout=60)

    # Then the failures were logged and dead-lettered, and no payload is in either
    log = log_file.read_text(errors="replace")
    redis = everything_in_redis(broker)
    assert "KekMismatch" in log
    assert b"signing.XQ" in redis  # the dead-letter queue holds the failed messages
    for payload in Record.objects.values_list("payload", flat=True):
        assert payload not in log
        assert payload.encode() not in redis
