"""The cast shared by the tests: a seeded keyring, runs, a broker recorder, worker processes."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dramatiq
import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from dramatiq.middleware import Middleware

from keyring import sealing
from keyring.models import SigningKey
from keyring.services import create_keys, forget_private_keys
from records.services import random_payloads
from signing.ops.workers import EmbeddedWorkers, WorkerPool, Workers
from signing.runs.seeding import load_records
from signing.runs.services import LeaseHint

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def wait_until(check: Callable[[], object], *, timeout: float = 30.0, every: float = 0.05):
    """Poll `check` until it returns something truthy, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"still false after {timeout}s: {check}"
        time.sleep(every)
    return result


def run_together(*functions: Callable[[], object], timeout: float = 120.0) -> list[object]:
    """Start every function in its own thread at the same instant; return their results.

    Each thread closes its own database connection; an exception in any of them fails the
    test here, in the test's thread.
    """
    start = threading.Barrier(len(functions))
    results: list[object] = [None] * len(functions)
    errors: list[BaseException] = []

    def run(index: int, function: Callable[[], object]) -> None:
        try:
            start.wait()
            results[index] = function()
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(functions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), f"still running after {timeout}s"
    if errors:
        raise errors[0]
    return results


def seed(*, records: int, keys: int, algorithm: str = "ed25519") -> list[SigningKey]:
    """Seed like `manage.py seed`, with a fixed random seed for repeatable payloads."""
    created = create_keys(count=keys, algorithm=algorithm, kek=sealing.kek_from_environment())
    load_records(random_payloads(records, rng=random.Random(1234)))
    return created


def hint_of(message: dramatiq.Message) -> LeaseHint:
    """The lease a SigningTriggered names, as the worker reads it from the message."""
    return LeaseHint(**{name: message.kwargs[name] for name in LeaseHint.__slots__})


@pytest.fixture(autouse=True)
def _forget_unsealed_keys() -> Iterator[None]:
    forget_private_keys()
    yield
    forget_private_keys()


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    """Each test starts with an empty cache: no test sees the metrics another one cached."""
    cache.clear()
    yield
    cache.clear()


class SentMessages(Middleware):
    """Remembers every message the broker enqueues, so a test can deliver it again."""

    def __init__(self) -> None:
        self.messages: list[dramatiq.Message] = []

    def after_enqueue(self, broker, message, delay) -> None:
        self.messages.append(message)

    def named(self, actor_name: str) -> list[dramatiq.Message]:
        return [m for m in self.messages if m.actor_name == actor_name]


@pytest.fixture
def broker() -> Iterator[dramatiq.Broker]:
    """The real Redis broker (test database 15), emptied before and after the test."""
    broker = dramatiq.get_broker()
    broker.flush_all()
    yield broker
    broker.flush_all()


@pytest.fixture
def this_process_plays_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test delivers the messages this process sends, as a worker would: so this
    process's messages reach a worker, as in `sign` and `serve` (embedded mode's in-process
    broker otherwise reaches none, and a finished run is audited at once, not by message)."""
    from signing.runs import messages

    monkeypatch.setattr(messages, "reach_workers", lambda: True)


@pytest.fixture
def sent(broker: dramatiq.Broker) -> Iterator[SentMessages]:
    recorder = SentMessages()
    broker.add_middleware(recorder)
    yield recorder
    broker.middleware.remove(recorder)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that take `backend` run on both: PostgreSQL and Redis in `pytest`, embedded
    mode's SQLite and in-process broker in `SIGNING_EMBEDDED=1 pytest -m backends` (make
    test runs both). Their ids say which ran."""
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", ["sqlite" if settings.SIGNING_EMBEDDED else "postgresql"])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "backend" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.backends)


@pytest.fixture
def worker_env(transactional_db) -> dict[str, str]:
    """Environment for worker processes: the test database, the test broker and KEK.

    SIGNING_DATABASE_NAME is emptied (empty is unset): set in the shell that runs the tests
    (a helper's own development database), it would win over the test database's URL and
    send every subprocess to that database instead."""
    db = connection.settings_dict
    if settings.SIGNING_EMBEDDED:
        return {
            "SIGNING_EMBEDDED": "1",
            "SIGNING_EMBEDDED_DB": str(db["NAME"]),
            "SIGNING_DATABASE_NAME": "",
            "SIGNING_LOG_LEVEL": "INFO",
        }
    credentials = quote(db["USER"] or "postgres", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    return {
        "DATABASE_URL": f"postgres://{credentials}@{host}:{port}/{quote(db['NAME'])}",
        "SIGNING_DATABASE_NAME": "",
        "SIGNING_LOG_LEVEL": "INFO",
    }


@pytest.fixture
def start_workers(
    worker_env: dict[str, str], broker: dramatiq.Broker, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Workers]]:
    """Start real `manage.py rundramatiq` processes (in embedded mode, worker threads of
    the test's process); every one is stopped at teardown."""
    pools: list[Workers] = []
    ARTIFACTS.mkdir(exist_ok=True)
    log_file = ARTIFACTS / f"workers-{request.node.name}.log"
    log_file.unlink(missing_ok=True)

    def start(*, processes: int = 2, threads: int = 4, **options: Any) -> Workers:
        """`options` go to WorkerPool (shutdown_timeout_ms)."""
        if settings.SIGNING_EMBEDDED:
            pools.append(EmbeddedWorkers(threads=threads).start())
            return pools[-1]
        pool = WorkerPool(
            processes=processes, threads=threads, env=worker_env, log_file=log_file, **options
        ).start()
        pools.append(pool)
        return pool

    yield start
    for pool in pools:
        pool.stop()
