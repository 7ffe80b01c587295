"""Least privilege: the app role signs a whole run with real workers and can do nothing else;
the web tier starts runs without the KEK; only the owner resets (kernel/roles.py)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.test import APIClient

from kernel.roles import connect_as_owner, create_app_role, grant_app_role
from keyring import sealing
from records.models import Record, Signature
from signing.models import Batch, SigningRun
from tests.conftest import seed, wait_until
from tests.support import manage

pytestmark = pytest.mark.workers

ROOT = Path(__file__).resolve().parents[2]


# Keys are sealed with the tests' KEK, also where this process plays a web tier without one.
_workers_kek = os.environ[sealing.KEK_ENV]


def with_kek(seeding):
    """Seed with the tests' KEK even where this process plays a web tier without one."""
    previous = os.environ.get(sealing.KEK_ENV)
    os.environ[sealing.KEK_ENV] = _workers_kek
    try:
        return seeding()
    finally:
        if previous is None:
            del os.environ[sealing.KEK_ENV]
        else:
            os.environ[sealing.KEK_ENV] = previous


@pytest.fixture
def app_role(transactional_db) -> str:
    """This test database's app role (roles are the cluster's: named after the database),
    created if missing and granted as `migrate` grants it."""
    role = f"{connection.settings_dict['NAME']}_app"[:63]
    with connection.cursor() as cursor:
        create_app_role(cursor, role=role, password="")
    assert grant_app_role(role=role)
    return role


@pytest.fixture
def app_url(app_role: str) -> str:
    db = connection.settings_dict
    return f"postgres://{app_role}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def owner_url() -> str:
    db = connection.settings_dict
    user = db["USER"] or "postgres"
    return f"postgres://{user}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def as_app_role(app_role: str) -> Iterator[str]:
    """This test's process (the web tier here) connects as the app role until teardown,
    when the owner gets its connection back to empty the tables."""
    owner = {key: connection.settings_dict[key] for key in ("USER", "PASSWORD")}
    connection.close()
    connection.settings_dict.update(USER=app_role, PASSWORD="")
    yield app_role
    connection.close()
    connection.settings_dict.update(owner)


@pytest.fixture
def app_session(app_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(app_url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        yield conn


@pytest.fixture
def staff_client() -> APIClient:
    staff = get_user_model().objects.create_user("operator", password="x", is_staff=True)
    client = APIClient()
    client.force_authenticate(staff)
    return client


@pytest.fixture
def web_without_kek(monkeypatch: pytest.MonkeyPatch) -> None:
    """The web tier of a deployment: no SIGNING_KEK in its environment."""
    monkeypatch.delenv(sealing.KEK_ENV)


def refused(conn: psycopg.Connection, statement: str) -> bool:
    try:
        conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


def test_the_app_role_is_no_superuser_and_may_not_create_roles_or_databases(app_session):
    superuser, create_role, create_db, owned = app_session.execute(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, "
        "(SELECT count(*) FROM pg_class WHERE relowner = r.oid) "
        "FROM pg_roles r WHERE rolname = current_user"
    ).fetchone()
    assert (superuser, create_role, create_db, owned) == (False, False, False, 0)


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE intruder (id int)",
        "DROP TABLE records_signature",
        "ALTER TABLE records_record ADD COLUMN forged text",
        "CREATE INDEX intruder ON records_record (payload)",
        "CREATE FUNCTION intruder() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "TRUNCATE records_signature",
        "TRUNCATE keyring_keylease, signing_batch, signing_signingrun",
        "UPDATE records_record SET payload = 'forged'",
        "DELETE FROM records_signature",
        "DELETE FROM keyring_keylease",
        "INSERT INTO django_migrations (app, name, applied) VALUES ('signing', 'x', now())",
    ],
)
def test_the_app_role_is_refused_ddl_truncate_and_rewrites(app_session, statement):
    assert refused(app_session, statement)


def test_the_owners_analyze_function_analyzes_the_two_filled_tables_only(app_session):
    with pytest.raises(psycopg.errors.RaiseException, match="not auth_user"):
        app_session.execute("SELECT signing_analyze_filled_v1('auth_user')")


def test_the_app_role_may_do_what_signing_needs(app_session):
    # Temporary tables (a big batch's stage), sequences, the lease functions, ANALYZE
    # through the owner's function, the keyring's advisory lock.
    app_session.execute("CREATE TEMPORARY TABLE staged (record_id bigint)")
    app_session.execute("SELECT nextval(pg_get_serial_sequence('records_record', 'id'))")
    app_session.execute("SELECT signing_analyze_filled_v1('records_record')")
    app_session.execute("SELECT signing_analyze_filled_v1('signing_batch')")
    with app_session.transaction():
        app_session.execute("SELECT keyring_lock()")
    # A plan's or a follow run's cut: records_record in SHARE mode, through the owner's
    # function only (the mode asks for UPDATE on the table, which the app role lacks).
    with app_session.transaction():
        app_session.execute("SELECT signing_lock_record_inserts_v1()")
        held = app_session.execute(
            "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() "
            "AND relation = 'records_record'::regclass AND granted"
        ).fetchall()
        assert ("ShareLock",) in held
    with app_session.transaction():
        assert refused(app_session, "LOCK TABLE records_record IN SHARE MODE")


def test_tables_a_later_migration_adds_are_the_app_roles_to_use(app_session):
    # Given a table the owner creates after the grants, as a new migration would
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE later_migration (id bigserial PRIMARY KEY, note text)")
    try:
        # Then the app role reads and writes its rows, and still may not drop it
        app_session.execute("INSERT INTO later_migration (note) VALUES ('ok')")
        assert app_session.execute("SELECT count(*) FROM later_migration").fetchone() == (1,)
        assert refused(app_session, "DROP TABLE later_migration")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE later_migration")


def test_workers_and_the_web_tier_sign_a_whole_run_as_the_app_role_and_without_a_web_kek(
    as_app_role, app_url, worker_env, start_workers, staff_client, web_without_kek
):
    # Given records and keys seeded as the app role (the compose seeder) and workers that
    # connect as the app role with the KEK
    worker_env[sealing.KEK_ENV] = _workers_kek
    worker_env["DATABASE_URL"] = app_url
    with_kek(lambda: seed(records=600, keys=6))
    workers = start_workers(processes=2, threads=2)
    workers.wait_ready(timeout=120)

    # When the web tier, connected as the app role and without a KEK, starts a run
    response = staff_client.post("/api/runs/", {"batch_size": 50}, format="json")
    assert response.status_code == 201, response.content
    run = SigningRun.objects.get(pk=response.json()["id"])

    # Then the workers sign every record, and the audit (as the app role) passes
    wait_until(lambda: _finished(run) == SigningRun.Status.COMPLETED, timeout=120)
    assert Signature.objects.count() == Record.objects.count() == 600
    audited = manage({"DATABASE_URL": app_url}, "audit")
    assert audited.returncode == 0, audited.stdout + audited.stderr
    # and every other session on the test database was the app role's (the workers')
    others = set(
        _scalar_rows(
            "SELECT DISTINCT usename FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        )
    )
    assert others == {as_app_role}


def test_healthz_answers_200_without_a_kek(db, client, web_without_kek, broker):
    response = client.get("/healthz")
    assert response.status_code == 200, response.content


def test_a_worker_whose_kek_does_not_open_the_keys_fails_the_run_fast_with_the_reason(
    app_url, worker_env, start_workers, staff_client, web_without_kek
):
    # Given keys sealed under one KEK, and workers given another (well formed) one
    with_kek(lambda: seed(records=40, keys=4))
    worker_env[sealing.KEK_ENV] = sealing.generate_kek()  # not the one that sealed them
    worker_env["DATABASE_URL"] = app_url
    start_workers(processes=1, threads=2).wait_ready(timeout=120)

    # When the web tier, which holds no KEK to check them with, starts a run
    response = staff_client.post("/api/runs/", {"batch_size": 10}, format="json")
    assert response.status_code == 201, response.content
    run = SigningRun.objects.get(pk=response.json()["id"])

    # Then the run fails well inside one lease TTL (no lease is left to run out), saying why
    wait_until(
        lambda: _finished(run) == SigningRun.Status.FAILED, timeout=settings.SIGNING_LEASE_TTL
    )
    run.refresh_from_db()
    assert "KekMismatch" in run.failure_reason
    assert "does not open the private key" in run.failure_reason
    assert set(Batch.objects.values_list("attempts", flat=True)) == {settings.SIGNING_MAX_ATTEMPTS}
    assert not Signature.objects.exists()


def test_a_worker_without_a_kek_refuses_to_start(worker_env):
    started = manage({**worker_env, sealing.KEK_ENV: ""}, "rundramatiq", "--processes", "1")
    assert started.returncode != 0
    assert "workers sign, so they need the KEK: SIGNING_KEK is not set" in started.stderr


def test_the_app_role_may_not_reset_and_is_told_whose_it_is(app_url, worker_env):
    with_kek(lambda: seed(records=30, keys=2))
    result = manage({**worker_env, "DATABASE_URL": app_url}, "seed", "--reset", "--records", "5")
    assert result.returncode == 1
    assert "resets are the database owner's. Set DATABASE_OWNER_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert Record.objects.count() == 30


def test_a_reset_runs_as_the_owner_named_by_database_owner_url(app_url, owner_url, worker_env):
    with_kek(lambda: seed(records=30, keys=2))
    env = {**worker_env, "DATABASE_URL": app_url, "DATABASE_OWNER_URL": owner_url}
    result = manage(env, "seed", "--reset", "--records", "5", "--keys", "1")
    assert result.returncode == 0, result.stderr
    assert "deleted 30 records" in result.stdout
    assert Record.objects.count() == 5


def test_migrate_runs_as_the_owner_and_grants_the_app_role(app_role, app_url, owner_url):
    # Given the app role with its table privileges taken away
    with connection.cursor() as cursor:
        cursor.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {app_role}")
    env = {
        "DATABASE_URL": app_url,
        "DATABASE_OWNER_URL": owner_url,
        "SIGNING_DB_APP_ROLE": app_role,
    }
    # When migrate runs with DATABASE_URL the app role's (which may not migrate)
    migrated = manage(env, "migrate", "--noinput")
    # Then it ran as the owner and gave the app role its rows back
    assert migrated.returncode == 0, migrated.stderr
    with psycopg.connect(app_url.replace("postgres://", "postgresql://")) as conn:
        conn.execute("SELECT count(*) FROM records_record")


def test_without_an_owner_url_connect_as_owner_changes_nothing(transactional_db):
    before = dict(connection.settings_dict)
    assert settings.SIGNING_OWNER_DATABASE is None
    assert connect_as_owner() is False
    assert connection.settings_dict == before


def _finished(run: SigningRun) -> str | None:
    run.refresh_from_db()
    return run.status if run.status in SigningRun.FINISHED_STATUSES else None


def _scalar_rows(statement: str) -> list[object]:
    with connection.cursor() as cursor:
        cursor.execute(statement)
        return [row[0] for row in cursor.fetchall()]


def test_the_compose_init_script_makes_an_owner_that_migrates_and_an_app_role_that_seeds(
    worker_env,
):
    # Given the roles and database made by docker/postgres-init, run by hand against the
    # local server as the postgres image would (names of this test's own: roles are global)
    base = f"{connection.settings_dict['NAME']}_compose"[:50]
    names = {
        "SIGNING_DB_OWNER": f"{base}_owner",
        "SIGNING_DB_APP_ROLE": f"{base}_app",
        "SIGNING_DB_NAME": base,
        "SIGNING_DB_OWNER_PASSWORD": "owner-secret",
        "SIGNING_DB_APP_PASSWORD": "app-secret",
    }
    script = ROOT / "docker" / "postgres-init" / "10-signing-roles.sh"
    server = {
        "PGHOST": connection.settings_dict["HOST"] or "127.0.0.1",
        "POSTGRES_USER": "postgres",
    }
    _drop_compose_database(names)
    try:
        made = subprocess.run(
            [str(script)], env={**os.environ, **server, **names}, capture_output=True, text=True
        )
        assert made.returncode == 0, made.stderr
        url = "postgres://{}:{}@{}:5432/" + base
        owner = url.format(names["SIGNING_DB_OWNER"], "owner-secret", server["PGHOST"])
        app = url.format(names["SIGNING_DB_APP_ROLE"], "app-secret", server["PGHOST"])
        # When migrate runs as the owner (no superuser) and the seeder as the app role
        migrated = manage(
            {
                **worker_env,
                "DATABASE_URL": owner,
                "SIGNING_DB_APP_ROLE": names["SIGNING_DB_APP_ROLE"],
            },
            "migrate",
            "--noinput",
        )
        assert migrated.returncode == 0, migrated.stderr
        seeded = manage(
            {**worker_env, "DATABASE_URL": app},
            "seed",
            "--if-empty",
            "--records",
            "20",
            "--keys",
            "2",
        )
        # Then both work, and the app role still may not change the schema
        assert seeded.returncode == 0, seeded.stderr
        assert "seeded 20 records and 2" in seeded.stdout
        with psycopg.connect(app.replace("postgres://", "postgresql://"), autocommit=True) as conn:
            assert refused(conn, "CREATE TABLE intruder (id int)")
            assert refused(conn, "TRUNCATE records_record")
    finally:
        _drop_compose_database(names)


def _drop_compose_database(names: dict[str, str]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{names["SIGNING_DB_NAME"]}" WITH (FORCE)')
        for role in (names["SIGNING_DB_APP_ROLE"], names["SIGNING_DB_OWNER"]):
            cursor.execute(f'DROP ROLE IF EXISTS "{role}"')
