"""The work of SigningTriggered: sign a batch with its leased key and store it, fenced."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings

from keyring.services import UnsealedKey, extend_lease, open_private_key
from records.models import Signature
from records.services import StoreOutcome, store_signatures
from signing import crypto
from signing.audit import audit
from signing.events import EventLogger
from signing.exceptions import KeyMismatch
from signing.models import RunAudit, SigningRun

log = EventLogger(__name__)

# How many records are signed between two looks at the clock for a heartbeat.
HEARTBEAT_EVERY_RECORDS = 500


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """What SigningCompleted reports: enough for monitoring, nothing secret."""

    outcome: StoreOutcome
    signed: int
    conflicts: int
    seconds: float


def sign_batch(
    *,
    batch_id: int,
    lease_id: int,
    token: int,
    key_id: int,
    kid: str,
    public_key_pem: str,
    records: list[tuple[int, str]],
) -> BatchSummary:
    """Sign every record of the batch on its own with the leased key, then store them all.

    Signing happens before any lock is taken. A long batch extends its lease as it goes
    (every third of a TTL), and stops as soon as the lease is gone; the store checks the
    lease and token again, so an attempt that lost its lease writes nothing.
    """
    started = time.perf_counter()
    key = open_private_key(key_id=key_id, kid=kid)
    if key.public_key_pem != public_key_pem:
        raise KeyMismatch(f"{kid}'s private key does not match the public key the lease named")
    signatures = _sign_with_heartbeat(key, records, lease_id=lease_id, token=token)
    if signatures is None:
        outcome, conflicts = StoreOutcome.LEASE_LOST, 0
    else:
        outcome, conflicts = store_signatures(
            lease_id=lease_id, token=token, batch_id=batch_id, key_id=key_id, signatures=signatures
        )
    seconds = time.perf_counter() - started
    log.info(
        f"batch.{outcome.value}",
        batch_id=batch_id,
        lease_id=lease_id,
        kid=kid,
        records=len(records),
        seconds=round(seconds, 4),
    )
    if outcome is not StoreOutcome.STORED:
        return BatchSummary(outcome=outcome, signed=0, conflicts=0, seconds=seconds)
    signed = len(signatures) - conflicts
    return BatchSummary(outcome=outcome, signed=signed, conflicts=conflicts, seconds=seconds)


def _sign_with_heartbeat(
    key: UnsealedKey, records: list[tuple[int, str]], *, lease_id: int, token: int
) -> list[crypto.SignedRecord] | None:
    """Sign in chunks, extending the lease every third of a TTL; None once it is lost."""
    ttl = settings.SIGNING_LEASE_TTL
    last_heartbeat = time.perf_counter()
    signatures: list[crypto.SignedRecord] = []
    for first in range(0, len(records), HEARTBEAT_EVERY_RECORDS):
        signatures.extend(
            crypto.sign_records(key.private_key, records[first : first + HEARTBEAT_EVERY_RECORDS])
        )
        if time.perf_counter() - last_heartbeat >= ttl / 3:
            if not extend_lease(lease_id=lease_id, token=token, ttl_seconds=ttl):
                return None
            last_heartbeat = time.perf_counter()
    return signatures


def audit_and_record(run_id: int) -> RunAudit | None:
    """Audit a finished run and keep the report, for pages that show it (audit_run actor).

    A run that is not finished (or no longer exists) is left alone: the message is stale,
    from before a `seed --reset` restarted the ids, and the run's own audit comes later.
    """
    if not SigningRun.objects.filter(pk=run_id, status__in=SigningRun.FINISHED_STATUSES).exists():
        log.warning("run.audit_skipped", run_id=run_id, reason="not finished")
        return None
    report = audit(run_id=run_id, processes=1)
    recorded, _ = RunAudit.objects.update_or_create(
        run_id=run_id, defaults={"passed": report.passed, "report": report.as_dict()}
    )
    log.info("run.audited", run_id=run_id, passed=report.passed)
    return recorded


def verify_record(record_id: int) -> bool | None:
    """Check a stored signature again over the record's signing input; None if unsigned."""
    signature = (
        Signature.objects.select_related("record", "key").filter(record_id=record_id).first()
    )
    if signature is None:
        return None
    return crypto.verify(
        crypto.load_public_key(signature.key.public_key_pem),
        crypto.signing_input(signature.record_id, signature.record.payload),
        bytes(signature.signature),
    )


def verify_message(*, public_key_pem: str, message: str, signature: bytes) -> bool:
    """Check a signature over a message's exact UTF-8 bytes with one of our public keys."""
    return crypto.verify(crypto.load_public_key(public_key_pem), message.encode(), signature)
