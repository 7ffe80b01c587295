"""Create the configured PostgreSQL database if it does not exist yet (used by `make`).

In embedded mode there is nothing to create: settings made the SQLite file's folder, and
manage.py has said on stderr why, and where the file is.
"""

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from psycopg import sql


class Command(BaseCommand):
    help = "Create the database named by DATABASE_URL when it is missing; do nothing otherwise."

    def handle(self, *args, **options) -> None:
        if settings.SIGNING_EMBEDDED:
            return
        db = settings.DATABASES["default"]
        params = {
            "host": db.get("HOST") or None,
            "port": db.get("PORT") or None,
            "user": db.get("USER") or None,
            "password": db.get("PASSWORD") or None,
            "connect_timeout": 5,
        }
        try:
            with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]
                ).fetchone()
                if not exists:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
                    self.stdout.write(f"created database {db['NAME']}")
        except psycopg.OperationalError as error:
            first_line = str(error).strip().splitlines()[0]
            raise CommandError(f"cannot reach PostgreSQL at DATABASE_URL: {first_line}") from None
