"""kernel.events: one event, written as a key=value line or as a JSON object."""

import io
import json
import logging

import pytest

from kernel.events import EventLogger, JsonFormatter


@pytest.fixture
def captured():
    """A fresh logger whose lines land in a buffer, in the formatter the test sets."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("tests.events")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield stream, handler
    logger.removeHandler(handler)


def test_an_event_reads_as_key_value_text(captured):
    stream, handler = captured
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    EventLogger("tests.events").info("lease.expired", lease_id=7, batch_id=3)

    assert stream.getvalue() == "INFO tests.events lease.expired lease_id=7 batch_id=3\n"


def test_an_event_as_json_keeps_its_fields_and_types(captured):
    stream, handler = captured
    handler.setFormatter(JsonFormatter())

    EventLogger("tests.events").warning("batch.returned", batch_id=3, reason="50% of 'it' failed")

    entry = json.loads(stream.getvalue())
    assert entry["event"] == "batch.returned"
    assert entry["batch_id"] == 3
    assert entry["reason"] == "50% of 'it' failed"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "tests.events"
    assert entry["time"].endswith("+00:00")


def test_a_plain_line_and_an_exception_are_json_too(captured):
    stream, handler = captured
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.events")

    logger.info("Worker process is ready for action.")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        EventLogger("tests.events").warning("reaper.tick_failed", exc_info=True)

    plain, failed = (json.loads(line) for line in stream.getvalue().splitlines())
    assert plain["message"] == "Worker process is ready for action."
    assert "event" not in plain
    assert "RuntimeError: boom" in failed["exception"]


def test_a_debug_event_is_not_written_at_info(captured):
    stream, _ = captured
    logging.getLogger("tests.events").setLevel(logging.INFO)
    EventLogger("tests.events").debug("lease.granted", lease_id=1)
    assert stream.getvalue() == ""
