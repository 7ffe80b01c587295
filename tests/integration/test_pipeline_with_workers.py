"""The whole pipeline with real `manage.py rundramatiq` processes on Redis and PostgreSQL;
the tests taking `backend` also in embedded mode (SQLite, workers as threads of `sign`)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from keyring.models import KeyLease
from records.models import Signature
from signing.models import SigningRun
from tests.conftest import seed
from tests.support import MANAGE, manage

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]


def test_workers_sign_5000_records_with_50_keys_and_the_audit_passes(
    start_workers, worker_env, backend
):
    # Given 5,000 records, 50 keys and two worker processes
    seed(records=5_000, keys=50)
    start_workers(processes=2, threads=4)

    # When `manage.py sign --batch-size 50` runs to the end
    signed = manage(worker_env, "sign", "--batch-size", "50")

    # Then every record is signed once, in 100 batches, and `manage.py audit` passes
    assert signed.returncode == 0, signed.stderr
    assert "5,000 of 5,000 records signed in 100 batches of 50 with 50 keys" in signed.stdout
    assert Signature.objects.count() == 5_000
    run = SigningRun.objects.get()
    assert run.status == SigningRun.Status.COMPLETED
    assert not KeyLease.objects.filter(released_at=None).exists()
    audited = manage(worker_env, "audit", "--json")
    assert audited.returncode == 0, audited.stdout + audited.stderr
    report = json.loads(audited.stdout)
    assert report["passed"] is True
    assert {c["name"]: c["examined"] for c in report["checks"]}["signatures_verify"] == 5_000


def test_a_batch_size_larger_than_the_records_signs_them_in_one_batch(
    start_workers, worker_env, backend
):
    seed(records=300, keys=3)
    start_workers(processes=1, threads=2)

    # (stdout is a pipe, 80 columns: as in `sign | cat`, or `make demo`'s output)
    signed = manage({**worker_env, "COLUMNS": "80"}, "sign", "--batch-size", "100000")

    assert signed.returncode == 0, signed.stderr
    progress = r"^run \d+ 300/300 records · [\d,]+/s · 0 batches in flight \d+:\d\d:\d\d$"
    assert re.search(progress, signed.stdout, re.MULTILINE), signed.stdout  # not cut, no bar
    assert "300 of 300 records signed in 1 batch of 100,000 with 1 key," in signed.stdout
    assert manage(worker_env, "audit").returncode == 0


def test_a_second_run_signs_only_the_new_records(start_workers, worker_env, backend):
    seed(records=200, keys=5)
    start_workers(processes=1, threads=2)
    assert manage(worker_env, "sign", "--batch-size", "30").returncode == 0
    seed(records=70, keys=0)

    again = manage(worker_env, "sign", "--batch-size", "30")

    assert again.returncode == 0, again.stderr
    assert "70 of 70 records signed in 3 batches of 30" in again.stdout
    assert Signature.objects.count() == 270
    assert manage(worker_env, "audit").returncode == 0

    # and a third, with every record signed, says so and makes no run
    third = manage(worker_env, "sign", "--batch-size", "30")
    assert third.returncode == 0, third.stderr
    assert third.stdout.strip() == (
        "nothing to sign: every record is signed already (270 records); no run was created"
    )
    assert SigningRun.objects.count() == 2


def test_demo_seeds_signs_audits_and_stops_its_workers(worker_env, backend):
    demo = manage(worker_env, "demo", "--records", "2000", "--keys", "20", "--batch-size", "100")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "2,000 of 2,000 signed" in demo.stdout
    assert "Audit PASSED" in demo.stdout
    assert "workers stopped" in demo.stdout
    assert "no progress" not in demo.stdout  # the stall hint is for stalls only


def test_serve_runs_the_web_app_with_workers_and_stops_both_on_sigterm(worker_env):
    import signal
    import urllib.request

    from devtools.sandbox import free_port
    from tests.conftest import wait_until

    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, MANAGE, "serve", f"127.0.0.1:{port}", "--processes", "1"],
        env={**os.environ, **worker_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def login_page_answers() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/") as page:
                    return page.status == 200
            except OSError:
                return False

        wait_until(login_page_answers, timeout=60)
        children = Path(f"/proc/{serve.pid}/task/{serve.pid}/children").read_text().split()
        assert children, "no worker process was started"

        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
        for child in children:
            assert not Path(f"/proc/{child}").exists(), f"worker {child} outlived serve"
    finally:
        serve.kill()


def test_bench_measures_raw_signing_and_an_audited_run(worker_env, tmp_path, backend):
    figures = tmp_path / "bench.json"

    bench = manage(
        worker_env,
        "bench",
        "--records",
        "2000",
        "--keys",
        "20",
        "--batch-sizes",
        "100",
        "--json",
        str(figures),
    )

    assert bench.returncode == 0, bench.stdout + bench.stderr
    report = json.loads(figures.read_text())
    assert report["raw_records_per_s"] > 0
    assert report["raw_records_per_s_one_process"] > 0
    assert report["seed_seconds"] > 0
    [result] = report["results"]
    assert result["batch_size"] == 100
    assert result["audit_passed"] is True
    # seconds: `manage.py sign` from the outside, which holds the run's own seconds
    assert 0 < result["run_seconds"] < result["seconds"]
    assert result["records_per_s"] > 0
    assert 0 < result["ratio"] < 10
    assert result["peak_rss_mb"] > 0
    if backend == "postgresql":  # with Redis: each batch commits and sends messages
        assert result["commits_per_batch"] >= 1
        assert result["broker_commands_per_batch"] >= 2
        # The keyring lock's turn, for 1, 4 and 16 completions, and the store's rate.
        turns = report["keyring_turns"]
        assert [turn["completions_per_turn"] for turn in turns] == [1, 4, 16]
        assert all(turn["turn_ms"] > 0 and turn["ceiling_batches_per_s"] > 0 for turn in turns)
        assert [rate["batch_size"] for rate in report["store_rates"]] == [10, 100, 1000, 10_000]
        assert all(rate["records_per_s"] > 0 for rate in report["store_rates"])
    else:  # SQLite keeps no commit count; the broker is in-process; no keyring lock
        assert result["commits_per_batch"] is None
        assert result["broker_commands_per_batch"] is None
        assert report["keyring_turns"] == []


def rabbitmq_is_up() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not rabbitmq_is_up(), reason="no RabbitMQ on 127.0.0.1:5672")
def test_a_run_signs_through_rabbitmq(start_workers, worker_env):
    import pika

    # Given RabbitMQ as the broker, its signing queues empty, and workers listening there
    url = "amqp://guest:guest@127.0.0.1:5672/%2F"
    with pika.BlockingConnection(pika.URLParameters(url)) as connection:
        channel = connection.channel()
        for queue in ("signing", "signing.DQ", "signing.XQ"):
            channel.queue_delete(queue=queue)
    worker_env["BROKER_URL"] = url
    seed(records=1_000, keys=10)
    start_workers(processes=1, threads=4)

    # When a run is signed
    signed = manage(worker_env, "sign", "--batch-size", "100")

    # Then it completes and the audit passes
    assert signed.returncode == 0, signed.stdout + signed.stderr
    assert "1,000 of 1,000 records signed in 10 batches of 100" in signed.stdout
    assert manage(worker_env, "audit").returncode == 0
