"""Create the configured PostgreSQL database if it does not exist yet (used by `make`), and
the app role (SIGNING_DB_APP_ROLE) if it is missing and this role may create roles: the
local superuser may, so a fresh clone needs no manual step. `migrate` grants it what the
app needs (kernel.roles).

In embedded mode there is nothing to create: settings made the SQLite file's folder, and
manage.py has said on stderr why, and where the file is.
"""

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from psycopg import sql

from kernel.roles import connect_as_owner, create_app_role


class Command(BaseCommand):
    help = "Create the database named by DATABASE_URL when it is missing; do nothing otherwise."

    def handle(self, *args, **options) -> None:
        if settings.SIGNING_EMBEDDED:
            return
        connect_as_owner()
        db = connections["default"].settings_dict
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
                self._ensure_app_role(conn)
        except psycopg.OperationalError as error:
            first_line = str(error).strip().splitlines()[0]
            raise CommandError(f"cannot reach PostgreSQL at DATABASE_URL: {first_line}") from None

    def _ensure_app_role(self, conn: psycopg.Connection) -> None:
        role = settings.SIGNING_DB_APP_ROLE
        may_create = conn.execute(
            "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone()[0]
        if not may_create:
            return  # a deployment: its administrator made the role (compose: the db's init)
        with conn.cursor() as cursor:
            if create_app_role(cursor, role=role, password=settings.SIGNING_DB_APP_PASSWORD):
                self.stdout.write(f"created role {role} (the app's; migrate grants it)")
