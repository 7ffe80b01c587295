"""A follow run's signed checkpoints (signing.runs.checkpoints), in-process on both backends
(messages delivered by the test): made every N batches, fenced by the lease, verified by the
audit, which catches each kind of tampering."""

import base64
import contextlib
import io
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import DatabaseError

from kernel import crypto, merkle
from keyring.models import KeyLease, SigningKey
from records.services import random_payloads
from signing.audit.rules import audit
from signing.models import Batch, Checkpoint, SigningRun
from signing.runs.checkpoints import make_checkpoints
from signing.runs.dispatch import start_run
from signing.runs.follow import records_arrived, start_follow_run, stop_run
from signing.runs.seeding import load_records
from tests.conftest import seed
from tests.integration.factories import assert_checkpoint_holds
from tests.support import deliver, deliver_all

pytestmark = [pytest.mark.usefixtures("backend"), pytest.mark.django_db(transaction=True)]

AN_HOUR_MS = 3_600_000
ROOT = Path(__file__).resolve().parent.parent.parent
VERIFIER = ROOT / "tools" / "verify_export.py"


@pytest.fixture(autouse=True)
def _the_test_is_the_worker(monkeypatch, settings):
    monkeypatch.setattr("signing.runs.messages.reach_workers", lambda: True)
    settings.SIGNING_FOLLOW_MAX_WAIT_MS = AN_HOUR_MS
    settings.SIGNING_FOLLOW_CHECKPOINT_BATCHES = 3


def _no_capture(execute: bool = True) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def arrive(count: int) -> None:
    load_records(random_payloads(count, rng=random.Random(count)))
    records_arrived()


def checkpoint_breaches(run_id: int) -> list[str]:
    [check] = [c for c in audit(run_id=run_id, processes=1).checks if c.name == "checkpoints"]
    return check.breaches


def signed_follow_run(sent, *, batches: int) -> SigningRun:
    """A follow run in batches of 5 with `batches` full batches signed, still running."""
    seed(records=0, keys=3)
    run = start_follow_run(batch_size=5)
    arrive(5 * batches)
    deliver_all(sent, _no_capture)
    assert Batch.objects.filter(run=run, status=Batch.Status.SIGNED).count() == batches
    return run


def test_a_follow_run_gets_a_checkpoint_every_n_batches_each_signed_over_its_prefix(sent):
    # Given a follow run with 8 batches signed, checkpoints every 3
    run = signed_follow_run(sent, batches=8)

    # Then the checkpoints are for 3 and 6 batches: each root is the prefix's, each signature
    # verifies with its key over the checkpoint input, under a lease of the run on that key
    checkpoints = list(Checkpoint.objects.filter(run=run).order_by("batches"))
    assert [c.batches for c in checkpoints] == [3, 6]
    for checkpoint in checkpoints:
        assert_checkpoint_holds(checkpoint)
        lease = KeyLease.objects.get(pk=checkpoint.lease_id)
        assert lease.key_id == checkpoint.key_id
        assert lease.batch.run_id == run.pk
        assert lease.acquired_at <= checkpoint.signed_at <= lease.released_at

    # And the audit passes, with the checkpoints checked; a stop keeps them
    assert checkpoint_breaches(run.pk) == []
    assert stop_run(run.pk).status == SigningRun.Status.COMPLETED
    report = audit(run_id=run.pk, processes=1)
    assert report.passed, report.as_dict()


def test_an_ordinary_run_gets_no_checkpoint(sent):
    seed(records=50, keys=3)
    run = start_run(batch_size=5)
    deliver_all(sent, _no_capture)
    run.refresh_from_db()
    assert run.status == SigningRun.Status.COMPLETED
    assert not Checkpoint.objects.exists()


def test_a_stale_lease_makes_no_checkpoint_and_the_next_store_catches_up(sent, settings):
    # Given a follow run with 3 batches signed, checkpoints every 3, none made (N was larger)
    settings.SIGNING_FOLLOW_CHECKPOINT_BATCHES = 1000
    run = signed_follow_run(sent, batches=3)
    settings.SIGNING_FOLLOW_CHECKPOINT_BATCHES = 3
    assert not Checkpoint.objects.exists()
    lease = KeyLease.objects.filter(batch__run=run).order_by("-pk").first()
    key = _private_key(lease.key_id)

    # When the worker of a released lease (or a forged hint) tries, nothing is inserted
    assert make_checkpoints(_hint(lease), private_key=key) == []
    assert not Checkpoint.objects.exists()

    # And a store of the next batch, under its live lease, makes the one missed
    arrive(5)
    deliver_all(sent, _no_capture)
    assert list(Checkpoint.objects.values_list("batches", flat=True)) == [3]


def test_a_checkpoint_that_fails_is_logged_and_the_batch_goes_on(sent, monkeypatch, caplog):
    # Given a follow run whose checkpoint cannot be made (the database refuses its read)
    def refused(*args, **kwargs):
        raise DatabaseError("could not read; parameters: secret-looking-value")

    monkeypatch.setattr("signing.runs.checkpoints.stored_run_root", refused)

    # When its batches are signed
    with caplog.at_level("ERROR", logger="signing.runs.checkpoints"):
        run = signed_follow_run(sent, batches=4)

    # Then every batch is stored and released as usual, no checkpoint exists, and the
    # failure is logged by its type only
    assert not Checkpoint.objects.exists()
    assert not KeyLease.objects.filter(batch__run=run, released_at=None).exists()
    assert "checkpoint.failed" in caplog.text
    assert "DatabaseError" in caplog.text
    assert "secret-looking-value" not in caplog.text

    # And the next store, the database answering again, makes the checkpoint missed
    monkeypatch.undo()
    monkeypatch.setattr("signing.runs.messages.reach_workers", lambda: True)
    arrive(5)
    deliver_all(sent, _no_capture)
    assert list(Checkpoint.objects.values_list("batches", flat=True)) == [3]


def test_a_redelivered_message_makes_the_checkpoint_its_dead_worker_did_not(sent, settings):
    # Given a follow run whose 3rd batch was stored, then its worker died before checkpoints
    # (the 3rd SigningTriggered, held back, is delivered once the store is done by hand)
    run = signed_follow_run(sent, batches=2)
    arrive(5)
    [third] = [m for m in sent.messages if m.actor_name == "signing_triggered"][-1:]
    settings.SIGNING_FOLLOW_CHECKPOINT_BATCHES = 1_000_000  # the first delivery makes none
    deliver(third)
    assert Batch.objects.get(run=run, seq=3).status == Batch.Status.SIGNED
    assert not Checkpoint.objects.exists()

    # When the message is delivered again (its lease still open: no completion yet)
    settings.SIGNING_FOLLOW_CHECKPOINT_BATCHES = 3
    deliver(third)

    # Then the redelivery makes the checkpoint
    assert list(Checkpoint.objects.values_list("batches", flat=True)) == [3]


def _hint(lease: KeyLease):
    from keyring.leases import LeaseHint

    return LeaseHint(
        lease_id=lease.pk,
        token=lease.token,
        batch_id=lease.batch_id,
        key_id=lease.key_id,
        kid=lease.key.kid,
    )


def _private_key(key_id: int) -> crypto.PrivateKey:
    from keyring.services import open_private_key

    key = SigningKey.objects.get(pk=key_id)
    return open_private_key(key_id=key.pk, kid=key.kid).private_key


# --- The audit catches tampering ---------------------------------------------------------
def test_the_audit_catches_a_checkpoint_root_changed(sent):
    run = signed_follow_run(sent, batches=3)
    checkpoint = Checkpoint.objects.get(run=run)
    Checkpoint.objects.filter(pk=checkpoint.pk).update(merkle_root=bytes(32))
    breaches = checkpoint_breaches(run.pk)
    assert any("root" in b and f"checkpoint of run {run.pk} at 3 batches" in b for b in breaches)
    assert not audit(run_id=run.pk, processes=1).passed


def test_the_audit_catches_a_checkpoint_signature_changed(sent):
    run = signed_follow_run(sent, batches=3)
    checkpoint = Checkpoint.objects.get(run=run)
    flipped = bytearray(checkpoint.signature)
    flipped[0] ^= 1
    Checkpoint.objects.filter(pk=checkpoint.pk).update(signature=bytes(flipped))
    assert any("signature" in b for b in checkpoint_breaches(run.pk))


def test_the_audit_catches_a_checkpoint_batch_count_changed(sent):
    run = signed_follow_run(sent, batches=4)
    Checkpoint.objects.filter(run=run).update(batches=4)
    assert checkpoint_breaches(run.pk) != []


def test_the_audit_catches_a_checkpoint_signed_by_a_key_not_leased(sent):
    # Given a checkpoint re-signed, correctly, by a key the lease it names did not hold
    run = signed_follow_run(sent, batches=3)
    checkpoint = Checkpoint.objects.get(run=run)
    other = SigningKey.objects.exclude(pk=checkpoint.key_id).first()
    signature = crypto.sign(
        _private_key(other.pk),
        merkle.checkpoint_input(run.pk, 3, bytes(checkpoint.merkle_root)),
    )
    Checkpoint.objects.filter(pk=checkpoint.pk).update(key=other, signature=signature)
    breaches = checkpoint_breaches(run.pk)
    assert any("lease" in b for b in breaches), breaches


# --- Export and the standalone verifier ---------------------------------------------------
def export_and_manifest(tmp_path) -> tuple[Path, dict]:
    out = tmp_path / "export"
    call_command("export", "--out", str(out), stdout=io.StringIO())
    return out, json.loads((out / "manifest.json").read_text())


def verify(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(VERIFIER), str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def rewrite_checkpoint(directory: Path, manifest: dict, **changes: object) -> None:
    manifest["runs"][0]["checkpoints"][0].update(changes)
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_an_export_lists_a_follow_runs_checkpoints_and_the_verifier_checks_them(sent, tmp_path):
    # Given a follow run with 7 batches signed (checkpoints at 3 and 6), exported
    run = signed_follow_run(sent, batches=7)
    out, manifest = export_and_manifest(tmp_path)

    # Then its run entry lists both checkpoints, as the database holds them
    [entry] = manifest["runs"]
    listed = entry["checkpoints"]
    assert [c["batches"] for c in listed] == [3, 6]
    for checkpoint, stored in zip(listed, Checkpoint.objects.order_by("batches"), strict=True):
        assert checkpoint["root"] == bytes(stored.merkle_root).hex()
        assert base64.b64decode(checkpoint["signature"]) == bytes(stored.signature)
        assert checkpoint["kid"] == SigningKey.objects.get(pk=stored.key_id).kid
        assert checkpoint["algorithm"] == crypto.ED25519
        assert checkpoint["signed_at"]
    assert "ckpt-v1" in manifest["checkpoint_input"]
    # and the verifier passes, naming each checkpoint it checked
    result = verify(out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"run {run.pk} checkpoint at 3 batches root {listed[0]['root']}" in result.stdout
    assert f"run {run.pk} checkpoint at 6 batches root {listed[1]['root']}" in result.stdout


def test_the_verifier_names_a_checkpoint_whose_root_was_changed(sent, tmp_path):
    run = signed_follow_run(sent, batches=3)
    out, manifest = export_and_manifest(tmp_path)
    rewrite_checkpoint(out, manifest, root="00" * 32)

    result = verify(out)

    assert result.returncode == 1
    assert f"BAD checkpoint 3 of run {run.pk}: its root is not the root over batches 1 to 3" in (
        result.stdout
    )


def test_the_verifier_names_a_checkpoint_whose_signature_was_changed(sent, tmp_path):
    run = signed_follow_run(sent, batches=3)
    out, manifest = export_and_manifest(tmp_path)
    signature = bytearray(base64.b64decode(manifest["runs"][0]["checkpoints"][0]["signature"]))
    signature[5] ^= 0x40
    rewrite_checkpoint(out, manifest, signature=base64.b64encode(signature).decode())

    result = verify(out)

    assert result.returncode == 1
    assert f"BAD checkpoint 3 of run {run.pk}: its signature does not verify with key" in (
        result.stdout
    )


def test_the_verifier_names_a_checkpoint_moved_to_another_batch_count(sent, tmp_path):
    run = signed_follow_run(sent, batches=4)
    out, manifest = export_and_manifest(tmp_path)
    rewrite_checkpoint(out, manifest, batches=4)

    result = verify(out)

    assert result.returncode == 1
    assert f"BAD checkpoint 4 of run {run.pk}: its signature does not verify" in result.stdout
    assert f"BAD checkpoint 4 of run {run.pk}: its root is not the root over" in result.stdout


# --- Shown by the API and the run page ----------------------------------------------------
def test_the_api_and_the_run_page_show_a_follow_runs_latest_checkpoint(sent, client):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    # Given a follow run with 7 batches signed (checkpoints at 3 and 6)
    run = signed_follow_run(sent, batches=7)
    latest = Checkpoint.objects.get(run=run, batches=6)
    shown = {
        "batches": 6,
        "merkle_root": bytes(latest.merkle_root).hex(),
        "kid": SigningKey.objects.get(pk=latest.key_id).kid,
    }
    user = get_user_model().objects.create_user("auditor")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")

    # Then the API's run shows the latest, with the root and the kid
    detail = api.get(f"/api/runs/{run.pk}/").json()["latest_checkpoint"]
    assert {name: detail[name] for name in shown} == shown
    assert detail["signed_at"]
    # and the run page and its progress, the same
    client.force_login(user)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert shown["merkle_root"] in page
    assert shown["kid"] in page
    progress = client.get(f"/runs/{run.pk}/progress.json").json()["latest_checkpoint"]
    assert {name: progress[name] for name in shown} == shown


def test_an_ordinary_run_shows_no_checkpoint(sent):
    from signing.runs.selectors import latest_checkpoint

    seed(records=10, keys=2)
    run = start_run(batch_size=5)
    deliver_all(sent, _no_capture)
    assert latest_checkpoint(SigningRun.objects.get(pk=run.pk)) is None


@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("openssl", "jq", "xxd", "base64", "bash")),
    reason="needs openssl, jq, xxd and base64",
)
def test_the_readmes_openssl_loop_for_checkpoints_agrees_with_the_verifier(sent, tmp_path):
    # Given an export of a follow run with checkpoints at 3 and 6, and the README's two loops
    run = signed_follow_run(sent, batches=6)
    out, manifest = export_and_manifest(tmp_path)
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
    keys = next(block for block in blocks if "openssl pkeyutl" in block and "jwks.json" in block)
    checkpoints = next(block for block in blocks if "ckpt-v1" in block)
    script = keys.replace("cd /tmp/export", f"cd {out}") + checkpoints

    def run_loops() -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=120, check=False
        )

    # Then they are silent; and name the checkpoint whose root was changed
    clean = run_loops()
    assert (clean.returncode, clean.stdout) == (0, ""), clean.stderr
    manifest["runs"][0]["checkpoints"][1]["root"] = "ab" * 32
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert run_loops().stdout == f"run {run.pk} checkpoint 6: BAD signature\n"
