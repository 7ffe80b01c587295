"""Embedded mode's database (records, sealed keys, sessions, API tokens) is its owner's only:
the folder 0700, the file and SQLite's -wal and -shm 0600, whatever the umask.

Each case runs a real `manage.py shell` in embedded mode, with umask 000 (every file SQLite
or Python makes would be world-writable by default), its own env file, and a write so the
-wal and -shm files exist while it looks at them.
"""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LOOK = """
import json, os, stat
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE IF NOT EXISTS probe (x integer)")
    cursor.execute("INSERT INTO probe VALUES (1)")
path = str(connection.settings_dict["NAME"])
files = [path, os.path.dirname(path), path + "-wal", path + "-shm"]
print(json.dumps({f: oct(stat.S_IMODE(os.stat(f).st_mode)) for f in files if os.path.exists(f)}))
"""


def modes_seen_by_an_embedded_process(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL")},
        "SIGNING_EMBEDDED": "1",
        "SIGNING_ENV_FILE": str(tmp_path / ".env"),
        "DJANGO_SETTINGS_MODULE": "signing_site.settings",
        **settings,
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", LOOK],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=lambda: os.umask(0),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_new_embedded_database_and_its_folder_are_the_owners_only(tmp_path):
    database = tmp_path / "fresh" / "signing.sqlite3"
    modes = modes_seen_by_an_embedded_process(tmp_path, SIGNING_EMBEDDED_DB=str(database))
    assert modes == {
        str(database): "0o600",
        str(database.parent): "0o700",
        f"{database}-wal": "0o600",
        f"{database}-shm": "0o600",
    }


def test_the_projects_embedded_folder_and_a_file_made_before_are_made_private(tmp_path):
    # Given the project's .embedded folder and a database file, both world-readable
    folder = ROOT / ".embedded"
    folder.mkdir(exist_ok=True)
    name = f"{os.environ.get('SIGNING_TEST_DATABASE') or 'test_signing'}_private"
    database = folder / f"{name}.sqlite3"
    database.touch()
    folder.chmod(0o755)
    database.chmod(0o644)
    try:
        # When an embedded process opens it
        modes = modes_seen_by_an_embedded_process(tmp_path, SIGNING_DATABASE_NAME=name)
        # Then both are its owner's only
        assert modes[str(database)] == "0o600"
        assert modes[str(folder)] == "0o700"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    finally:
        for leftover in folder.glob(f"{name}.sqlite3*"):
            leftover.unlink()
