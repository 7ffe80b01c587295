"""The load test tool on a tiny run: a real web server process, real workers, real HTTP.
No timing is asserted; what is checked is what its figures are made of."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from devtools import loadtest
from devtools.management.commands.loadtest import rates, results_table
from records.models import Signature
from signing.models import SigningRun
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.workers]


def test_a_tiny_run_under_load_is_measured_answered_and_audited(worker_env, broker):
    ARTIFACTS.mkdir(exist_ok=True)
    log_file = ARTIFACTS / "loadtest.log"
    log_file.unlink(missing_ok=True)

    report = loadtest.run_load_test(
        records=2000,
        keys=5,
        batch_size=10,
        rates=[0, 25],
        workers=1,
        threads=2,
        server=loadtest.DEFAULT_SERVER,
        env=worker_env,
        log_file=log_file,
        say=lambda line: None,
    )

    quiet, loaded = report.results
    assert (quiet.rate, quiet.requests, quiet.statuses) == (0, 0, {})
    assert loaded.rate == 25
    assert loaded.requests >= 1
    assert sum(loaded.statuses.values()) == loaded.requests
    assert loaded.statuses == {"200": loaded.requests}, loaded.statuses
    assert (loaded.server_errors, loaded.errors) == (0, 0)
    for result in report.results:
        assert result.audit_passed
        assert result.records_per_s > 0
        assert result.batch_size == 10
    assert SigningRun.objects.count() == 1  # each rate seeds afresh: the last run is left
    assert Signature.objects.count() == 2000
    assert report.baseline() == quiet.records_per_s

    out = io.StringIO()
    Console(file=out, width=250).print(results_table(report))
    assert "vs no load" in out.getvalue()
    assert "+0.0%" in out.getvalue()  # the quiet run against itself
    assert json.loads(json.dumps(report.as_dict()))["results"][1]["rate"] == 25


def test_every_path_of_the_mix_answers_a_logged_in_client(worker_env, broker):
    """The mix's pages and API, as the generator sends them, each answer 200 (a login or
    token that did not work would be 302 or 401)."""
    from django.contrib.auth import get_user_model

    from signing.runs.dispatch import plan_run
    from tests.conftest import seed

    seed(records=20, keys=2)
    run = plan_run(batch_size=10)
    get_user_model().objects.create_user("loadtest", password="pw-for-the-load-test")
    ARTIFACTS.mkdir(exist_ok=True)
    with loadtest.web_server(
        loadtest.DEFAULT_SERVER, env=worker_env, log_file=ARTIFACTS / "loadtest-mix.log"
    ) as port:
        headers = loadtest.log_in(port, username="loadtest", password="pw-for-the-load-test")
        client = loadtest.Client(port, headers)
        for name, path in loadtest.MIX:
            assert client.get(path.format(run=run.pk)) == 200, name
        anonymous = loadtest.Client(port, {})
        assert anonymous.get(f"/api/runs/{run.pk}/") == 401


@pytest.mark.parametrize("bad", ["", "-1", "abc", "10,,x", "5000", "nan"])
def test_rates_are_checked(bad):
    with pytest.raises(ValueError, match="not a list of rates"):
        rates(bad)
    assert rates("0, 10,200") == [0, 10, 200]
