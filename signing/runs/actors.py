"""The seed's Message Processor: SigningTriggered and SigningCompleted, as thin actors.

Each parses its message, calls a service and sends the next message. Retries and time
limits live on the decorators; every actor is safe to run twice (redelivery is normal).
Anyone who can write to the broker can send any of these: a message is a hint, checked
against the database (the lease it names), never trusted with what to sign or store. A
message whose fields are not even of the right types is dropped with one warning line.
"""

from __future__ import annotations

from typing import Any

import dramatiq

from kernel.events import EventLogger
from keyring.exceptions import KekError
from signing.runs.dispatch import complete_batch, record_batch_failure
from signing.runs.messages import QUEUE
from signing.runs.services import LeaseHint, audit_and_record, sign_batch
from signing.runs.store import StoreOutcome

log = EventLogger(__name__)


@dramatiq.actor(queue_name=QUEUE, max_retries=20, min_backoff=200, max_backoff=10_000)
def signing_failed(message: dict[str, Any], retries: dict[str, Any]) -> None:
    """A SigningTriggered ran out of retries: note why on its batch; its lease runs out."""
    kwargs = message.get("kwargs") or {}
    lease_id, token = kwargs.get("lease_id"), kwargs.get("token")
    if not _ids(lease_id, token):
        log.warning("message.invalid", actor="signing_failed")
        return
    reason = (message.get("options", {}).get("traceback") or "").strip().splitlines()
    record_batch_failure(
        lease_id=lease_id,
        token=token,
        reason=reason[-1] if reason else f"failed after {retries.get('retries')} retries",
    )


# Lower runs first among the messages a worker has fetched: a completion frees a key and
# dispatches the next batch, which keeps the pipeline full, so it goes before signing.
SIGNING_PRIORITY = 10


@dramatiq.actor(
    queue_name=QUEUE,
    max_retries=5,
    min_backoff=500,
    max_backoff=10_000,
    # Liveness is the lease's business (heartbeats, expiry); this only stops a runaway.
    time_limit=3_600_000,
    priority=SIGNING_PRIORITY,
    on_retry_exhausted=signing_failed.actor_name,
    # A worker whose KEK does not open the key: sign_batch gave the batch back already,
    # and a retry on the same worker would fail the same way (dead-lettered, not retried).
    throws=(KekError,),
)
def signing_triggered(
    *,
    run_id: int,
    batch_id: int,
    lease_id: int,
    token: int,
    key_id: int,
    kid: str,
    **_ignored: Any,  # messages of earlier versions carried the records and public key
) -> None:
    """Sign and store one batch; report it unless the message names no live lease."""
    if not (_ids(run_id, batch_id, lease_id, token, key_id) and _kid(kid)):
        log.warning("message.invalid", actor="signing_triggered")
        return
    hint = LeaseHint(lease_id=lease_id, token=token, batch_id=batch_id, key_id=key_id, kid=kid)
    summary = sign_batch(hint)
    if summary.outcome is StoreOutcome.LEASE_LOST:
        return
    signing_completed.send(
        run_id=run_id,
        lease_id=lease_id,
        signed=summary.signed,
        conflicts=summary.conflicts,
        seconds=round(summary.seconds, 6),
    )


@dramatiq.actor(queue_name=QUEUE, max_retries=20, min_backoff=200, max_backoff=10_000)
def signing_completed(*, run_id: int, lease_id: int, **summary: Any) -> None:
    """Release the batch's lease and dispatch the next batch (a no-op the second time).

    The summary (signed, conflicts, seconds) is for whoever watches the queue; nothing
    reads it here.
    """
    if not _ids(run_id, lease_id):
        log.warning("message.invalid", actor="signing_completed")
        return
    complete_batch(run_id=run_id, lease_id=lease_id)


@dramatiq.actor(queue_name=QUEUE, max_retries=5, time_limit=600_000)
def audit_run(*, run_id: int) -> None:
    """Audit a run that just finished and keep the report (shown on its page)."""
    if not _ids(run_id):
        log.warning("message.invalid", actor="audit_run")
        return
    audit_and_record(run_id)


# The largest id PostgreSQL's bigint holds: a larger one would fail in the database, retried.
_MAX_ID = 2**63 - 1


def _ids(*values: object) -> bool:
    return all(type(value) is int and 0 < value <= _MAX_ID for value in values)


def _kid(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 200
