"""What changes a run or the keyring while leases are granted waits its turn, so nothing
slips between a check and a change: cancel and `keys add` wait for the keyring lock, and
rotate-kek for any run being started.

PostgreSQL only: a second session holds the lock, and pg_stat_activity shows the waiter.
On SQLite (embedded mode) every transaction is BEGIN IMMEDIATE, so every writer already
waits for the one before it.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from datetime import datetime

import psycopg
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from keyring import sealing
from keyring.models import KeyLease, SigningKey
from keyring.services import create_keys
from signing.audit.rules import audit
from signing.backends import sql
from signing.models import Batch, SigningRun
from signing.runs.dispatch import cancel_run, plan_run
from tests.conftest import seed, wait_until
from tests.integration.factories import lease_batch, sign_and_release

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(settings.SIGNING_EMBEDDED, reason="BEGIN IMMEDIATE serializes SQLite"),
]


@pytest.fixture
def other_session() -> Iterator[psycopg.Connection]:
    """A second session on the test database, autocommit off: the test decides when its
    transaction, and every lock taken in it, ends."""
    db = connection.settings_dict
    session = psycopg.connect(
        dbname=db["NAME"],
        user=db["USER"] or "postgres",
        password=db["PASSWORD"] or None,
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
    )
    yield session
    session.rollback()  # before the test database is flushed, which would wait for it
    session.close()


class Background:
    """A call running in a thread of its own, with its own database connection."""

    def __init__(self, function: Callable[[], object]) -> None:
        self._result: object = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._result = function()
            except BaseException as error:
                self._error = error
            finally:
                connection.close()

        self._thread = threading.Thread(target=run)
        self._thread.start()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self, timeout: float = 30.0) -> object:
        """Wait for the call to end; return what it returned, or raise what it raised."""
        self._thread.join(timeout)
        assert self.done, f"still running after {timeout}s"
        if self._error is not None:
            raise self._error
        return self._result


def someone_waits_for(lock: str) -> bool:
    """Whether a session of the test database waits for a lock of this kind: 'advisory'
    (the keyring lock) or 'relation' (a table lock)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND wait_event = %s",
            [lock],
        )
        return cursor.fetchone()[0] > 0


def waits_for(lock: str, call: Background) -> bool:
    """Poll until `call` waits for the lock (True) or has ended without waiting (False)."""
    wait_until(lambda: someone_waits_for(lock) or call.done)
    return not call.done


def clock(session: psycopg.Connection) -> datetime:
    return session.execute("SELECT clock_timestamp()").fetchone()[0]


def key_added_not_committed() -> tuple[Background, threading.Event]:
    """Start `keys add` of one key in a thread, and once the key is in, hold its transaction
    open until the event returned is set: the instant between stamping a key and committing
    it that every `keys add` has, made long."""
    added, commit = threading.Event(), threading.Event()

    def add_a_key_then_wait_to_commit() -> SigningKey:
        with transaction.atomic():
            [key] = create_keys(count=1, kek=sealing.kek_from_environment())
            added.set()
            assert commit.wait(30), "never told to commit"
        return key

    adding = Background(add_a_key_then_wait_to_commit)
    assert added.wait(30), "the key was never added"
    return adding, commit


def test_cancel_waits_for_the_keyring_lock_and_releases_a_lease_claimed_meanwhile(other_session):
    seed(records=10, keys=2)
    run = plan_run(batch_size=5)
    # A completion's dispatch, caught inside its turn of the keyring lock: it has read the
    # run as running and leased keys to both batches, and has not committed yet.
    claim = {"run_id": run.pk, "ttl_seconds": 30, "release_lease_ids": []}
    claimed = other_session.execute(sql.CLAIM_BATCHES, claim).fetchall()
    assert len(claimed) == 2

    cancelling = Background(lambda: cancel_run(run.pk))

    assert waits_for("advisory", cancelling), "cancel_run did not wait for the keyring lock"
    assert SigningRun.objects.get(pk=run.pk).status == SigningRun.Status.RUNNING
    other_session.commit()
    assert cancelling.result() is True
    assert SigningRun.objects.get(pk=run.pk).status == SigningRun.Status.CANCELLED
    assert not KeyLease.objects.filter(released_at=None).exists()
    assert set(Batch.objects.values_list("status", flat=True)) == {Batch.Status.PENDING}


def test_keys_add_waits_for_the_keyring_lock_and_stamps_created_at_by_its_clock(other_session):
    other_session.execute("SELECT keyring_lock()")
    kek = sealing.kek_from_environment()

    adding = Background(lambda: create_keys(count=3, kek=kek))

    assert waits_for("advisory", adding), "create_keys did not wait for the keyring lock"
    assert not SigningKey.objects.exists()
    lock_released_at = clock(other_session)
    other_session.commit()
    adding.result()
    read_after = clock(other_session)
    [created_at] = set(SigningKey.objects.values_list("created_at", flat=True))
    assert lock_released_at < created_at < read_after


@pytest.mark.cast(records=10, keys=1, batch_size=5)
def test_a_key_added_while_a_lease_is_granted_makes_no_false_lru_breach(cast):
    [used], run, second = cast.keys, cast.run, cast.run.batches.get(seq=2)
    sign_and_release(cast.lease.id)  # the only key is used now: a new one goes first
    adding, commit = key_added_not_committed()
    leasing = Background(lambda: lease_batch(second))
    waits_for("advisory", leasing)  # as it should; without the lock, it leases at once
    commit.set()
    new = adding.result()
    lease = leasing.result()

    # Without the lock the lease does not see the key, uncommitted, and takes `used` at a
    # time after the key's created_at: the replay of rule 4 then calls that a breach.
    lru = next(c for c in audit(run_id=run.pk, processes=1).checks if c.name == "lru_order")
    assert lru.passed, lru.breaches
    assert lease.key_id == new.pk != used.pk


def test_rotate_kek_waits_for_a_run_being_started_then_refuses(other_session, monkeypatch):
    seed(records=0, keys=2)
    sealed_before = {k.kid: bytes(k.encrypted_private_key) for k in SigningKey.objects.all()}
    monkeypatch.setenv("SIGNING_NEW_KEK", sealing.generate_kek())
    other_session.execute(  # a run being started: inserted, not committed yet
        "INSERT INTO signing_signingrun (batch_size, status, record_count, batch_count, "
        "max_in_flight, created_at, started_at, failure_reason) "
        "VALUES (5, 'running', 0, 0, 1, now(), now(), '')"
    )

    rotating = Background(lambda: call_command("keys", "rotate-kek", stdout=io.StringIO()))

    assert waits_for("relation", rotating), "rotate-kek did not wait for the run's start"
    other_session.commit()
    with pytest.raises(CommandError, match="a run is active"):
        rotating.result()
    sealed_after = {k.kid: bytes(k.encrypted_private_key) for k in SigningKey.objects.all()}
    assert sealed_after == sealed_before


def test_a_key_added_as_the_kek_rotates_is_resealed_with_the_others(monkeypatch):
    seed(records=0, keys=2)
    new_kek = sealing.generate_kek()
    monkeypatch.setenv("SIGNING_NEW_KEK", new_kek)
    adding, commit = key_added_not_committed()

    rotating = Background(lambda: call_command("keys", "rotate-kek", stdout=io.StringIO()))

    waits_for("advisory", rotating)  # as it should; without the lock, it rotates at once
    commit.set()
    adding.result()
    rotating.result()
    for key in SigningKey.objects.all():  # raises KekMismatch for a key left on the old KEK
        sealing.unseal(sealing.parse_kek(new_kek), key.kid, bytes(key.encrypted_private_key))
    assert SigningKey.objects.count() == 3


def test_seed_reset_waits_for_the_keyring_lock_before_it_truncates(other_session):
    # A dispatch in its turn of the keyring lock (a late completion, say) that reads the
    # runs next. Had the reset truncated first, each would wait for the other: a deadlock.
    other_session.execute("SET lock_timeout = '10s'")
    other_session.execute("SELECT keyring_lock()")

    seeding = Background(
        lambda: call_command("seed", records=5, keys=2, reset=True, stdout=io.StringIO())
    )

    assert waits_for("advisory", seeding), "seed did not wait for the keyring lock"
    other_session.execute("SELECT status FROM signing_signingrun WHERE id = 1").fetchall()
    other_session.commit()
    seeding.result()
    assert SigningKey.objects.count() == 2
