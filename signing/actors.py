"""The seed's Message Processor: SigningTriggered and SigningCompleted, as thin actors.

Each parses its message, calls a service and sends the next message. Retries and time
limits live on the decorators; every actor is safe to run twice (redelivery is normal).
"""

from __future__ import annotations

from typing import Any

import dramatiq

from records.services import StoreOutcome
from signing.dispatch import abandon_batch, complete_batch
from signing.services import audit_and_record, sign_batch

QUEUE = "signing"


@dramatiq.actor(queue_name=QUEUE, max_retries=20, min_backoff=200, max_backoff=10_000)
def signing_failed(message: dict[str, Any], retries: dict[str, Any]) -> None:
    """A SigningTriggered ran out of retries: give its batch back (or fail it)."""
    kwargs = message["kwargs"]
    reason = (message["options"].get("traceback") or "").strip().splitlines()
    abandon_batch(
        run_id=kwargs["run_id"],
        lease_id=kwargs["lease_id"],
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
    time_limit=120_000,
    priority=SIGNING_PRIORITY,
    on_retry_exhausted=signing_failed.actor_name,
)
def signing_triggered(
    *,
    run_id: int,
    batch_id: int,
    lease_id: int,
    token: int,
    key_id: int,
    kid: str,
    public_key_pem: str,
    records: list[list[Any]],
) -> None:
    """Sign and store one batch; report it unless another attempt owns the batch now."""
    summary = sign_batch(
        batch_id=batch_id,
        lease_id=lease_id,
        token=token,
        key_id=key_id,
        kid=kid,
        public_key_pem=public_key_pem,
        records=[(record_id, payload) for record_id, payload in records],
    )
    if summary.outcome is StoreOutcome.LEASE_LOST:
        return
    signing_completed.send(
        run_id=run_id,
        lease_id=lease_id,
        kid=kid,
        signed=summary.signed,
        conflicts=summary.conflicts,
        seconds=round(summary.seconds, 6),
    )


@dramatiq.actor(queue_name=QUEUE, max_retries=20, min_backoff=200, max_backoff=10_000)
def signing_completed(
    *, run_id: int, lease_id: int, kid: str, signed: int, conflicts: int, seconds: float
) -> None:
    """Release the batch's lease and dispatch the next batch (a no-op the second time)."""
    complete_batch(run_id=run_id, lease_id=lease_id)


@dramatiq.actor(queue_name=QUEUE, max_retries=5, time_limit=600_000)
def audit_run(*, run_id: int) -> None:
    """Audit a run that just finished and keep the report (shown on its page)."""
    audit_and_record(run_id)
