"""A follow run in embedded mode (SQLite): `sign --follow` signs in its own threads while
other processes insert records and another one stops the run; their messages could reach
no worker, so they only cut, and the signing process's follow tick dispatches."""

import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import wait_until
from tests.integration.test_embedded_mode import embedded_environment, manage_embedded
from tests.support import MANAGE, ROOT


def scalar(database: Path, query: str) -> int:
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
        return connection.execute(query).fetchone()[0]


def test_an_embedded_follow_run_signs_what_other_processes_insert_and_stops_on_command(tmp_path):
    # Given an embedded database with 200 records and 5 keys
    settings = {"SIGNING_FOLLOW_MAX_WAIT_MS": "100", "SIGNING_LEASE_TTL": "5"}
    env = embedded_environment(tmp_path, **settings)
    database = tmp_path / "signing.sqlite3"
    assert manage_embedded(tmp_path, "migrate", "-v", "0").returncode == 0
    assert manage_embedded(tmp_path, "seed", "--records", "200", "--keys", "5").returncode == 0

    # When `sign --follow` runs, and two other processes insert records meanwhile
    signer = subprocess.Popen(
        [sys.executable, MANAGE, "sign", "--follow", "--batch-size", "20"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: scalar(database, "SELECT count(*) FROM records_signature") >= 200)
        inserters = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.integration.follow_inserter", "10", str(n)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(2)
        ]
        inserted = 0
        for inserter in inserters:
            out, err = inserter.communicate(timeout=120)
            assert inserter.returncode == 0, err
            inserted += int(out.split()[-1])

        # and `manage.py stop 1` is run from yet another process
        stopped = manage_embedded(tmp_path, "stop", "1", **settings)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        out, _ = signer.communicate(timeout=120)
    finally:
        signer.kill()

    # Then the run completes with every record signed once, and the audit passes
    assert signer.returncode == 0, out
    assert "run 1 completed" in out
    assert scalar(database, "SELECT count(*) FROM records_signature") == 200 + inserted
    assert scalar(database, "SELECT count(*) FROM records_record") == 200 + inserted
    audited = manage_embedded(tmp_path, "audit", **settings)
    assert audited.returncode == 0, audited.stdout
