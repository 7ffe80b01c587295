"""The seed's Data Seeder: random records and a fresh keyring, in one transaction.

Used by `manage.py seed`, `demo` and `bench`. Whether a reset may delete what is there is
the caller's question (signing.management.cli.confirm_reset); this only does it, whole or
not at all.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from django.db import transaction

from kernel import crypto
from keyring.services import create_keys, lock_keyring
from records.services import load_records, random_payloads, reset_all
from signing.models import SigningRun
from signing.runs.exceptions import RunAlreadyActive


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
        lock_keyring()
        active = SigningRun.objects.filter(status__in=SigningRun.ACTIVE_STATUSES).first()
        if active is not None:
            raise RunAlreadyActive(active.pk)
        if reset:
            reset_all()
        created = create_keys(count=keys, algorithm=algorithm, kek=kek) if keys else []
        loaded = load_records(random_payloads(records, rng=random.Random(payload_seed)))
    return Seeded(records=loaded, keys=len(created))
