"""SIGNING_LOG_FORMAT=json: the workers' events as JSON lines, with the ids to follow a run."""

import json
import re

import pytest

from signing.models import Batch, SigningRun
from tests.conftest import ARTIFACTS, seed
from tests.integration.test_pipeline_with_workers import manage

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]

# What the text format writes for our loggers: `2026-11-25 22:44:05,123 INFO signing.x …`
TEXT_LINE_OF_OURS = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ [A-Z]+ (signing|keyring|records)\.")


def test_workers_log_each_batch_as_a_json_event(start_workers, worker_env, request):
    # Given workers told to log JSON
    seed(records=300, keys=3)
    worker_env["SIGNING_LOG_FORMAT"] = "json"
    workers = start_workers(processes=1, threads=2)

    # When a run in batches of 50 is signed, and the workers stop
    assert manage(worker_env, "sign", "--batch-size", "50").returncode == 0
    workers.stop()

    # Then every line of ours is a JSON object, one batch.stored per batch with its ids
    lines = (ARTIFACTS / f"workers-{request.node.name}.log").read_text().splitlines()
    assert not [line for line in lines if TEXT_LINE_OF_OURS.match(line)]
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    stored = [entry for entry in entries if entry.get("event") == "batch.stored"]
    run = SigningRun.objects.get()
    assert sorted(entry["batch_id"] for entry in stored) == sorted(
        Batch.objects.filter(run=run).values_list("id", flat=True)
    )
    assert all({"lease_id", "kid", "records", "seconds"} <= entry.keys() for entry in stored)
    assert {"event": "run.finished", "run_id": run.pk}.items() <= next(
        entry for entry in entries if entry.get("event") == "run.finished"
    ).items()
