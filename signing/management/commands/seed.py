"""manage.py seed: random records and a fresh keyring, bulk-loaded."""

import time

from django.core.management.base import BaseCommand, CommandError

from kernel import crypto
from kernel.cli import amount, refuse_an_unmigrated_database, whole_number
from kernel.roles import ResetNeedsOwner, connect_as_owner
from keyring import sealing
from keyring.exceptions import KekError
from records.selectors import inventory
from signing.runs.exceptions import RunAlreadyActive
from signing.runs.seeding import seed_database


class Command(BaseCommand):
    help = (
        "Seed random records and signing keys (private keys sealed under SIGNING_KEK). A "
        "database that holds data is refused unless --append (add to it) or --reset (delete "
        "it all first) says what to do."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--records", type=whole_number(0), default=100_000, help="records to add"
        )
        parser.add_argument("--keys", type=whole_number(0), default=100, help="keys to add")
        parser.add_argument(
            "--algorithm", choices=crypto.ALGORITHMS, default=crypto.ED25519, help="key algorithm"
        )
        what = parser.add_mutually_exclusive_group()
        what.add_argument(
            "--reset",
            action="store_true",
            help="first delete every record, signature, run, batch, lease and key",
        )
        what.add_argument(
            "--append", action="store_true", help="add to the records and keys already there"
        )
        what.add_argument(
            "--if-empty",
            action="store_true",
            help="do nothing when the database holds data (for a container that seeds on start)",
        )
        parser.add_argument("--seed", type=int, default=None, help="random seed for payloads")

    def handle(self, *args, records: int, keys: int, algorithm: str, reset: bool, **options):
        if reset:
            connect_as_owner()  # a reset is the owner's (kernel/roles.py)
        refuse_an_unmigrated_database()
        held = inventory()
        if options["if_empty"] and not held.empty:
            self.stdout.write(f"the database holds {held} already: nothing seeded")
            return
        if not (reset or options["append"] or held.empty):
            raise CommandError(
                f"this database holds {held}: give --append to add to them, or --reset to "
                "delete them all first"
            )
        try:
            kek = sealing.kek_from_environment() if keys else b""
        except KekError as error:
            raise CommandError(str(error)) from None
        started = time.perf_counter()
        try:
            seeded = seed_database(
                records=records,
                keys=keys,
                kek=kek,
                algorithm=algorithm,
                reset=reset,
                payload_seed=options["seed"],
            )
        except (RunAlreadyActive, ResetNeedsOwner) as error:
            raise CommandError(str(error)) from None
        except KekError as error:  # the KEK does not open the keys already there
            raise CommandError(str(error)) from None
        if reset and not held.empty:
            self.stdout.write(f"deleted {held} (--reset)")
        self.stdout.write(
            f"seeded {amount(seeded.records, 'records')} and "
            f"{amount(seeded.keys, f'{algorithm} keys')}"
            f"{' after a reset' if reset else ''} in {time.perf_counter() - started:.2f} s"
        )
