"""Every event about a run's batches and leases names the run (`run_id`), as
docs/deployment.md says: the lines of a run signed to the end, and those of a lease that
expired and of its batch given back, which the reaper logs for whichever run they hold."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.db.models import F

from keyring.models import KeyLease
from signing.models import SigningRun
from signing.runs.dispatch import start_run
from signing.runs.recovery import reclaim_expired_leases
from tests.conftest import seed
from tests.integration.factories import cast_of
from tests.support import deliver_all

pytestmark = pytest.mark.django_db


def events(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, Any]]]:
    """(event, fields) of every event logged, in order."""
    return [(record.event, record.fields) for record in caplog.records if hasattr(record, "event")]


def about_batches(logged: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [(event, fields) for event, fields in logged if {"batch_id", "lease_id"} & fields.keys()]


def test_every_batch_and_lease_event_of_a_signed_run_names_the_run(
    sent, django_capture_on_commit_callbacks, caplog, backend
):
    # Given every event of ours logged, DEBUG included
    caplog.set_level(logging.DEBUG, logger="signing")

    # When a run of 3 batches is signed to the end, as workers would
    seed(records=30, keys=2)
    with django_capture_on_commit_callbacks(execute=True):
        run = start_run(batch_size=10)
    deliver_all(sent, django_capture_on_commit_callbacks)
    run.refresh_from_db()
    assert run.status == SigningRun.Status.COMPLETED

    # Then each line about a batch or a lease carries the run's id
    logged = about_batches(events(caplog))
    assert [event for event, _ in logged].count("batch.stored") == 3
    assert [event for event, _ in logged].count("lease.granted") == 3
    assert [(event, fields) for event, fields in logged if fields.get("run_id") != run.pk] == []


def test_an_expired_lease_and_its_batch_given_back_name_the_run(caplog, backend):
    # Given a batch leased, whose lease ran out
    cast = cast_of(records=10, keys=1, batch_size=5)
    KeyLease.objects.filter(pk=cast.lease.id).update(
        expires_at=F("acquired_at") + timedelta(microseconds=1)
    )

    # When the reaper's tick expires it
    assert reclaim_expired_leases() == 1

    # Then lease.expired and batch.returned name the run, beside the lease and the batch
    logged = dict(about_batches(events(caplog)))
    ids = {"run_id": cast.run.pk, "batch_id": cast.batch.pk}
    assert ids | {"lease_id": cast.lease.id} == {
        name: logged["lease.expired"][name] for name in ("run_id", "batch_id", "lease_id")
    }
    assert ids.items() <= logged["batch.returned"].items()
