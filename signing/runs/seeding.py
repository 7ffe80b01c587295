"""The seed's Data Seeder: random records and a fresh keyring, in one transaction.

Used by `manage.py seed`, `demo` and `bench`. Whether a reset may delete what is there is
the caller's question (signing.management.cli.confirm_reset); this only does it, whole or
not at all.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

import dramatiq
from django.db import transaction

from kernel import crypto
from kernel.events import EventLogger
from keyring.services import create_keys, forget_private_keys
from records.services import random_payloads
from signing.backends import backend
from signing.models import SigningRun
from signing.runs.exceptions import RunAlreadyActive

log = EventLogger(__name__)


@dataclass(frozen=True, slots=True)
class Seeded:
    records: int
    keys: int


def seed_database(
    *,
    records: int,
    keys: int,
    kek: bytes,
    algorithm: str = crypto.ED25519,
    reset: bool = False,
    payload_seed: int | None = None,
) -> Seeded:
    """Add `records` random records and `keys` keys sealed under `kek`, first deleting
    everything when `reset`; all in one transaction, refused (RunAlreadyActive) while a run
    is active. KekMismatch when the KEK does not open the keys already there."""
    with transaction.atomic():
        # The keyring lock before the reset's TRUNCATE: create_keys takes it, and a
        # dispatch holding it that then reads a truncated table would wait for us as we
        # waited for it. Keyring lock first, as everywhere (docs/architecture.md).
        backend().lock_keyring()
        active = SigningRun.objects.filter(status__in=SigningRun.ACTIVE_STATUSES).first()
        if active is not None:
            raise RunAlreadyActive(active.pk)
        if reset:
            reset_all()
        created = create_keys(count=keys, algorithm=algorithm, kek=kek) if keys else []
        loaded = load_records(random_payloads(records, rng=random.Random(payload_seed)))
    return Seeded(records=loaded, keys=len(created))


def load_records(payloads: Iterable[str]) -> int:
    """Bulk-load records (COPY on PostgreSQL, batched INSERTs on SQLite), the table analyzed
    at once; return how many were loaded."""
    return backend().load_records(payloads)


def reset_all() -> None:
    """Delete every record, signature, run, batch, lease and key (`seed --reset`).

    Ids are not restarted (signing.backends.sql.RESET_ALL), so a message from before the
    reset names no row of the new data. Queued messages are dropped too once the reset
    commits: they could only be refused. A broker that does not answer then keeps them;
    that is fine. Only the database owner may TRUNCATE: the app role gets ResetNeedsOwner.
    """
    backend().reset_all()
    transaction.on_commit(_drop_queued_messages)
    forget_private_keys()


def _drop_queued_messages() -> None:
    try:
        dramatiq.get_broker().flush_all()
    except Exception as error:  # the stale messages are refused by their lease check anyway
        log.warning("reset.queue_not_flushed", error=error)
