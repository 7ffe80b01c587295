"""A follow run's checkpoints made by real workers (processes on PostgreSQL and Redis, threads
in embedded mode) while records arrive, then a graceful stop: one checkpoint per multiple of
N up to the batches signed, each verifying, and the audit passes."""

import random

import pytest

from records.models import Record, Signature
from records.services import random_payloads
from signing.audit.rules import audit
from signing.models import Batch, Checkpoint, SigningRun
from signing.runs.follow import records_arrived, start_follow_run, stop_run
from signing.runs.seeding import load_records
from tests.conftest import seed, wait_until
from tests.integration.factories import assert_checkpoint_holds
from tests.support import manage

pytestmark = [
    pytest.mark.workers,
    pytest.mark.usefixtures("backend"),
    pytest.mark.django_db(transaction=True),
]

EVERY = 3


def test_workers_sign_a_checkpoint_every_n_batches_of_a_follow_run(
    start_workers, worker_env, settings
):
    # Given workers that checkpoint every 3 batches and cut after 50 ms of waiting
    worker_env.update(
        {"SIGNING_FOLLOW_CHECKPOINT_BATCHES": str(EVERY), "SIGNING_FOLLOW_MAX_WAIT_MS": "50"}
    )
    settings.SIGNING_FOLLOW_CHECKPOINT_BATCHES = EVERY  # embedded mode's worker threads
    settings.SIGNING_FOLLOW_MAX_WAIT_MS = 50
    seed(records=0, keys=4)
    start_workers(processes=2, threads=2).wait_ready()

    # When a follow run in batches of 5 takes records as they arrive, in bursts
    run = start_follow_run(batch_size=5)
    rng = random.Random(18)
    for burst in range(12):
        load_records(random_payloads(rng.randint(1, 12), rng=rng))
        records_arrived()
        if burst % 3 == 2:  # now and then, let the workers catch up
            wait_until(lambda: Signature.objects.count() == Record.objects.count(), timeout=60)

    # and is stopped gracefully
    stop_run(run.pk)
    wait_until(
        lambda: SigningRun.objects.get(pk=run.pk).status == SigningRun.Status.COMPLETED,
        timeout=60,
    )

    # Then every multiple of 3 up to the batches signed has its checkpoint
    signed = Batch.objects.filter(run=run, status=Batch.Status.SIGNED).count()
    assert signed == Batch.objects.filter(run=run).count() >= 2 * EVERY
    checkpoints = list(Checkpoint.objects.filter(run=run).order_by("batches"))
    assert [c.batches for c in checkpoints] == list(range(EVERY, signed + 1, EVERY))
    # each over its prefix's root, signed by its key over the checkpoint input
    for checkpoint in checkpoints:
        assert_checkpoint_holds(checkpoint)
    # and the audit passes, checkpoints included
    report = audit(run_id=run.pk, processes=1)
    assert report.passed, report.as_dict()
    [check] = [c for c in report.checks if c.name == "checkpoints"]
    assert check.examined == len(checkpoints)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "SIGNING_FOLLOW_CHECKPOINT_BATCHES must be 1 or more, got 0"),
        ("often", "SIGNING_FOLLOW_CHECKPOINT_BATCHES must be a whole number, got 'often'"),
        ("1000001", "SIGNING_FOLLOW_CHECKPOINT_BATCHES must be at most 1000000, got 1000001"),
    ],
)
def test_a_bad_checkpoint_interval_is_refused_at_start_up(worker_env, value, message):
    refused = manage({**worker_env, "SIGNING_FOLLOW_CHECKPOINT_BATCHES": value}, "stop", "1")
    assert refused.returncode == 1
    assert message in refused.stderr
    assert "Traceback" not in refused.stderr
