"""Upgrading from a release: a database its code built, migrated by today's code.

The first release is v0.1.0, commit 250b99f (docs/releases.md). A release's code, exported
from git, migrates a database of its own and signs in it (its `demo`: seed, its own workers,
a finished run, the audit); then today's code migrates that database, adds records, signs
them with today's workers, and the audit passes over both runs. Today's migrations leave
every function and trigger exactly as its file says, whatever the release had made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from signing.ops.workers import WorkerPool
from tests.sql_definitions import differences
from tests.support import ROOT, manage

pytestmark = pytest.mark.workers  # the release's and today's, as processes

# The releases a database may be upgraded from (docs/releases.md), by tag and commit: the
# commit is what counts, since a clone may not have fetched the tags.
RELEASES = {"v0.1.0": "250b99f"}


def release_commit(tag: str) -> str:
    """The full hash of a release's commit, or a skip where there is no history."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip(f"no git history here to export {tag} from")
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{RELEASES[tag]}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 0, f"{tag} ({RELEASES[tag]}) is not in this clone's history"
    return found.stdout.strip()


@pytest.fixture(params=RELEASES)
def release(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A release's tree, as `git archive` exports it."""
    tree = tmp_path / request.param
    tree.mkdir()
    archive = subprocess.run(
        ["git", "archive", release_commit(request.param)],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


@pytest.fixture
def upgrade_env(release: Path, worker_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A database of the test's own for the release (dropped at the end), on the servers."""
    name = f"{connection.settings_dict['NAME']}_upgrade_{release.name.replace('.', '_')}"
    yield {**worker_env, "SIGNING_DATABASE_NAME": name, "SIGNING_EMBEDDED": "0"}
    connection.close()
    with connection._nodb_cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage_release(release: Path, env: dict[str, str], *args: str) -> None:
    """Run the release's `manage.py ARGS` with this venv's Python, as its user would."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, str(release / "manage.py"), *args],
        cwd=release,
        env={**environment, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, f"{release.name}: manage.py {' '.join(args)}\n{result.stderr}"


def audit(env: dict[str, str]) -> dict:
    result = manage(env, "audit", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def database_differences(env: dict[str, str]) -> list[str]:
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        user=settings["USER"] or "postgres",
        password=settings["PASSWORD"] or None,
        dbname=env["SIGNING_DATABASE_NAME"],
    ) as upgraded:
        found = differences(upgraded.cursor(), "postgresql")
        upgraded.rollback()
    return found


def test_a_database_of_a_release_migrates_signs_new_records_and_passes_the_audit(
    release, upgrade_env, broker, tmp_path
):
    for args in (["ensure_db"], ["migrate", "-v", "0"]):
        manage_release(release, upgrade_env, *args)
    manage_release(
        release, upgrade_env, "demo", "--reset", "--records", "200", "--keys", "5",
        "--batch-size", "20", "--processes", "1", "--threads", "2",
    )  # fmt: skip

    migrated = manage(upgrade_env, "migrate", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr
    assert database_differences(upgrade_env) == []
    seeded = manage(upgrade_env, "seed", "--append", "--records", "60", "--keys", "0")
    assert seeded.returncode == 0, seeded.stderr
    workers = WorkerPool(
        processes=1, threads=2, env=upgrade_env, log_file=tmp_path / "workers.log"
    ).start()
    try:
        signed = manage(upgrade_env, "sign", "--batch-size", "20")
    finally:
        workers.stop()

    assert signed.returncode == 0, signed.stderr
    assert "60 of 60 records signed" in signed.stdout
    report = audit(upgrade_env)
    assert report["passed"] is True, report
    examined = {check["name"]: check["examined"] for check in report["checks"]}
    assert examined["signatures_verify"] == 200 + 60  # the release's signatures and today's
    runs = manage(upgrade_env, "audit", "--run", "1")
    assert runs.returncode == 0, runs.stdout  # the release's own run, audited by today's code
