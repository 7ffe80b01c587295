"""The chaos trials (devtools.chaos), each with real worker processes in a private sandbox.

Workers are killed, paused and cut off from restarted servers; every run must still finish
by itself with every record signed once, no key overlapping, no key left locked, and
`manage.py audit` passing. The sandbox's PostgreSQL and Redis are private, so killing them
leaves the machine's shared services alone.
"""

from collections.abc import Iterator

import pytest

from devtools.chaos import TrialResult, prepare, run_trial
from devtools.sandbox import RABBITMQ_SERVER, Sandbox

pytestmark = pytest.mark.workers


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        prepare(sandbox)
        yield sandbox


def assert_healed(result: TrialResult) -> None:
    # The notes in full (pytest cuts a long repr short): why a trial did not finish.
    assert result.passed, "\n".join([repr(result)[:500], *result.notes])
    assert result.records_signed == result.records
    assert result.double_signatures == 0
    assert result.overlapping_leases == 0
    assert result.keys_left_locked == 0
    assert result.recovery_seconds is not None, "the fault was never injected"


def test_killing_one_worker_five_times_loses_nothing(sandbox):
    result = run_trial("kill-one-worker", sandbox)
    assert_healed(result)
    assert not result.notes, result.notes  # all five kills landed mid-run


def test_killing_every_worker_then_starting_new_ones_finishes_the_run(sandbox):
    assert_healed(run_trial("kill-every-worker", sandbox))


def test_workers_stopped_with_sigterm_mid_run_leave_nothing_half_written(sandbox):
    result = run_trial("sigterm-every-worker", sandbox)
    assert_healed(result)  # the audit proves no batch was stored in part
    assert not result.notes, result.notes  # every pool stopped on SIGTERM alone


def test_a_redis_restarted_empty_only_delays_the_run(sandbox):
    result = run_trial("restart-redis", sandbox)
    assert_healed(result)


# Outages of several lease TTLs (3 s in the trials); `manage.py chaos` holds them 60 s
# (paused) and 300 s (down).
OUTAGE_SECONDS = 20


def test_a_redis_paused_past_many_lease_ttls_only_delays_the_run(sandbox):
    result = run_trial("pause-redis", sandbox, seconds=OUTAGE_SECONDS)
    assert_healed(result)  # completed: no batch failed for want of a broker


def test_a_redis_down_past_many_lease_ttls_then_back_empty_only_delays_the_run(sandbox):
    result = run_trial("redis-down", sandbox, seconds=OUTAGE_SECONDS)
    assert_healed(result)


rabbitmq_installed = pytest.mark.skipif(
    not RABBITMQ_SERVER.exists(), reason="RabbitMQ not installed"
)


@rabbitmq_installed
def test_a_rabbitmq_paused_past_many_lease_ttls_only_delays_the_run(sandbox):
    assert_healed(run_trial("pause-rabbitmq", sandbox, seconds=OUTAGE_SECONDS))


@rabbitmq_installed
def test_a_rabbitmq_restarted_empty_only_delays_the_run(sandbox):
    assert_healed(run_trial("restart-rabbitmq", sandbox))


def test_a_lost_audit_run_is_sent_again_and_the_run_audited(sandbox):
    result = run_trial("audit-lost", sandbox)
    assert_healed(result)
    assert not result.notes, result.notes


def test_a_postgres_restart_mid_run_heals(sandbox):
    assert_healed(run_trial("restart-postgres", sandbox))


def test_a_paused_worker_resumed_after_its_lease_expired_stores_nothing(sandbox):
    result = run_trial("pause-worker", sandbox)
    assert_healed(result)
    assert result.fenced_writes >= 1


def test_a_late_signing_triggered_changes_nothing(sandbox):
    result = run_trial("late-delivery", sandbox)
    assert_healed(result)
    assert result.fenced_writes == 1
    assert not result.notes, result.notes
