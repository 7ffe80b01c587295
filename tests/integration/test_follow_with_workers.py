"""Follow runs with real processes on PostgreSQL and Redis: records inserted by other
processes that commit out of order, worker processes (one killed with SIGKILL), a graceful
stop through the command, then `manage.py audit`. And the cut's lock, step by step."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from django.db import connection, transaction

from keyring.models import KeyLease
from records.models import Record, Signature
from signing.models import Batch, Checkpoint, SigningRun
from signing.runs.follow import cut_batches, start_follow_run
from tests.conftest import run_together, seed, wait_until
from tests.support import MANAGE, ROOT, manage

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]


def start_inserters(
    env: dict[str, str], *, processes: int, transactions: int, silent: bool = False
) -> list:
    inserter = [sys.executable, "-m", "tests.integration.follow_inserter", str(transactions)]
    return [
        subprocess.Popen(
            [*inserter, str(n), *(["--silent"] if silent else [])],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]


def committed_by(inserters: list) -> int:
    total = 0
    for inserter in inserters:
        out, err = inserter.communicate(timeout=120)
        assert inserter.returncode == 0, err
        total += int(out.strip().splitlines()[-1])
    return total


def kill_mid_batch(pid: int) -> None:
    """SIGKILL a worker process while it holds a batch it took up and has not stored: freeze
    it (SIGSTOP), look, and let it go on (SIGCONT) until it is caught with one."""

    def frozen_mid_batch() -> bool:
        os.kill(pid, signal.SIGSTOP)
        caught = KeyLease.objects.filter(
            released_at=None, started_at__isnull=False, batch__status=Batch.Status.LEASED
        ).exists()
        if not caught:
            os.kill(pid, signal.SIGCONT)
        return caught

    wait_until(frozen_mid_batch, every=0.005)
    os.kill(pid, signal.SIGKILL)


def sign_follow(worker_env: dict[str, str], *, output: Path) -> subprocess.Popen:
    """`manage.py sign --follow --batch-size 20` as a process, its output into `output`."""
    with open(output, "w") as out:
        return subprocess.Popen(
            [sys.executable, MANAGE, "sign", "--follow", "--batch-size", "20"],
            env={**os.environ, **worker_env, "COLUMNS": "200"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_records_arriving_while_a_worker_is_killed_are_all_signed_once_after_a_stop(
    start_workers, worker_env, tmp_path
):
    # Given 300 records, 10 keys, short leases, a checkpoint every 3 batches, and a worker
    worker_env.update(
        {
            "SIGNING_LEASE_TTL": "3",
            "SIGNING_FOLLOW_MAX_WAIT_MS": "100",
            "SIGNING_FOLLOW_CHECKPOINT_BATCHES": "3",
        }
    )
    seed(records=300, keys=10)
    doomed = start_workers(processes=1, threads=2)
    doomed.wait_ready()

    # When `manage.py sign --follow` starts a follow run in batches of 20
    output = tmp_path / "sign.out"
    signer = sign_follow(worker_env, output=output)
    try:
        run = wait_until(lambda: SigningRun.objects.filter(follow=True).first())
        # and three processes insert records in transactions that commit out of order
        inserters = start_inserters(worker_env, processes=3, transactions=40)
        # and the worker process is killed in the middle of a batch
        wait_until(lambda: Batch.objects.filter(status=Batch.Status.SIGNED).count() >= 20)
        kill_mid_batch(doomed.worker_pids()[0])
        # (its leases expire; another worker process's reaper dispatches their batches again)
        start_workers(processes=1, threads=2)
        inserted = committed_by(inserters)

        # and the run is stopped gracefully
        stopped = manage(worker_env, "stop", str(run.pk))
        assert stopped.returncode == 0, stopped.stderr
        assert f"run {run.pk}" in stopped.stdout
        assert signer.wait(timeout=120) == 0, output.read_text()
    finally:
        signer.kill()

    # Then every record is signed, once, and the audit passes
    assert "completed" in output.read_text()
    run.refresh_from_db()
    assert run.status == SigningRun.Status.COMPLETED
    assert Record.objects.count() == 300 + inserted
    assert Signature.objects.count() == 300 + inserted
    assert run.record_count == 300 + inserted
    sizes = list(run.batches.values_list("size", "waiting"))
    assert all(size == min(waiting, 20) for size, waiting in sizes)
    assert KeyLease.objects.filter(outcome=KeyLease.Outcome.EXPIRED).exists()
    assert Checkpoint.objects.filter(run=run).count() >= 5  # 300 records alone: 15 batches
    audited = manage(worker_env, "audit", "--json", "--run", str(run.pk))
    assert audited.returncode == 0, audited.stdout + audited.stderr
    report = json.loads(audited.stdout)
    assert report["passed"] is True
    [checked] = [check for check in report["checks"] if check["name"] == "checkpoints"]
    assert checked["examined"] == Checkpoint.objects.filter(run=run).count()
    assert manage(worker_env, "audit").returncode == 0


def test_a_cut_waits_for_a_record_insert_still_in_flight_with_a_lower_id(settings):
    # Given a follow run in batches of 10 that cuts whatever waits (max wait 1 ms)
    settings.SIGNING_FOLLOW_MAX_WAIT_MS = 1
    seed(records=0, keys=2)
    run = start_follow_run(batch_size=10)
    dsn = _dsn()
    with psycopg.connect(dsn) as slow, psycopg.connect(dsn, autocommit=True) as quick:
        # and a transaction that inserted a record and has not committed yet
        slow.execute("INSERT INTO records_record (payload, created_at) VALUES ('slow', now())")
        # while a record with a higher id commits
        quick.execute("INSERT INTO records_record (payload, created_at) VALUES ('quick', now())")

        # When a cut starts, it waits for the transaction in flight
        done = threading.Event()
        cut_result = []

        def cut() -> None:
            try:
                cut_result.append(cut_batches(run.pk))
            finally:
                connection.close()
                done.set()

        cutter = threading.Thread(target=cut)
        cutter.start()
        wait_until(lambda: _waiting_on_records_lock(quick))
        assert not done.is_set()
        slow.commit()
        cutter.join(timeout=30)

        # (and ids are handed out one at a time, in order: no session caches a range of them)
        cache = quick.execute(
            "SELECT seqcache FROM pg_sequence "
            "WHERE seqrelid = pg_get_serial_sequence('records_record', 'id')::regclass"
        ).fetchone()[0]
        assert cache == 1

    # Then its batch holds both records: none is left below it, unsigned and uncut
    [batch] = run.batches.all()
    slow_id, quick_id = Record.objects.order_by("id").values_list("id", flat=True)
    assert (batch.first_record_id, batch.last_record_id, batch.size) == (slow_id, quick_id, 2)
    assert cut_result[0].records == 2
    run.refresh_from_db()
    assert run.followed_through == quick_id


def _waiting_on_records_lock(conn: psycopg.Connection) -> bool:
    waiting = conn.execute(
        "SELECT count(*) FROM pg_locks "
        "WHERE NOT granted AND relation = 'records_record'::regclass AND mode = 'ShareLock'"
    ).fetchone()[0]
    return waiting == 1


def _dsn() -> str:
    db = connection.settings_dict
    return psycopg.conninfo.make_conninfo(
        dbname=db["NAME"],
        user=db["USER"] or "postgres",
        password=db["PASSWORD"] or None,
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
    )


def test_the_workers_cut_a_partial_batch_once_its_oldest_record_has_waited_the_max_wait(
    start_workers, worker_env, settings
):
    # Given worker processes with a max wait of 300 ms, and a follow run in batches of 50
    # started as the API starts one: no command process watches it
    worker_env["SIGNING_FOLLOW_MAX_WAIT_MS"] = "300"
    seed(records=0, keys=3)
    start_workers(processes=1, threads=2).wait_ready()
    run = start_follow_run(batch_size=50)

    # When a few records are committed by a process that tells nobody (no records_arrived)
    inserted = committed_by(start_inserters(worker_env, processes=1, transactions=1, silent=True))
    assert inserted < 50

    # Then the workers' tick cuts them as one smaller batch once they have waited, and signs it
    wait_until(lambda: Signature.objects.count() == inserted, timeout=30)
    [batch] = run.batches.all()
    assert (batch.size, batch.waiting) == (inserted, inserted)
    oldest = Record.objects.order_by("id").values_list("created_at", flat=True).first()
    assert (batch.created_at - oldest).total_seconds() >= 0.3

    # and a stop through the command completes it at once: nothing is left waiting
    stopped = manage(worker_env, "stop", str(run.pk))
    assert stopped.returncode == 0, stopped.stderr
    assert f"run {run.pk} completed" in stopped.stdout
    assert manage(worker_env, "audit", "--run", str(run.pk)).returncode == 0


def test_stop_says_what_is_wrong_with_the_run_it_names(worker_env):
    seed(records=0, keys=1)
    unknown = manage(worker_env, "stop", "4242")
    assert unknown.returncode == 2  # bad input, as for audit, export and cancel
    assert "no run has id 4242" in unknown.stderr
    assert manage(worker_env, "stop", "0").returncode == 2  # not a run id at all


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "SIGNING_FOLLOW_MAX_WAIT_MS must be 1 or more, got 0"),
        ("fast", "SIGNING_FOLLOW_MAX_WAIT_MS must be a whole number, got 'fast'"),
        ("3600001", "SIGNING_FOLLOW_MAX_WAIT_MS must be at most 3600000 (an hour)"),
    ],
)
def test_a_bad_max_wait_is_refused_at_start_up(worker_env, value, message):
    refused = manage({**worker_env, "SIGNING_FOLLOW_MAX_WAIT_MS": value}, "stop", "1")
    assert refused.returncode == 1
    assert message in refused.stderr


def test_cuts_racing_inserts_that_commit_out_of_order_cover_every_record_once(settings):
    # Given a follow run in batches of 7 that cuts whatever waits (max wait 1 ms)
    settings.SIGNING_FOLLOW_MAX_WAIT_MS = 1
    seed(records=0, keys=1)
    run = start_follow_run(batch_size=7)
    inserting = threading.Event()
    inserting.set()

    def insert(seed_: int) -> None:
        rng = random.Random(seed_)
        for _ in range(25):
            with transaction.atomic():
                Record.objects.bulk_create(Record(payload="x") for _ in range(rng.randint(1, 9)))
                time.sleep(rng.uniform(0, 0.02))  # commit late: others' higher ids go first

    def cut() -> None:
        while inserting.is_set():
            cut_batches(run.pk)

    # When four threads insert while two others cut, then a final cut takes the rest
    cutters = [threading.Thread(target=_closing(cut)) for _ in range(2)]
    for cutter in cutters:
        cutter.start()
    try:
        run_together(*(lambda n=n: insert(n) for n in range(4)))
    finally:
        inserting.clear()
        for cutter in cutters:
            cutter.join(timeout=30)
    cut_batches(run.pk, final=True)

    # Then the batches' ranges hold every record exactly once, each batch as many as its size
    batches = list(run.batches.order_by("seq").values_list("first_record_id", "last_record_id"))
    sizes = list(run.batches.order_by("seq").values_list("size", "waiting"))
    ids = list(Record.objects.order_by("id").values_list("id", flat=True))
    covered = [i for first, last in batches for i in ids if first <= i <= last]
    assert sorted(covered) == ids
    assert [sum(first <= i <= last for i in ids) for first, last in batches] == [
        size for size, _ in sizes
    ]
    assert all(size == min(waiting, 7) for size, waiting in sizes)
    assert len(batches) > 10  # the cuts did race the inserts


def _closing(function):
    def run() -> None:
        try:
            function()
        finally:
            connection.close()

    return run


def test_ctrl_c_in_sign_follow_is_a_graceful_stop(start_workers, worker_env, tmp_path):
    # Given `sign --follow` following a run whose last records wait for the max wait
    worker_env["SIGNING_FOLLOW_MAX_WAIT_MS"] = "3600000"
    seed(records=45, keys=3)
    start_workers(processes=1, threads=2).wait_ready()
    output = tmp_path / "sign.out"
    signer = sign_follow(worker_env, output=output)
    try:
        wait_until(lambda: Signature.objects.count() == 40)
        run = SigningRun.objects.get()
        assert run.status == SigningRun.Status.RUNNING

        # When it gets Ctrl-C
        signer.send_signal(signal.SIGINT)

        # Then the 5 waiting records are cut, signed, and the run completes
        assert signer.wait(timeout=60) == 0, output.read_text()
    finally:
        signer.kill()
    assert f"stopping run {run.pk}" in output.read_text()
    run.refresh_from_db()
    assert run.status == SigningRun.Status.COMPLETED
    assert list(run.batches.order_by("seq").values_list("size", "waiting")) == [
        (20, 45),
        (20, 25),
        (5, 5),
    ]
    assert Signature.objects.count() == 45
