"""Embedded mode as a user meets it: `make demo` on a machine with no servers, the decision
written down by the first command and kept by the next ones (a recorded choice of the
servers is an error when they do not answer, never a switch to SQLite), what an explicit,
unreachable server URL does (an error, never a fall-back), the commands it refuses, `serve`
signing a run started through the API, a run whose process was killed, and two processes
on one database.

"No servers" is made real, not mocked: the command runs in a network namespace of its own
(`unshare --net`), where nothing listens on 127.0.0.1. Every command here reads and writes
its own env file (SIGNING_ENV_FILE under tmp_path), never the project's `.env`.
"""

import contextlib
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from devtools.sandbox import free_port
from keyring.sealing import generate_kek
from tests.conftest import wait_until
from tests.support import MANAGE, manage

ROOT = Path(__file__).resolve().parents[2]


CHOSEN_SETTINGS = ("DATABASE_URL", "BROKER_URL", "SIGNING_EMBEDDED", "SIGNING_EMBEDDED_DB")
NOTHING_ANSWERS = (
    "PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379 are not reachable and neither "
    "SIGNING_EMBEDDED, DATABASE_URL nor BROKER_URL is set"
)


def user_environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment of a user who configured nothing but what is given here.

    The test run's own settings are left out, and the env file is `tmp_path/.env`: what a
    command decides is written there, and only what a test put there is read.
    """
    return {
        **{name: value for name, value in os.environ.items() if name not in CHOSEN_SETTINGS},
        "SIGNING_ENV_FILE": str(tmp_path / ".env"),
        "DJANGO_SETTINGS_MODULE": "signing_site.settings",
        "COLUMNS": "200",
        **settings,
    }


def without_network_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not without_network_works(), reason="cannot unshare the network here")
def test_make_demo_with_no_servers_reachable_says_so_and_runs_embedded(tmp_path):
    # Given a machine where nothing answers on 127.0.0.1, and nothing configured
    database, env_file = tmp_path / "signing.sqlite3", tmp_path / ".env"
    env = user_environment(tmp_path, SIGNING_EMBEDDED_DB=str(database))

    # When the user runs `make demo`
    demo = subprocess.run(
        ["unshare", "--net", "make", "-s", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    # Then its first command says why it runs embedded and writes that down, the next ones
    # (migrate, demo) say they read it, and every record is signed and audited
    output = demo.stdout + demo.stderr
    assert demo.returncode == 0, output
    why = [line for line in demo.stderr.splitlines() if line.startswith("embedded mode")]
    where = f"SQLite at {database}, in-process broker"
    assert why == [
        f"embedded mode ({NOTHING_ANSWERS}; recorded as SIGNING_EMBEDDED=1 in {env_file}): {where}",
        *[f"embedded mode (SIGNING_EMBEDDED=1 in {env_file}): {where}"] * 2,
    ]
    assert not [line for line in demo.stdout.splitlines() if line.startswith("embedded mode")]
    assert env_file.read_text().endswith(f": {NOTHING_ANSWERS}\nSIGNING_EMBEDDED=1\n")
    assert "worker threads in this process (embedded mode)" in output
    assert "100,000 of 100,000 signed" in output
    assert "Audit PASSED" in output


# Run before Django: any connection opened from here on ends the process with exit code 97.
NO_CONNECTIONS = """
import socket, sys

def refuse(*args, **kwargs):
    print(f"connection opened: {args[-1] if args else kwargs}", file=sys.stderr)
    sys.exit(97)

socket.create_connection = socket.socket.connect = socket.socket.connect_ex = refuse
"""


def test_reading_the_settings_opens_no_connection_even_with_nothing_decided(tmp_path):
    # Given nothing configured and no decision recorded (what only manage.py probes for)
    env = user_environment(tmp_path)

    # When a process other than manage.py sets Django up, every connection refused
    setup = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_CONNECTIONS + "import django; django.setup(); from django.conf import settings; "
            "print(settings.SIGNING_EMBEDDED, settings.DATABASES['default']['HOST'])",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Then nothing was probed nor written down, and it assumes the default servers
    assert setup.returncode == 0, setup.stderr
    assert "connection opened" not in setup.stderr
    assert setup.stdout.split() == ["False", "127.0.0.1"]
    assert not (tmp_path / ".env").exists()


def test_an_explicit_database_url_that_does_not_answer_is_an_error_not_a_fallback(tmp_path):
    nobody = f"postgres://postgres@127.0.0.1:{free_port()}/signing"
    demo = subprocess.run(
        ["make", "-s", "demo"],
        cwd=ROOT,
        env=user_environment(
            tmp_path, DATABASE_URL=nobody, SIGNING_EMBEDDED_DB=str(tmp_path / "unused.sqlite3")
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert demo.returncode != 0
    assert "cannot reach PostgreSQL at DATABASE_URL" in demo.stderr
    assert "embedded" not in demo.stdout + demo.stderr
    assert not (tmp_path / "unused.sqlite3").exists()
    assert not (tmp_path / ".env").exists()  # configured: nothing probed, nothing written


@pytest.mark.skipif(not without_network_works(), reason="cannot unshare the network here")
def test_the_first_command_writes_down_embedded_mode_and_the_next_keep_it_once_servers_answer(
    tmp_path,
):
    # Given nothing configured, and a first command started where no server answers
    database, env_file = tmp_path / "signing.sqlite3", tmp_path / ".env"
    env = user_environment(tmp_path, SIGNING_EMBEDDED_DB=str(database))
    first = manage(env, "migrate", "-v", "0", network=False, inherit=False)
    assert first.returncode == 0, first.stderr

    # When the next commands start where PostgreSQL and Redis answer (they run here)
    decided = env_file.read_text()
    later = [manage(env, "migrate", "-v", "0", inherit=False), manage(env, "audit", inherit=False)]

    # Then the first wrote down when and why, and the others stayed on its SQLite file
    assert re.fullmatch(
        rf"# decided by manage\.py migrate on \d{{4}}-\d\d-\d\d \d\d:\d\d UTC: "
        rf"{NOTHING_ANSWERS}\nSIGNING_EMBEDDED=1\n",
        decided,
    )
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    for command in later:
        assert command.returncode == 0, command.stdout + command.stderr
    assert "Audit PASSED" in later[1].stdout
    assert env_file.read_text() == decided
    assert scalar(database, "SELECT count(*) FROM django_migrations") > 0


def test_a_demo_forced_embedded_once_names_the_command_that_serves_its_database(tmp_path):
    # Given a project whose .env chose the servers, and a demo forced embedded on its
    # command line (`SIGNING_EMBEDDED=1 make demo`)
    env_file, database = tmp_path / ".env", tmp_path / "demo.sqlite3"
    env_file.write_text(
        f"SIGNING_EMBEDDED=0\nSIGNING_EMBEDDED_DB={database}\nSIGNING_KEK={generate_kek()}\n"
    )
    fresh_shell = {
        **{k: v for k, v in user_environment(tmp_path).items() if k != "SIGNING_KEK"},
        "SIGNING_DATABASE_NAME": "signing_demo",  # what make demo and make serve set
    }
    env = {**fresh_shell, "SIGNING_EMBEDDED": "1"}
    assert manage(env, "migrate", "-v", "0", inherit=False).returncode == 0

    # When it signs
    demo = manage(env, "demo", "--records", "30", "--keys", "3", "--reset", inherit=False)

    # Then its summary says to give SIGNING_EMBEDDED=1 (and the env file, the tests' own)
    # to make serve, and with those a fresh process opens the records it signed
    assert demo.returncode == 0, demo.stdout + demo.stderr
    [line] = [line for line in demo.stdout.splitlines() if "dashboard" in line]
    assert line.startswith(
        f"  dashboard      SIGNING_ENV_FILE={env_file} SIGNING_EMBEDDED=1 make serve, "
        "then http://127.0.0.1:8000/ (user admin, password "
    )
    given = dict(word.split("=", 1) for word in line.split("make serve")[0].split()[1:])
    count = "from records.models import Record; print(Record.objects.count())"
    opened = manage({**fresh_shell, **given}, "shell", "-v", "0", "-c", count, inherit=False)
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.split() == ["30"]
    assert f"SQLite at {database}" in opened.stderr
    mode = "from django.conf import settings; print(settings.SIGNING_EMBEDDED)"
    without = manage(
        fresh_shell, "shell", "-v", "0", "-c", mode, inherit=False
    )  # the servers instead
    assert without.stdout.split() == ["False"], without.stderr


@pytest.mark.parametrize("set_in", ["the environment", "the env file"])
def test_every_command_in_embedded_mode_says_so_once_on_stderr_and_why(tmp_path, set_in):
    # Given embedded mode set in the environment, or in the env file (as a probe records it)
    database, env_file = tmp_path / "signing.sqlite3", tmp_path / ".env"
    if set_in == "the env file":
        env_file.write_text("SIGNING_EMBEDDED=1\n")
        env = user_environment(tmp_path, SIGNING_EMBEDDED_DB=str(database))
    else:
        env = embedded_environment(tmp_path)

    # When commands run, ensure_db (which said so on stdout) among them
    done = [
        manage(env, *command, inherit=False)
        for command in (["ensure_db"], ["migrate", "-v", "0"], ["audit"])
    ]

    # Then each says it on stderr once, with where SIGNING_EMBEDDED=1 was set
    where = "the environment" if set_in == "the environment" else env_file
    for command in done:
        assert command.returncode == 0, command.stdout + command.stderr
        assert command.stderr.splitlines()[0] == (
            f"embedded mode (SIGNING_EMBEDDED=1 in {where}): SQLite at {database}, "
            "in-process broker"
        )
        assert (command.stdout + command.stderr).count("embedded mode") == 1


@pytest.fixture(scope="module")
def sqlite_with_keys(tmp_path_factory) -> Path:
    """A migrated SQLite database with two keys, made in embedded mode."""
    folder = tmp_path_factory.mktemp("sqlite-with-keys")
    for command in (["migrate", "-v", "0"], ["seed", "--records", "100", "--keys", "2"]):
        done = manage_embedded(folder, *command)
        assert done.returncode == 0, done.stdout + done.stderr
    return folder / "signing.sqlite3"


@pytest.mark.skipif(not without_network_works(), reason="cannot unshare the network here")
@pytest.mark.parametrize("command", [("keys", "disable", "KID"), ("cancel",), ("audit",)])
def test_a_recorded_choice_of_the_servers_fails_when_they_are_silent_never_uses_sqlite(
    tmp_path, sqlite_with_keys, command
):
    # Given the servers recorded in .env, and a SQLite file that a fall-back would find
    env_file = tmp_path / ".env"
    env_file.write_text("# decided by manage.py migrate on …: … answered\nSIGNING_EMBEDDED=0\n")
    before = sqlite_state(sqlite_with_keys)
    kid = before["keys"][0][0]

    # When a command that changes state (or judges it) runs while no server answers
    args = [kid if arg == "KID" else arg for arg in command]
    done = manage(
        user_environment(tmp_path, SIGNING_EMBEDDED_DB=str(sqlite_with_keys)),
        *args,
        network=False,
        inherit=False,
    )

    # Then it fails on PostgreSQL, and the SQLite file is left as it was
    assert done.returncode != 0
    assert 'connection to server at "127.0.0.1", port 5432 failed' in done.stderr
    assert "embedded mode" not in done.stdout + done.stderr
    assert sqlite_state(sqlite_with_keys) == before
    assert env_file.read_text().count("SIGNING_EMBEDDED") == 1


def sqlite_state(database: Path) -> dict[str, list[tuple]]:
    return {
        "keys": rows(database, "SELECT kid, enabled FROM keyring_signingkey ORDER BY id"),
        "signatures": rows(database, "SELECT count(*) FROM records_signature"),
        "runs": rows(database, "SELECT id, status FROM signing_signingrun"),
    }


def embedded_environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    return user_environment(
        tmp_path,
        SIGNING_EMBEDDED="1",
        SIGNING_EMBEDDED_DB=str(tmp_path / "signing.sqlite3"),
        **settings,
    )


def manage_embedded(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess:
    return manage(embedded_environment(tmp_path, **settings), *args, inherit=False)


def test_embedded_mode_refuses_what_needs_worker_processes(tmp_path):
    assert manage_embedded(tmp_path, "migrate", "-v", "0").returncode == 0

    no_wait = manage_embedded(tmp_path, "sign", "--no-wait")
    # Server URLs set beside SIGNING_EMBEDDED=1 change nothing: the cause named is the mode.
    servers = {"DATABASE_URL": "postgres://127.0.0.1/x", "BROKER_URL": "redis://127.0.0.1/1"}
    workers = manage_embedded(tmp_path, "rundramatiq", **servers)

    assert no_wait.returncode == 2
    assert "--no-wait needs worker processes" in no_wait.stderr
    assert workers.returncode == 1
    assert workers.stderr.strip().splitlines()[-1] == (
        "CommandError: embedded mode (SIGNING_EMBEDDED=1 in the environment) has no separate "
        "workers: signing runs inside `manage.py sign` (and `serve`), as threads of that process"
    )


def test_serve_in_embedded_mode_signs_a_run_started_through_the_api(tmp_path):
    # Given an embedded database with records, keys and an API token
    assert manage_embedded(tmp_path, "migrate", "-v", "0").returncode == 0
    assert manage_embedded(tmp_path, "seed", "--records", "2000", "--keys", "10").returncode == 0
    account = ("--noinput", "--username", "ops", "--email", "ops@example.com")
    created = manage_embedded(
        tmp_path, "createsuperuser", *account, DJANGO_SUPERUSER_PASSWORD="not-a-secret"
    )
    assert created.returncode == 0, created.stderr
    token = manage_embedded(tmp_path, "drf_create_token", "ops").stdout.split()[2]
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, MANAGE, "serve", f"127.0.0.1:{port}"],
        env=embedded_environment(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthz(base) == 200, timeout=60)

        # When a run is started through the API of `serve`, whose threads are the workers
        run = api(base, token, "/api/runs/", {"batch_size": 100})

        # Then it completes with every record signed, and its audit passes
        def audited() -> dict | None:
            now = api(base, token, f"/api/runs/{run['id']}/")
            return now if now["audit_passed"] is not None else None

        done = wait_until(audited, timeout=60)
        assert done["status"] == "completed"
        assert done["progress"]["signed_records"] == 2000
        assert done["audit_passed"] is True
    finally:
        serve.terminate()
        assert serve.wait(timeout=30) == 0


def healthz(base: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
            return response.status
    except OSError:
        return None


def api(base: str, token: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_a_run_whose_process_was_killed_is_resumed_by_the_next_sign(tmp_path):
    # Given an embedded run being signed by `sign`, whose threads are its only workers
    # (leases of 6 s: the next `sign` starts before those of the killed one expire)
    short_leases = {"SIGNING_LEASE_TTL": "6"}
    database = tmp_path / "signing.sqlite3"
    assert manage_embedded(tmp_path, "migrate", "-v", "0").returncode == 0
    assert manage_embedded(tmp_path, "seed", "--records", "20000", "--keys", "20").returncode == 0
    first = subprocess.Popen(
        [sys.executable, MANAGE, "sign", "--batch-size", "10"],
        env=embedded_environment(tmp_path, **short_leases),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    # When that process is killed (SIGKILL) mid-run, and `sign` is run again
    try:
        wait_until(lambda: scalar(database, "SELECT count(*) FROM records_signature") >= 2000)
    finally:
        first.kill()
        first.wait(timeout=30)
    assert scalar(database, "SELECT count(*) FROM records_signature") < 20_000
    resumed = manage_embedded(tmp_path, "sign", "--batch-size", "10", **short_leases)

    # Then it takes the run over: the killed process's leases expired, their batches were
    # signed again, every record is signed once and the audit passes
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming run 1 (batch size 10, fixed for the run)" in resumed.stdout
    # and says what it waits for: the killed process's leases, and for how long
    waiting = re.search(
        r"^waiting for (\d+) leases? of the earlier process to expire: (\d) s$",
        resumed.stdout,
        re.MULTILINE,
    )
    assert waiting, resumed.stdout
    assert 1 <= int(waiting[1]) <= 20  # at most one lease per key
    assert 1 <= int(waiting[2]) <= 6  # at most one TTL
    assert "20,000 of 20,000 records signed in 2,000 batches of 10" in resumed.stdout
    expired = "SELECT count(*) FROM keyring_keylease WHERE outcome = 'expired'"
    assert scalar(database, expired) > 0
    audited = manage_embedded(tmp_path, "audit")
    assert audited.returncode == 0, audited.stdout


def scalar(database: Path, query: str) -> int:
    return rows(database, query)[0][0]


def rows(database: Path, query: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
        return connection.execute(query).fetchall()


def test_two_sign_processes_on_one_embedded_database_share_the_run_and_keep_the_rules(tmp_path):
    # Given one SQLite database, and two `sign` commands started at the same moment: one
    # starts the run, the other takes part in it (SQLite's file lock serializes the two)
    assert manage_embedded(tmp_path, "migrate", "-v", "0").returncode == 0
    assert manage_embedded(tmp_path, "seed", "--records", "40000", "--keys", "20").returncode == 0
    signers = [
        subprocess.Popen(
            [sys.executable, MANAGE, "sign", "--batch-size", "50"],
            env=embedded_environment(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]

    # When both finish
    outputs = [signer.communicate(timeout=300) for signer in signers]

    # Then both saw the one run complete, and the audit finds no breach of any rule
    for signer, (stdout, stderr) in zip(signers, outputs, strict=True):
        assert signer.returncode == 0, stdout + stderr
        assert "run 1 completed: 40,000 of 40,000 records signed in 800 batches" in stdout
    assert sum("resuming run 1" in stdout for stdout, _ in outputs) == 1
    audited = manage_embedded(tmp_path, "audit")
    assert audited.returncode == 0, audited.stdout
