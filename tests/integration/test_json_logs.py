"""SIGNING_LOG_FORMAT=json: every line a worker pool writes is a JSON object (ours,
Dramatiq's master and worker processes' alike), and our events carry the ids to follow a run."""

import json

import pytest

from signing.models import Batch, SigningRun
from tests.conftest import ARTIFACTS, seed
from tests.integration.test_pipeline_with_workers import manage

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]


def test_every_line_of_a_json_worker_pool_is_a_json_object(start_workers, worker_env, request):
    # Given workers told to log JSON
    seed(records=300, keys=3)
    worker_env["SIGNING_LOG_FORMAT"] = "json"
    workers = start_workers(processes=2, threads=2)

    # When a run in batches of 50 is signed, and the workers stop (SIGTERM)
    assert manage(worker_env, "sign", "--batch-size", "50").returncode == 0
    assert workers.stop()

    # Then every line the pool wrote (stdout and stderr) parses as a JSON object
    lines = (ARTIFACTS / f"workers-{request.node.name}.log").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert all(isinstance(entry, dict) for entry in entries)
    messages = {(entry["logger"], entry.get("message")) for entry in entries}
    # Dramatiq's master process's lines among them, which used to be plain text
    assert ("dramatiq.MainProcess", "Sending signal 'SIGTERM' to subprocesses...") in messages
    assert any(
        logger == "dramatiq.MainProcess" and "booting up" in (message or "")
        for logger, message in messages
    )
    assert sum(message == "Worker process is ready for action." for _, message in messages) == 2
    # and one batch.stored per batch, with the run and the batch's ids
    run = SigningRun.objects.get()
    stored = [entry for entry in entries if entry.get("event") == "batch.stored"]
    assert sorted(entry["batch_id"] for entry in stored) == sorted(
        Batch.objects.filter(run=run).values_list("id", flat=True)
    )
    assert all(entry["run_id"] == run.pk for entry in stored)
    assert all({"lease_id", "kid", "records", "seconds"} <= entry.keys() for entry in stored)
    assert {"event": "run.finished", "run_id": run.pk}.items() <= next(
        entry for entry in entries if entry.get("event") == "run.finished"
    ).items()
