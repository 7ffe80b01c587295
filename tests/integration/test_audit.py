"""signing.audit.rules: it passes a clean run and names every kind of breach planted in the
tables."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection

from kernel.vendor import SQLITE
from keyring.models import KeyLease, SigningKey
from records.models import Record, Signature
from signing.audit.roots import batch_root, run_root
from signing.audit.rules import NO_ROOT, Check, audit
from signing.models import Batch, RunAudit, SigningRun
from signing.runs import messages
from signing.runs.dispatch import cancel_run, finish_run, start_run
from signing.runs.seeding import load_records
from tests.conftest import seed
from tests.support import deliver, deliver_all

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_run(sent, django_capture_on_commit_callbacks, backend) -> SigningRun:
    """A run of 4 batches of 5 records, signed one at a time by calling the actors as
    workers would; 3 keys, so the 4th batch reuses the first key."""
    seed(records=20, keys=3)
    with django_capture_on_commit_callbacks(execute=True):
        run = start_run(batch_size=5, max_in_flight=1)
    deliver_all(sent, django_capture_on_commit_callbacks)
    run.refresh_from_db()
    assert run.status == SigningRun.Status.COMPLETED
    assert run.audit.passed, run.audit.report  # recorded by the audit_run actor
    return run


def without_constraint(table: str, constraint: str) -> None:
    """Drop a constraint inside the test's transaction, to plant what it would refuse.

    On SQLite the constraints that PostgreSQL holds as such are triggers (one per write).
    """
    if connection.vendor == SQLITE:
        for write in ("insert", "update"):
            without_trigger(table, f"{constraint}_on_{write}")
        return
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}")


def without_trigger(table: str, trigger: str) -> None:
    """Disable a trigger inside the test's transaction, to plant what it would refuse."""
    with connection.cursor() as cursor:
        # SQLite's DDL is transactional too: the rollback restores it.
        if connection.vendor == SQLITE:
            cursor.execute(f"DROP TRIGGER {trigger}")
            return
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")


def tampering_with_signatures() -> None:
    """Let this test's transaction rewrite signatures, which are append-only otherwise."""
    if connection.vendor == SQLITE:
        for write in ("update", "delete"):
            without_trigger("records_signature", f"signature_append_only_on_{write}")
        return
    without_trigger("records_signature", "signature_append_only")


def failed_checks(run_id=None) -> dict[str, list[str]]:
    return {c.name: c.breaches for c in audit(run_id=run_id, processes=1).checks if not c.passed}


def test_a_clean_run_passes_every_check(signed_run):
    assert failed_checks() == {}
    assert failed_checks(signed_run.pk) == {}


def test_a_tampered_signature_is_named(signed_run):
    tampering_with_signatures()
    signature = Signature.objects.order_by("record_id").first()
    signature.signature = bytes([signature.signature[0] ^ 1]) + bytes(signature.signature[1:])
    signature.save()
    batch = signature.batch
    assert failed_checks() == {
        "signatures_verify": [f"record {signature.record_id}: signature does not verify"],
        "merkle_roots": [
            f"batch {batch.pk} (#{batch.seq} of run {batch.run_id}): its root does not match "
            "its 5 signatures",
            f"run {batch.run_id}: its root does not match the roots of its 4 batches",
        ],
    }


def test_a_missing_signature_is_named(signed_run):
    tampering_with_signatures()
    signature = Signature.objects.order_by("record_id").last()
    record_id = signature.record_id
    signature.delete()
    breaches = failed_checks(signed_run.pk)["one_signature_per_record"]
    assert f"record {record_id} has no signature" in breaches


def test_a_batch_signed_with_two_keys_is_named(signed_run):
    tampering_with_signatures()
    signature = Signature.objects.order_by("record_id").first()
    other_key = SigningKey.objects.exclude(pk=signature.key_id).first()
    without_trigger("records_signature", "signature_matches_lease_on_update")
    Signature.objects.filter(pk=signature.pk).update(key=other_key)
    failed = failed_checks()
    assert (
        f"batch {signature.batch_id} was signed with 2 keys under 1 leases"
        in failed["one_key_per_batch"]
    )


def test_a_signature_filed_under_a_batch_that_does_not_hold_its_record_is_named(signed_run):
    tampering_with_signatures()
    first, second = Batch.objects.filter(run=signed_run).order_by("seq")[:2]
    stray = Signature.objects.filter(batch=second).order_by("record_id").first()
    without_trigger("records_signature", "signature_matches_lease_on_update")
    Signature.objects.filter(pk=stray.pk).update(
        batch=first, lease_id=Signature.objects.filter(batch=first).first().lease_id
    )
    breaches = failed_checks()["one_key_per_batch"]
    assert (
        f"record {stray.record_id} is signed under batch {first.pk}, of records "
        f"{first.first_record_id}-{first.last_record_id}" in breaches
    )


def test_overlapping_leases_are_named_even_without_the_constraint(signed_run):
    tampering_with_signatures()
    without_constraint("keyring_keylease", "keylease_no_overlap_per_key")
    without_trigger("keyring_keylease", "keylease_history_kept_on_update")
    without_trigger("records_signature", "signature_matches_lease_on_update")
    first, second = KeyLease.objects.order_by("id")[:2]
    KeyLease.objects.filter(pk=second.pk).update(
        key=first.key, token=999, acquired_at=first.acquired_at + timedelta(microseconds=1)
    )
    Signature.objects.filter(lease=second).update(key=first.key)
    assert failed_checks()["no_overlapping_leases"] == [
        f"leases {first.pk} and {second.pk} of {first.key.kid} overlap in time"
    ]


def test_a_signature_written_outside_its_lease_is_named(signed_run):
    tampering_with_signatures()
    signature = Signature.objects.order_by("record_id").first()
    Signature.objects.filter(pk=signature.pk).update(
        signed_at=signature.lease.acquired_at - timedelta(seconds=1)
    )
    assert "signed_within_lease" in failed_checks()


def test_a_lease_left_open_after_the_run_is_named(signed_run):
    lease = KeyLease.objects.order_by("id").last()
    KeyLease.objects.filter(pk=lease.pk).update(released_at=None, outcome=None)
    assert any(f"lease {lease.pk}" in b for b in failed_checks()["no_open_leases_after_finish"])


def test_a_key_picked_out_of_lru_order_is_named(signed_run):
    # The 4th lease took the first key, the least recently used. Pretend that key had
    # been released just before, so the other two, free and older, should have come first.
    last = KeyLease.objects.order_by("-acquired_at").first()
    previous = KeyLease.objects.filter(key=last.key).exclude(pk=last.pk).get()
    KeyLease.objects.filter(pk=previous.pk).update(
        released_at=last.acquired_at - timedelta(microseconds=1)
    )
    [breach] = failed_checks()["lru_order"]
    assert breach.startswith(f"lease {last.pk} at ")
    assert f"took {last.key.kid}" in breach


def test_a_batch_larger_than_the_batch_size_is_named(signed_run):
    Batch.objects.filter(run=signed_run, seq=2).update(size=6)
    failed = failed_checks()
    assert (
        f"run {signed_run.pk} batch #2 has 6 records for a batch size of 5"
        in failed["batch_size_fixed"]
    )


def test_the_command_exits_1_and_lists_the_breach(signed_run):
    Batch.objects.filter(run=signed_run, seq=1).update(size=4)
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("audit", stdout=out)
    assert exited.value.code == 1
    assert "FAIL rule 5" in out.getvalue()
    assert "Audit FAILED" in out.getvalue()


def test_a_key_marked_held_without_its_lease_is_named(signed_run):
    key = SigningKey.objects.order_by("id").first()
    lease = KeyLease.objects.filter(key=key).order_by("id").first()
    SigningKey.objects.filter(pk=key.pk).update(held_by=lease)  # closed, yet marked held
    assert failed_checks()["keys_marked_by_their_leases"] == [
        f"{key.kid} is marked held by lease {lease.pk} but its open lease is none"
    ]


# Tamper evidence (issue 18): Merkle roots kept by the batches and the run.


def merkle_breaches(run_id=None) -> list[str]:
    [check] = [c for c in audit(run_id=run_id, processes=1).checks if c.name == "merkle_roots"]
    return check.breaches


def batch_breach(batch: Batch, signatures: int) -> str:
    return (
        f"batch {batch.pk} (#{batch.seq} of run {batch.run_id}): its root does not match its "
        f"{signatures} signatures"
    )


def test_each_batch_keeps_the_root_of_its_signatures_and_the_run_that_of_its_batches(signed_run):
    expected = []
    for batch in signed_run.batches.order_by("seq"):
        pairs = Signature.objects.filter(batch=batch).values_list("record_id", "signature")
        assert bytes(batch.merkle_root) == batch_root((rid, bytes(raw)) for rid, raw in pairs)
        expected.append((batch.seq, bytes(batch.merkle_root)))
    assert bytes(signed_run.merkle_root) == run_root(expected)
    assert merkle_breaches() == []


def test_a_removed_signature_changes_its_batch_root_and_the_run_root(signed_run):
    tampering_with_signatures()
    signature = Signature.objects.order_by("record_id").last()
    signature.delete()
    assert merkle_breaches(signed_run.pk) == [
        batch_breach(signature.batch, 4),
        f"run {signed_run.pk}: its root does not match the roots of its 4 batches",
    ]


def test_an_added_signature_changes_its_batch_root_and_the_run_root(signed_run):
    # A record added after the run, and a signature for it slipped into the first batch
    # under that batch's own lease and key (a copy of a neighbour's bytes: the root does not
    # care whether it verifies).
    batch = signed_run.batches.get(seq=1)
    neighbour = Signature.objects.filter(batch=batch).order_by("record_id").first()
    stray = Record.objects.create(payload="slipped in")
    without_trigger("records_signature", "signature_in_batch_on_insert")
    Signature.objects.create(
        record=stray,
        key_id=neighbour.key_id,
        batch=batch,
        lease_id=neighbour.lease_id,
        signature=bytes(neighbour.signature),
        signed_at=neighbour.signed_at,
    )
    assert merkle_breaches() == [
        batch_breach(batch, 6),
        f"run {signed_run.pk}: its root does not match the roots of its 4 batches",
    ]


def test_a_changed_signature_whose_batch_root_was_recomputed_is_caught_by_the_run_root(
    signed_run,
):
    tampering_with_signatures()
    signature = Signature.objects.order_by("record_id").first()
    forged = bytes([signature.signature[0] ^ 1]) + bytes(signature.signature[1:])
    Signature.objects.filter(pk=signature.pk).update(signature=forged)
    pairs = Signature.objects.filter(batch_id=signature.batch_id).values_list(
        "record_id", "signature"
    )
    Batch.objects.filter(pk=signature.batch_id).update(
        merkle_root=batch_root((rid, bytes(raw)) for rid, raw in pairs)
    )
    assert merkle_breaches() == [
        f"run {signed_run.pk}: its root does not match the roots of its 4 batches"
    ]


def test_a_root_cleared_from_a_batch_of_a_run_with_a_root_is_a_breach(signed_run):
    batch = signed_run.batches.get(seq=2)
    Batch.objects.filter(pk=batch.pk).update(merkle_root=None)
    assert merkle_breaches() == [
        f"run {signed_run.pk} has a root but its batch {batch.pk} has none"
    ]


def test_a_completed_run_without_a_root_whose_batches_have_roots_is_a_breach(signed_run):
    SigningRun.objects.filter(pk=signed_run.pk).update(merkle_root=None)
    assert merkle_breaches() == [
        f"run {signed_run.pk}: completed with no root, though its batches have roots"
    ]


def test_rows_signed_before_roots_existed_are_noted_not_failed(signed_run):
    # As signing migration 0012 found them: no root anywhere.
    Batch.objects.filter(run=signed_run).update(merkle_root=None)
    SigningRun.objects.filter(pk=signed_run.pk).update(merkle_root=None)
    [check] = [c for c in audit(processes=1).checks if c.name == "merkle_roots"]
    assert check.passed
    first = signed_run.batches.get(seq=1)
    assert check.note_count == 5
    assert f"run {signed_run.pk}: {NO_ROOT}" in check.notes
    assert f"batch {first.pk} (#1 of run {signed_run.pk}): {NO_ROOT}" in check.notes
    out = io.StringIO()
    call_command("audit", stdout=out)
    assert f"note: run {signed_run.pk}: no root (signed before roots existed)" in out.getvalue()
    assert "Audit PASSED" in out.getvalue()


def rule_one(run_id=None) -> Check:
    report = audit(run_id=run_id, processes=1)
    [check] = [c for c in report.checks if c.name == "one_signature_per_record"]
    assert report.records_not_signed == report.as_dict()["records_not_signed"]
    return check


def test_records_no_run_had_to_sign_are_reported_not_signed_yet_and_the_audit_passes(backend):
    # Given 1,000 records and no key, so no run (`seed --records 1000 --keys 0`)
    seed(records=1000, keys=0)

    # When the whole database is audited
    out = io.StringIO()
    call_command("audit", stdout=out)  # no SystemExit: exit 0

    # Then they are a state, reported, not a breach
    assert "Audit PASSED" in out.getvalue()
    assert (
        "note: 1,000 records not signed yet, in no completed run's batches (a state, not a "
        "breach: the next run signs them)"
    ) in out.getvalue()
    json_out = io.StringIO()
    call_command("audit", "--json", stdout=json_out)
    report = json.loads(json_out.getvalue())
    assert report["passed"] is True
    assert report["records_not_signed"] == 1000


def test_a_cancelled_runs_unsigned_records_are_reported_by_its_audit_and_the_whole_one(
    sent, django_capture_on_commit_callbacks, backend
):
    # Given a run of 4 batches of 5 records whose first batch is signed, then cancelled
    seed(records=20, keys=1)
    with django_capture_on_commit_callbacks(execute=True):
        run = start_run(batch_size=5, max_in_flight=1)
    [triggered] = sent.messages
    with django_capture_on_commit_callbacks(execute=True):
        deliver(triggered)  # batch 1 signed; its completion not delivered yet
        assert cancel_run(run.pk)

    # Then the cancel asked for the run's audit, and the worker's audit passes, noting why
    # 15 of its records wait
    deliver_all(sent, django_capture_on_commit_callbacks)
    recorded = RunAudit.objects.get(run=run)
    assert recorded.passed, recorded.report
    assert recorded.report["records_not_signed"] == 15
    note = (
        "15 records of its batches not signed: the run is cancelled (a state, not a breach: "
        "the next run signs them)"
    )
    assert rule_one(run.pk).notes == [note]
    # and the whole database's audit passes too, counting them as not signed yet
    whole = rule_one()
    assert whole.passed
    assert whole.notes[0].startswith("15 records not signed yet")


def test_a_cancel_from_a_process_no_worker_hears_audits_the_run_itself(
    sent, django_capture_on_commit_callbacks, backend, monkeypatch
):
    # Given a run with a batch signed, cancelled from a process whose messages reach no
    # worker: embedded mode's `manage.py cancel` (its in-process broker runs no worker; on
    # the servers, where every message reaches one, the test stands in for that process)
    seed(records=20, keys=1)
    with django_capture_on_commit_callbacks(execute=True):
        run = start_run(batch_size=5, max_in_flight=1)
    [triggered] = sent.messages
    with django_capture_on_commit_callbacks(execute=True):
        deliver(triggered)
    if backend != "sqlite":
        monkeypatch.setattr("signing.runs.messages.reach_workers", lambda: False)
    assert not messages.reach_workers()

    # When it is cancelled
    with django_capture_on_commit_callbacks(execute=True):
        assert cancel_run(run.pk)

    # Then its audit is recorded as the cancel commits, not left to a message nobody reads
    # (the run page would say "Auditing…" until the reaper resent it 600 s later)
    recorded = RunAudit.objects.get(run=run)
    assert recorded.passed, recorded.report
    assert recorded.report["records_not_signed"] == 15
    assert sent.named(messages.AUDIT_RUN) == []


def test_a_cancel_where_workers_hear_it_sends_them_the_audit(
    sent, django_capture_on_commit_callbacks, backend, monkeypatch
):
    # Given a run, cancelled where a worker hears this process's messages (the servers; in
    # embedded mode, `sign` and `serve`, which run worker threads)
    seed(records=10, keys=1)
    with django_capture_on_commit_callbacks(execute=True):
        run = start_run(batch_size=5, max_in_flight=1)
    if backend == "sqlite":
        monkeypatch.setattr("signing.runs.messages.reach_workers", lambda: True)
    with django_capture_on_commit_callbacks(execute=True):
        assert cancel_run(run.pk)

    # Then a worker audits it, from the audit_run message
    [asked] = sent.named(messages.AUDIT_RUN)
    assert asked.kwargs == {"run_id": run.pk}
    assert not RunAudit.objects.filter(run=run).exists()


def test_a_record_of_a_completed_run_left_unsigned_is_a_breach_in_the_whole_audit(signed_run):
    tampering_with_signatures()
    signature = Signature.objects.order_by("record_id").last()
    record_id = signature.record_id
    signature.delete()
    check = rule_one()
    assert f"record {record_id} has no signature" in check.breaches
    assert check.notes == []  # lost, not "not signed yet"


def test_records_added_after_a_completed_run_are_not_signed_yet_not_lost(signed_run):
    load_records(["arrived after the run", "and another"])
    check = rule_one()
    assert check.passed
    assert check.notes == [
        "2 records not signed yet, in no completed run's batches (a state, not a breach: the "
        "next run signs them)"
    ]
    assert rule_one(signed_run.pk).notes == []  # the run's own audit: its records are signed


def test_a_cancelled_run_with_a_batch_still_leased_is_named(signed_run):
    SigningRun.objects.filter(pk=signed_run.pk).update(status=SigningRun.Status.CANCELLED)
    Batch.objects.filter(run=signed_run, seq=1).update(status=Batch.Status.LEASED)
    assert (
        f"run {signed_run.pk} is cancelled but 1 of its batches are leased"
        in (failed_checks()["no_open_leases_after_finish"])
    )


def started_with_batches_dropped(on_commit, *, keep: int) -> tuple[SigningRun, list[int]]:
    """A run of 4 batches of 5 records whose plan is tampered, before anything is
    dispatched, to keep only its first `keep` batches (the others' rows and ranges gone, as
    a plan that dropped them would leave it); the run and the ids of the records dropped."""
    seed(records=20, keys=3)
    with on_commit(execute=True):
        run = start_run(batch_size=5, max_in_flight=1)
        dropped_batches = run.batches.filter(seq__gt=keep)
        first = dropped_batches.order_by("seq").values_list("first_record_id", flat=True)[0]
        dropped = list(
            Record.objects.filter(id__gte=first).order_by("id").values_list("id", flat=True)
        )
        dropped_batches.delete()
        SigningRun.objects.filter(pk=run.pk).update(batch_count=keep, record_count=5 * keep)
    return run, dropped


def lost_by(run: SigningRun, record_id: int) -> str:
    return (
        f"record {record_id} was unsigned when run {run.pk} planned, and run {run.pk} "
        "completed without it"
    )


def test_a_completed_run_whose_plan_dropped_its_last_batch_is_a_breach(
    sent, django_capture_on_commit_callbacks, backend
):
    # Given a run whose plan dropped its last batch (5 records outside every batch's range)
    run, dropped = started_with_batches_dropped(django_capture_on_commit_callbacks, keep=3)
    assert len(dropped) == 5

    # When its 3 batches are signed and it completes
    deliver_all(sent, django_capture_on_commit_callbacks)
    run.refresh_from_db()
    assert run.status == SigningRun.Status.COMPLETED
    assert run.planned_through == dropped[-1]  # the plan saw them

    # Then its own audit, the worker's and the whole database's name each record dropped,
    # and none of them counts as "not signed yet"
    for check in (rule_one(run.pk), rule_one()):
        assert check.breaches == [lost_by(run, record_id) for record_id in dropped]
        assert check.notes == []
    assert not run.audit.passed
    assert audit(processes=1).records_not_signed == 0


def test_a_run_completed_with_no_batch_while_records_waited_is_a_breach(
    sent, django_capture_on_commit_callbacks, backend
):
    # Given a run whose plan dropped every batch, completed with none
    run, dropped = started_with_batches_dropped(django_capture_on_commit_callbacks, keep=0)
    assert len(dropped) == 20
    with django_capture_on_commit_callbacks(execute=True):
        assert finish_run(run.pk)
    deliver_all(sent, django_capture_on_commit_callbacks)
    run.refresh_from_db()
    assert run.status == SigningRun.Status.COMPLETED

    # Then the audit names the 20 records it owed
    check = rule_one()
    assert check.breach_count == 20
    assert check.breaches[0] == lost_by(run, dropped[0])
    assert not run.audit.passed


def test_records_inserted_while_a_run_signs_stay_not_signed_yet_after_it_completes(
    sent, django_capture_on_commit_callbacks, backend
):
    # Given a run planned over 20 records, and 3 records inserted after its plan
    seed(records=20, keys=3)
    with django_capture_on_commit_callbacks(execute=True):
        run = start_run(batch_size=5, max_in_flight=1)
    load_records(["late 1", "late 2", "late 3"])

    # When the run completes
    deliver_all(sent, django_capture_on_commit_callbacks)
    run.refresh_from_db()
    assert run.status == SigningRun.Status.COMPLETED

    # Then they lie above its mark: not signed yet, no breach
    assert run.planned_through < min(
        Record.objects.filter(payload__startswith="late").values_list("id", flat=True)
    )
    check = rule_one()
    assert check.passed
    assert check.notes[0].startswith("3 records not signed yet")
    assert run.audit.passed


def test_a_run_planned_before_the_mark_existed_is_judged_by_its_batches(
    sent, django_capture_on_commit_callbacks, backend
):
    # Given a run whose plan dropped its last batch, planned before planned_through existed
    run, _ = started_with_batches_dropped(django_capture_on_commit_callbacks, keep=3)
    SigningRun.objects.filter(pk=run.pk).update(planned_through=None)
    deliver_all(sent, django_capture_on_commit_callbacks)

    # Then its batches are all it is held to: the records outside them are not signed yet
    check = rule_one()
    assert check.passed
    assert check.notes[0].startswith("5 records not signed yet")
