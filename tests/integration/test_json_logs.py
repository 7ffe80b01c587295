"""SIGNING_LOG_FORMAT=json: every line a worker pool writes is a JSON object (ours,
Dramatiq's master and worker processes' alike), and so is every line of the web server
(gunicorn's, Django's); our events carry the ids to follow a run."""

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.error import HTTPError, URLError

import pytest
from django.conf import settings

from devtools.sandbox import free_port
from signing.models import Batch, SigningRun
from tests.conftest import ARTIFACTS, seed, wait_until
from tests.integration.test_pipeline_with_workers import manage

ROOT = Path(settings.BASE_DIR)

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


def status_of(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except HTTPError as error:
        return error.code
    except (URLError, OSError):
        return None


def test_every_line_of_a_json_web_server_is_a_json_object(worker_env, request):
    # Given the image's web server (gunicorn, gunicorn.conf.py) told to log JSON
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"gunicorn-{request.node.name}.log"
    gunicorn = Path(sys.executable).with_name("gunicorn")
    environment = {
        **worker_env,
        "SIGNING_LOG_FORMAT": "json",
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
    }
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [str(gunicorn), "--config", "gunicorn.conf.py", "signing_site.wsgi:application"],
            cwd=ROOT,
            env={**os.environ, **environment},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        # When it answers a request, and a page that does not exist (Django logs a warning)
        wait_until(lambda: status_of(f"http://127.0.0.1:{port}/healthz") == 200, timeout=60)
        assert status_of(f"http://127.0.0.1:{port}/no-such-page") == 404
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    # Then every line it wrote is a JSON object: gunicorn's, its access log's, Django's
    entries = [json.loads(line) for line in log_path.read_text().splitlines()]
    loggers = {entry["logger"] for entry in entries}
    assert {"gunicorn.error", "gunicorn.access", "django.request"} <= loggers
    assert any("GET /no-such-page" in entry.get("message", "") for entry in entries)
