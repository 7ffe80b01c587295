"""A process that inserts records as an ingest service would, for the follow-run tests:
`python -m tests.integration.follow_inserter TRANSACTIONS SEED [--silent]` (the database
from the environment, like manage.py).

Each transaction inserts a few records, then waits a random moment before it commits, so
the inserters running side by side commit their ids out of order, which is what a cut
must survive. After each commit it calls records_arrived(), as the ingest path does, unless --silent
(then only the workers' follow tick finds them).
Prints how many records it committed.
"""

from __future__ import annotations

import os
import random
import sys
import time


def main(transactions: int, seed: int, *, tell: bool = True) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signing_site.settings")
    import django

    django.setup()
    from django.db import transaction

    from records.models import Record
    from signing.runs.follow import records_arrived

    rng = random.Random(seed)
    committed = 0
    for number in range(transactions):
        count = rng.randint(1, 30)
        with transaction.atomic():
            Record.objects.bulk_create(
                Record(payload=f"inserter {seed} transaction {number} record {n}")
                for n in range(count)
            )
            time.sleep(rng.uniform(0, 0.03))  # commit late: ids of others commit first
        committed += count
        if tell:
            records_arrived()
    return committed


if __name__ == "__main__":
    print(main(int(sys.argv[1]), int(sys.argv[2]), tell="--silent" not in sys.argv[3:]))
