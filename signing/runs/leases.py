"""The run domain's lease operations: release, heartbeat and expiry, through the backend
seam (signing.backends), each with its log event. Leases are granted by the claim
(signing.runs.dispatch.dispatch_batches), one batch per lease.

Leasing and releasing run under the keyring lock and are stamped by its clock: why, and
what else takes it, is docs/architecture.md, "Why one keyring lock". The constraints on
keyring_keylease still refuse overlapping leases on their own.
"""

from __future__ import annotations

from kernel.events import EventLogger
from keyring.leases import GrantedLease, LeaseHint
from signing.backends import backend

log = EventLogger(__name__)


def log_granted(lease: GrantedLease) -> None:
    # DEBUG: one line per batch at INFO (batch.stored) is enough to follow a run; the lease
    # table keeps every grant for good.
    log.debug(
        "lease.granted",
        lease_id=lease.id,
        kid=lease.kid,
        batch_id=lease.batch_id,
        token=lease.token,
    )


def release_lease(*, lease_id: int, outcome: str) -> int | None:
    """Close the lease and stamp its key's `last_used_at`; return the lease's batch id.

    Idempotent: a lease already closed (a redelivered SigningCompleted) changes nothing
    and returns None.
    """
    batch_id = backend().release_lease(lease_id=lease_id, outcome=outcome)
    if batch_id is not None:
        log.info("lease.released", lease_id=lease_id, outcome=outcome)
    return batch_id


def extend_lease(lease: LeaseHint, *, ttl_seconds: float) -> bool:
    """Heartbeat: keep a lease alive while its batch is signed; False if it is gone.

    Only a lease still open, under this token and not yet expired, is extended: a holder
    that missed its expiry has lost the batch even if the reaper has not noticed yet.
    """
    extended = backend().extend_lease(lease, ttl_seconds=ttl_seconds)
    if not extended:
        log.warning("lease.lost", lease_id=lease.lease_id, token=lease.token)
    return extended


def expire_leases() -> list[tuple[int, int, int]]:
    """Close every lease past its `expires_at`; return (lease id, batch id, run id) of each.

    Runs under the keyring lock like any release, so the replay of rule 4 stays exact.
    """
    expired = backend().expire_leases()
    for lease_id, batch_id, run_id in expired:
        log.warning("lease.expired", run_id=run_id, lease_id=lease_id, batch_id=batch_id)
    return expired
