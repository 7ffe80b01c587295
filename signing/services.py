"""The work of SigningTriggered: sign a batch with its leased key and store it, fenced."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from keyring.services import open_private_key
from records.services import StoreOutcome, store_signatures
from signing import crypto
from signing.exceptions import KeyMismatch

log = logging.getLogger(__name__)


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

    Signing happens before any lock is taken; the store checks the lease and token, so an
    attempt that lost its lease while signing writes nothing.
    """
    started = time.perf_counter()
    key = open_private_key(key_id=key_id, kid=kid)
    if key.public_key_pem != public_key_pem:
        raise KeyMismatch(f"{kid}'s private key does not match the public key the lease named")
    signatures = crypto.sign_records(key.private_key, records)
    outcome, conflicts = store_signatures(
        lease_id=lease_id, token=token, batch_id=batch_id, key_id=key_id, signatures=signatures
    )
    seconds = time.perf_counter() - started
    log.info(
        "batch.%s batch_id=%s lease_id=%s kid=%s records=%s seconds=%.4f",
        outcome.value,
        batch_id,
        lease_id,
        kid,
        len(records),
        seconds,
    )
    signed = len(signatures) - conflicts if outcome is StoreOutcome.STORED else 0
    return BatchSummary(outcome=outcome, signed=signed, conflicts=conflicts, seconds=seconds)
