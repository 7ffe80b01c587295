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

from kernel.events import EventLogger, log_context
from keyring.exceptions import KekError
from keyring.leases import LeaseHint
from signing.runs import messages
from signing.runs.audits import audit_and_record
from signing.runs.completions import complete_batch
from signing.runs.messages import QUEUE
from signing.runs.recovery import record_batch_failure
from signing.runs.services import sign_batch
from signing.runs.store import StoreOutcome

log = EventLogger(__name__)


@dramatiq.actor(queue_name=QUEUE, max_retries=20, min_backoff=200, max_backoff=10_000)
def signing_failed(message: dict[str, Any], retries: dict[str, Any]) -> None:
    """A SigningTriggered ran out of retries: note why on its batch; its lease runs out."""
    lease = _lease_of(message.get("kwargs") or {})
    if lease is None:
        log.warning("message.invalid", actor="signing_failed")
        return
    reason = (message.get("options", {}).get("traceback") or "").strip().splitlines()
    run_id = (message.get("kwargs") or {}).get("run_id")
    with log_context(**({"run_id": run_id} if _ids(run_id) else {})):
        record_batch_failure(
            lease, reason=reason[-1] if reason else f"failed after {retries.get('retries')} retries"
        )


# Lower runs first among the messages a worker has fetched: a completion frees a key and
# dispatches the next batch, which keeps the pipeline full, so it goes before signing.
SIGNING_PRIORITY = 10


@dramatiq.actor(
    actor_name=messages.SIGNING_TRIGGERED,
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
    lease = _lease_of(
        {"batch_id": batch_id, "lease_id": lease_id, "token": token, "key_id": key_id, "kid": kid}
    )
    if lease is None or not _ids(run_id):
        log.warning("message.invalid", actor="signing_triggered")
        return
    with log_context(run_id=run_id):  # batch.stored, lease.lost, checkpoint.* name the run
        summary = sign_batch(lease)
    if summary.outcome is StoreOutcome.LEASE_LOST:
        return
    messages.send(messages.SIGNING_COMPLETED, run_id=run_id, lease_id=lease_id)


@dramatiq.actor(
    actor_name=messages.SIGNING_COMPLETED,
    queue_name=QUEUE,
    max_retries=20,
    min_backoff=200,
    max_backoff=10_000,
)
def signing_completed(
    *,
    run_id: int,
    lease_id: int,
    **_ignored: Any,  # messages of earlier versions carried a summary (now in the log)
) -> None:
    """Release the batch's lease and dispatch the next batch (a no-op the second time), in
    one statement with the completions this process's other threads are handling."""
    if not _ids(run_id, lease_id):
        log.warning("message.invalid", actor="signing_completed")
        return
    complete_batch(run_id=run_id, lease_id=lease_id)


@dramatiq.actor(actor_name=messages.AUDIT_RUN, queue_name=QUEUE, max_retries=5, time_limit=600_000)
def audit_run(*, run_id: int) -> None:
    """Audit a run that just finished and keep the report (shown on its page)."""
    if not _ids(run_id):
        log.warning("message.invalid", actor="audit_run")
        return
    audit_and_record(run_id)


# The largest id PostgreSQL's bigint holds: a larger one would fail in the database, retried.
_MAX_ID = 2**63 - 1


def _lease_of(fields: dict[str, Any]) -> LeaseHint | None:
    """The lease a SigningTriggered names, as one value; None if its fields are not even of
    the right types (the database checks the rest)."""
    ids = {name: fields.get(name) for name in ("lease_id", "token", "batch_id", "key_id")}
    if not (_ids(*ids.values()) and _kid(fields.get("kid"))):
        return None
    return LeaseHint(**ids, kid=fields["kid"])


def _ids(*values: object) -> bool:
    return all(type(value) is int and 0 < value <= _MAX_ID for value in values)


def _kid(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 200
