"""Private key material and the KEK never leave the sealed column.

The README promises that private keys are "never logged or sent in a message" and stored
only sealed under the KEK. These tests hold the service to it where a leak would really
happen: the workers' log, the test process's log records, every message put on the broker,
every page a person or an admin can open, and every row of every table. Each place is
searched for each key's private key and for the KEK, in every spelling a careless line of
code would produce: raw bytes, hex, base64, a Python bytes repr, a PEM header.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from django.db import connection
from django.urls import reverse

from kernel import crypto
from keyring import sealing
from keyring.exceptions import KekMismatch
from keyring.models import SigningKey
from keyring.services import forget_private_keys, open_private_key
from records.models import Record
from signing.models import RunAudit, SigningRun
from signing.runs.dispatch import start_run
from tests.conftest import ARTIFACTS, SentMessages, seed, wait_until
from tests.support import deliver_all

RECORDS, KEYS, BATCH_SIZE = 500, 5, 50
BATCHES = RECORDS // BATCH_SIZE


@dataclass(frozen=True, slots=True)
class Secret:
    """One spelling of one secret, named so that a failure says exactly what leaked."""

    name: str
    needle: bytes
    any_case: bool = False  # hex may be written in upper case


def spellings(name: str, secret: bytes) -> list[Secret]:
    """The ways code that logs, serializes or renders bytes would write this secret out.

    Base64 is searched without its padding, so a secret written unpadded, or followed by
    more data, is found too.
    """
    return [
        Secret(f"{name} (raw bytes)", secret),
        Secret(f"{name} (hex)", secret.hex().encode(), any_case=True),
        Secret(f"{name} (base64)", base64.b64encode(secret).rstrip(b"=")),
        Secret(f"{name} (URL-safe base64)", base64.urlsafe_b64encode(secret).rstrip(b"=")),
        # What `log.info("%s", secret)` or an f-string of bytes writes.
        Secret(f"{name} (Python bytes repr)", repr(secret)[2:-1].encode()),
    ]


def keyring_secrets() -> list[Secret]:
    """Every secret of the seeded keyring, found by unsealing each key as a worker does.

    Read back from the database rather than kept from `seed`, so the secrets searched for
    are exactly the ones the workers sign with.
    """
    kek = sealing.kek_from_environment()
    secrets = [
        Secret("a PEM private key header", b"PRIVATE KEY"),
        Secret("the KEK (as SIGNING_KEK holds it)", os.environ[sealing.KEK_ENV].encode()),
        *spellings("the KEK", kek),
    ]
    keys = list(SigningKey.objects.order_by("id"))
    assert keys, "there are keys to look for"
    for key in keys:
        der = sealing.unseal(kek, key.kid, bytes(key.encrypted_private_key))
        raw = crypto.private_key_from_der(der).private_bytes(
            Encoding.Raw, PrivateFormat.Raw, NoEncryption()
        )
        secrets += spellings(f"{key.kid}'s private key as PKCS#8 DER", der)
        secrets += spellings(f"{key.kid}'s raw private key", raw)
    return secrets


def assert_no_secrets(blob: bytes | str, secrets: list[Secret], *, where: str) -> None:
    """Fail naming every secret found in `blob` and the place it came from."""
    data = blob.encode("utf-8", "surrogateescape") if isinstance(blob, str) else bytes(blob)
    folded = data.lower()
    leaked = [
        secret.name
        for secret in secrets
        if (secret.needle.lower() in folded if secret.any_case else secret.needle in data)
    ]
    assert not leaked, f"{where}: found " + "; ".join(leaked)


def capture_everything(caplog: pytest.LogCaptureFixture) -> None:
    """Capture every log record of this process at DEBUG.

    Lowering the root logger is not enough: loggers with a level of their own (the
    service's at WARNING in tests, Django's at INFO) would drop their lower lines before
    they reach caplog's handler on the root. caplog restores every level afterwards.
    """
    caplog.set_level(logging.DEBUG)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            caplog.set_level(logging.DEBUG, logger=name)


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """The captured lines as formatted, plus each record's attributes: `extra=` fields and
    raw arguments are not in the formatted text but would reach a structured log."""
    return caplog.text + "\n".join(repr(vars(record)) for record in caplog.records)


def table_rows() -> Iterator[tuple[str, str]]:
    """Each table of the database with all its rows as text (binary columns as hex, as
    PostgreSQL prints bytea), so a secret stored in any column of any table is found, not
    only where expected."""
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            yield table, "\n".join(" ".join(map(as_text, row)) for row in cursor.fetchall())


def as_text(value: object) -> str:
    if isinstance(value, bytes | memoryview):
        return "\\x" + bytes(value).hex()
    return str(value)


@dataclass(frozen=True, slots=True)
class SignedJob:
    run: SigningRun
    secrets: list[Secret]


@pytest.fixture
def signed_job(
    sent: SentMessages, django_capture_on_commit_callbacks, backend, this_process_plays_the_workers
) -> SignedJob:
    """A job of 500 records in batches of 50 with 5 keys, signed and audited in this
    process by delivering every message it sends as a worker would, until none is left.

    Everything but the worker processes is real: the messages go through the Redis broker
    (recorded by `sent`), the keys are unsealed, the records signed and the run audited.
    """
    seed(records=RECORDS, keys=KEYS)
    with django_capture_on_commit_callbacks(execute=True):
        run = start_run(batch_size=BATCH_SIZE)
    deliver_all(sent, django_capture_on_commit_callbacks)
    run.refresh_from_db()
    assert run.status == SigningRun.Status.COMPLETED
    assert run.audit.passed, run.audit.report
    return SignedJob(run=run, secrets=keyring_secrets())


@pytest.mark.workers
@pytest.mark.django_db(transaction=True)
def test_a_job_signed_by_real_workers_logs_no_private_key_and_no_kek(
    start_workers,
    worker_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    # Given 500 records, 5 keys and two worker processes logging all the service logs
    capture_everything(caplog)
    seed(records=RECORDS, keys=KEYS)
    secrets = keyring_secrets()
    worker_env["SIGNING_LOG_LEVEL"] = "DEBUG"
    workers = start_workers(processes=2, threads=4)

    # When a run in batches of 50 is signed to the end and audited by the workers
    run = start_run(batch_size=BATCH_SIZE)
    wait_until(
        lambda: SigningRun.objects.get(pk=run.pk).status in SigningRun.FINISHED_STATUSES,
        timeout=120,
    )
    run.refresh_from_db()
    assert run.status == SigningRun.Status.COMPLETED, run.failure_reason
    wait_until(lambda: RunAudit.objects.filter(run_id=run.pk).exists(), timeout=60)
    workers.stop()  # every line flushed, the shutdown logged too

    # Then the workers' log holds the whole job but no private key and no KEK
    log_file: Path = ARTIFACTS / f"workers-{request.node.name}.log"
    worker_log = log_file.read_bytes()
    assert worker_log.count(b"batch.stored") == BATCHES, "the log shows every batch"
    assert b"run.audited" in worker_log
    assert_no_secrets(worker_log, secrets, where=f"the workers' log {log_file}")
    # and neither does anything this process logged while it planned and dispatched the run
    assert "lease.granted" in caplog.text, "the dispatch in this process was captured"
    assert_no_secrets(everything_logged(caplog), secrets, where="the test process's logs")


@pytest.mark.django_db
def test_no_broker_message_of_a_job_carries_a_private_key_or_the_kek(
    signed_job: SignedJob, sent: SentMessages
) -> None:
    # Given a job signed in this process, every message it sent delivered (signed_job)
    # When each message is encoded as it goes to Redis
    encoded = {f"{m.actor_name} message {m.message_id}": m.encode() for m in sent.messages}

    # Then every kind of message the job sends was seen, and none carries a secret
    assert len(sent.named("signing_triggered")) == BATCHES
    assert len(sent.named("signing_completed")) == BATCHES
    assert len(sent.named("audit_run")) == 1
    for where, blob in encoded.items():
        assert_no_secrets(blob, signed_job.secrets, where=where)


@pytest.mark.django_db
def test_no_page_or_admin_page_shows_a_private_key_or_the_kek(
    signed_job: SignedJob, admin_client
) -> None:
    # Given a job signed and audited, and a superuser who may open every page
    run, keys = signed_job.run, list(SigningKey.objects.order_by("id"))
    urls = [
        reverse("dashboard"),
        reverse("keys"),
        *(reverse("key-pem", args=[key.kid]) for key in keys),
        reverse("run-detail", args=[run.pk]),
        reverse("run-progress", args=[run.pk]),
        reverse("run-charts", args=[run.pk]),
        reverse("admin:keyring_signingkey_changelist"),
        *(reverse("admin:keyring_signingkey_change", args=[key.pk]) for key in keys),
    ]

    # When each page is opened
    pages = {url: admin_client.get(url) for url in urls}

    # Then every page opens, shows the keys' public side, and no secret
    for url, response in pages.items():
        assert response.status_code == 200, url
        assert_no_secrets(response.content, signed_job.secrets, where=f"the page {url}")
    assert all(key.kid in pages[reverse("keys")].content.decode() for key in keys)
    for key in keys:
        pem = pages[reverse("key-pem", args=[key.kid])].content.decode()
        assert pem == key.public_key_pem


@pytest.mark.django_db
def test_no_api_response_carries_a_private_key_or_the_kek(
    signed_job: SignedJob, admin_client
) -> None:
    # Given a job signed and audited, and a superuser (session auth works for the API too)
    run, keys = signed_job.run, list(SigningKey.objects.order_by("id"))
    record_ids = Record.objects.order_by("id").values_list("id", flat=True)[:5]
    urls = [
        "/api/runs/",
        f"/api/runs/{run.pk}/",
        f"/api/runs/{run.pk}/leases/",
        "/api/keys/",
        *(f"/api/keys/{key.kid}/" for key in keys),
        *(f"/api/records/{record_id}/" for record_id in record_ids),
        "/.well-known/jwks.json",
        "/api/schema/",
    ]

    # When each is read
    responses = {url: admin_client.get(url) for url in urls}

    # Then each answers, with public parts only
    for url, response in responses.items():
        assert response.status_code == 200, url
        assert_no_secrets(response.content, signed_job.secrets, where=f"the API response {url}")
    assert len(responses["/.well-known/jwks.json"].json()["keys"]) == len(keys)


@pytest.mark.django_db
def test_the_database_holds_private_keys_only_sealed_and_only_the_kek_opens_them(
    signed_job: SignedJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job signed and audited, so every table has rows
    kek = sealing.kek_from_environment()
    keys = list(SigningKey.objects.order_by("id"))

    # When each key is read back as stored, and opened as a worker opens it
    stored = {key.kid: bytes(key.encrypted_private_key) for key in keys}
    opened = {key.kid: open_private_key(key_id=key.pk, kid=key.kid) for key in keys}

    # Then the stored bytes are not the private key, yet the KEK opens them to the private
    # key that matches the key's public key
    data = b"sig-v1\n1\nproof"
    for key in keys:
        der = sealing.unseal(kek, key.kid, stored[key.kid])
        assert der not in stored[key.kid], f"{key.kid}'s private key is stored in clear"
        private_key = opened[key.kid].private_key
        assert crypto.private_key_to_der(private_key) == der
        assert opened[key.kid].public_key_pem == key.public_key_pem
        public_key = crypto.load_public_key(key.public_key_pem)
        assert crypto.verify(public_key, data, crypto.sign(private_key, data))
    # and no row of any table, the sealed column included, holds a secret in clear
    for table, rows in table_rows():
        assert_no_secrets(rows, signed_job.secrets, where=f"the table {table}")
    # and another KEK opens none of the keys
    monkeypatch.setenv(sealing.KEK_ENV, sealing.generate_kek())
    forget_private_keys()
    for key in keys:
        with pytest.raises(KekMismatch):
            open_private_key(key_id=key.pk, kid=key.kid)
