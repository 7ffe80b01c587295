"""manage.py seed: random records and a fresh keyring, bulk-loaded."""

import random
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from keyring import sealing
from keyring.exceptions import KekError
from keyring.services import create_keys, lock_keyring
from records.models import Record
from records.services import load_records, random_payloads, reset_all
from signing import crypto
from signing.cli import whole_number
from signing.models import SigningRun


class Command(BaseCommand):
    help = "Seed random records and signing keys (private keys sealed under SIGNING_KEK)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--records", type=whole_number(0), default=100_000, help="records to add"
        )
        parser.add_argument("--keys", type=whole_number(0), default=100, help="keys to add")
        parser.add_argument(
            "--algorithm", choices=crypto.ALGORITHMS, default=crypto.ED25519, help="key algorithm"
        )
        parser.add_argument(
            "--reset",
            action="store_true",
            help="first delete every record, signature, run, batch, lease and key",
        )
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="do nothing when records already exist (for a container that seeds on start)",
        )
        parser.add_argument("--seed", type=int, default=None, help="random seed for payloads")

    def handle(self, *args, records: int, keys: int, algorithm: str, reset: bool, **options):
        if options["if_empty"] and Record.objects.exists():
            self.stdout.write("records exist already: nothing seeded")
            return
        try:
            kek = sealing.kek_from_environment() if keys else b""
        except KekError as error:
            raise CommandError(str(error)) from None
        started = time.perf_counter()
        with transaction.atomic():
            # The keyring lock before the reset's TRUNCATE: create_keys takes it, and a
            # dispatch holding it that then reads a truncated table would wait for us as we
            # waited for it. Keyring lock first, as everywhere (docs/architecture.md).
            lock_keyring()
            if SigningRun.objects.filter(status__in=SigningRun.ACTIVE_STATUSES).exists():
                raise CommandError("a run is active: wait for it or cancel it before seeding")
            if reset:
                reset_all()
            try:
                created_keys = create_keys(count=keys, algorithm=algorithm, kek=kek) if keys else []
            except KekError as error:  # the KEK does not open the keys already there
                raise CommandError(str(error)) from None
            loaded = load_records(random_payloads(records, rng=random.Random(options["seed"])))
        seconds = time.perf_counter() - started
        self.stdout.write(
            f"seeded {loaded:,} records and {len(created_keys):,} {algorithm} keys"
            f"{' after a reset' if reset else ''} in {seconds:.2f} s"
        )
