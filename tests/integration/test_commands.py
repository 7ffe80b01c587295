"""manage.py seed / sign / audit / cancel / export_signature, as a user runs them."""

import io
import json
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from devtools.chaos import TRIALS
from devtools.sandbox import free_port
from kernel import crypto
from keyring import sealing
from keyring.models import KeyLease, SigningKey
from keyring.selectors import free_keys
from records.models import Record, Signature
from signing.models import Batch, SigningRun
from signing.runs.dispatch import MAX_BATCH_SIZE, plan_run
from tests.conftest import seed
from tests.support import MANAGE, manage


@pytest.mark.parametrize(
    "bad", ["0", "-1", "abc", "1.5", "", "1e3", str(10**12), "2147483648", "--5", "+-5", "²"]
)
def test_sign_refuses_a_bad_batch_size_in_one_line_with_exit_2_and_creates_nothing(bad, worker_env):
    result = manage(worker_env, "sign", f"--batch-size={bad}")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "batch size must" in result.stderr
    assert "Traceback" not in result.stderr
    assert not SigningRun.objects.exists()


def test_a_batch_size_too_large_in_the_environment_is_refused_naming_the_variable(worker_env):
    too_large = manage({**worker_env, "SIGNING_BATCH_SIZE": str(MAX_BATCH_SIZE + 1)}, "sign")
    assert too_large.returncode == 1
    assert (
        f"SIGNING_BATCH_SIZE must be at most {MAX_BATCH_SIZE}, got {MAX_BATCH_SIZE + 1}\n"
        in too_large.stderr
    )
    assert "Traceback" not in too_large.stderr
    largest = manage({**worker_env, "SIGNING_BATCH_SIZE": str(MAX_BATCH_SIZE)}, "sign", "--help")
    assert largest.returncode == 0, largest.stderr
    assert f"(default {MAX_BATCH_SIZE})" in largest.stdout


@pytest.mark.django_db
def test_sign_with_no_record_says_there_is_nothing_to_sign_and_makes_no_run():
    seed(records=0, keys=1)
    out = io.StringIO()
    call_command("sign", stdout=out)
    assert out.getvalue().strip() == (
        "nothing to sign: the database holds no record (manage.py seed or ingest adds them)"
    )
    assert not SigningRun.objects.exists()


@pytest.mark.django_db
def test_sign_no_wait_with_nothing_to_sign_prints_no_run_id_and_says_why_on_stderr():
    # Given every record signed already (here: none at all), as a script sees it:
    # `run=$(manage.py sign --no-wait)` reads stdout for a run id
    seed(records=0, keys=1)
    out, err = io.StringIO(), io.StringIO()

    # When it asks for a run
    call_command("sign", no_wait=True, stdout=out, stderr=err)  # no CommandError: exit 0

    # Then stdout holds no run id, stderr says why, and no run was made
    assert out.getvalue() == ""
    assert err.getvalue().strip() == (
        "nothing to sign: the database holds no record (manage.py seed or ingest adds them)"
    )
    assert not SigningRun.objects.exists()


@pytest.mark.django_db
def test_sign_refuses_a_second_run_while_one_is_active():
    seed(records=10, keys=2)
    active = plan_run(batch_size=5)
    with pytest.raises(CommandError, match=f"run {active.pk} is still active"):
        call_command("sign", batch_size="5", no_wait=True)
    assert SigningRun.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.cast(records=10, keys=1, batch_size=5)
def test_sign_while_the_active_run_holds_every_key_says_the_run_is_active(cast):
    # (not "seed keys first": the key is there, held by the run; in embedded mode, by a
    # process killed mid-run, whose run `sign` must then take over)
    assert not free_keys().exists()
    with pytest.raises(CommandError, match=f"run {cast.run.pk} is still active"):
        call_command("sign", no_wait=True)


@pytest.mark.django_db
def test_sign_without_keys_says_to_seed_first():
    seed(records=10, keys=0)
    with pytest.raises(CommandError, match="seed keys first"):
        call_command("sign", no_wait=True)
    assert not SigningRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_sign_no_wait_prints_the_run_id_and_returns(broker):
    seed(records=10, keys=2)
    out = io.StringIO()
    call_command("sign", batch_size="4", no_wait=True, stdout=out)
    run = SigningRun.objects.get()
    assert out.getvalue().strip() == str(run.pk)
    assert run.batch_size == 4
    assert list(Batch.objects.order_by("seq").values_list("size", flat=True)) == [4, 4, 2]


def test_sign_with_a_wrong_kek_is_a_clear_error(worker_env):
    seed(records=5, keys=1)
    from keyring.sealing import generate_kek

    result = manage({**worker_env, "SIGNING_KEK": generate_kek()}, "sign")
    assert result.returncode == 1
    assert "is not the KEK the keys are sealed under" in result.stderr
    assert "Traceback" not in result.stderr
    assert not SigningRun.objects.exists()


@pytest.mark.django_db
def test_sign_refuses_a_kek_that_opens_the_first_key_but_not_every_one():
    first, second, third = seed(records=5, keys=3)
    kek, other_kek = sealing.kek_from_environment(), sealing.generate_kek()
    for key in (second, third):  # sealed under another KEK, as if added with it
        secret = sealing.unseal(kek, key.kid, bytes(key.encrypted_private_key))
        SigningKey.objects.filter(pk=key.pk).update(
            encrypted_private_key=sealing.seal(sealing.parse_kek(other_kek), key.kid, secret)
        )

    refused = f"does not open the private key of {second.kid} "
    with pytest.raises(CommandError, match=refused) as error:
        call_command("sign", no_wait=True)

    assert first.kid not in str(error.value)
    assert other_kek not in str(error.value)
    assert not SigningRun.objects.exists()


def test_sign_with_an_unreachable_broker_is_a_clear_error_and_starts_nothing(worker_env):
    seed(records=20, keys=2)
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    result = manage({**worker_env, "BROKER_URL": nobody}, "sign", "--no-wait")
    assert result.returncode == 1
    assert "cannot reach the broker at BROKER_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert not SigningRun.objects.exists()


@pytest.mark.parametrize("command", [["audit"], ["seed", "--records", "5"], ["cancel"], ["sign"]])
def test_a_database_not_created_yet_is_one_line_naming_what_to_run(worker_env, command):
    env = {**worker_env, "DATABASE_URL": "", "SIGNING_DATABASE_NAME": "signing_never_created"}
    result = manage(env, *command)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        'cannot open the database signing_never_created (database "signing_never_created" does '
        "not exist): create it with `manage.py ensure_db` and `manage.py migrate` "
        "(`make workers` runs both)"
    ]


def test_a_database_server_that_does_not_answer_is_one_line(worker_env):
    env = {**worker_env, "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/signing"}
    result = manage(env, "audit")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().endswith(
        "failed: Connection refused): start PostgreSQL, or point DATABASE_URL at one that runs"
    )
    with_traceback = manage(env, "audit", "--traceback")
    assert "Traceback" in with_traceback.stderr  # asked for: shown


def test_output_cut_short_by_its_reader_ends_quietly(worker_env):
    import os
    import sys

    seed(records=1, keys=800)  # 90 KB of PEM: more than a pipe holds, so the write fails
    piped = subprocess.run(
        f"{sys.executable} {MANAGE} keys export-public | head -n 1",
        shell=True,
        capture_output=True,
        text=True,
        env={**os.environ, **worker_env},
        timeout=120,
    )
    assert piped.stdout.strip()
    assert "Traceback" not in piped.stderr, piped.stderr
    assert "BrokenPipeError" not in piped.stderr


def test_demo_with_an_unreachable_broker_is_a_clear_error_and_keeps_the_records(worker_env):
    seed(records=20, keys=2)
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    result = manage({**worker_env, "BROKER_URL": nobody}, "demo", "--records", "5")
    assert result.returncode == 1
    assert "cannot reach the broker at BROKER_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert Record.objects.count() == 20  # not reset for a demo that could not sign


def test_serve_with_an_unreachable_broker_refuses_in_one_line_and_starts_nothing(worker_env):
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    port = free_port()

    result = manage({**worker_env, "BROKER_URL": nobody}, "serve", f"127.0.0.1:{port}")

    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("CommandError: cannot reach the broker at BROKER_URL (")
    assert line.endswith("): start Redis (or RabbitMQ) or fix BROKER_URL")
    assert "starting" not in result.stdout  # no worker, no web server


def test_seed_without_a_kek_is_a_clear_error(worker_env):
    result = manage({**worker_env, "SIGNING_KEK": ""}, "seed", "--records", "5")
    assert result.returncode == 1
    assert "SIGNING_KEK is not set" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.django_db
def test_seed_loads_varied_printable_payloads_and_sealed_keys():
    out = io.StringIO()
    call_command("seed", records=2_000, keys=5, stdout=out)
    assert "seeded 2,000 records and 5 ed25519 keys" in out.getvalue()
    payloads = list(Record.objects.values_list("payload", flat=True))
    assert len({len(p) for p in payloads}) > 100
    assert all(p.isprintable() for p in payloads)
    assert any(not p.isascii() for p in payloads)
    assert any(len(c.encode()) == 4 for p in payloads for c in p)
    for key in SigningKey.objects.all():
        sealed = bytes(key.encrypted_private_key)
        assert b"PRIVATE KEY" not in sealed
        assert crypto.load_public_key(key.public_key_pem)


@pytest.mark.django_db
def test_seed_adding_keys_under_another_kek_is_a_clear_error_and_adds_nothing(monkeypatch):
    [key] = seed(records=3, keys=1)
    monkeypatch.setenv("SIGNING_KEK", sealing.generate_kek())
    with pytest.raises(CommandError, match=f"does not open the private key of {key.kid}"):
        call_command("seed", records=2, keys=1, append=True, stdout=io.StringIO())
    assert (Record.objects.count(), SigningKey.objects.count()) == (3, 1)


@pytest.mark.django_db
def test_seed_reset_starts_over_without_reusing_an_id():
    seed(records=10, keys=2)
    last_record = Record.objects.order_by("id").last().pk
    last_key = SigningKey.objects.order_by("id").last().pk
    call_command("seed", records=3, keys=1, reset=True, stdout=io.StringIO())
    assert Record.objects.count() == 3
    assert SigningKey.objects.count() == 1
    # A message from before the reset must never name a row of the new data.
    assert Record.objects.order_by("id").first().pk > last_record
    assert SigningKey.objects.get().pk > last_key


@pytest.mark.django_db
def test_seed_refuses_to_reset_under_an_active_run():
    seed(records=10, keys=2)
    plan_run(batch_size=5)
    with pytest.raises(CommandError, match="is still active"):
        call_command("seed", records=1, keys=0, reset=True)
    assert Record.objects.count() == 10


@pytest.mark.django_db
@pytest.mark.cast(records=10, keys=2, batch_size=5)
def test_cancel_releases_the_open_leases_of_the_active_run(cast):
    run = cast.run
    call_command("cancel", stdout=io.StringIO())
    run.refresh_from_db()
    assert run.status == SigningRun.Status.CANCELLED
    assert not KeyLease.objects.filter(released_at=None).exists()
    with pytest.raises(CommandError, match="no run is active"):
        call_command("cancel")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("command", "arguments"),
    [
        ("audit", ["--run", "999"]),
        ("cancel", ["999"]),
        ("stop", ["999"]),
        ("export", ["--run", "999", "--out", "{tmp}"]),
    ],
)
def test_every_command_names_an_unknown_run_in_the_same_words(command, arguments, tmp_path):
    arguments = [argument.format(tmp=tmp_path / "export") for argument in arguments]
    with pytest.raises(CommandError) as refused:
        call_command(command, *arguments)
    assert str(refused.value) == "no run has id 999"
    assert refused.value.returncode == 2  # bad input


@pytest.mark.django_db
def test_cancel_of_a_finished_run_says_it_is_not_active_and_what_it_is():
    run = SigningRun.objects.create(batch_size=5, max_in_flight=1, status="completed")
    with pytest.raises(CommandError, match=f"run {run.pk} is not active: it is completed"):
        call_command("cancel", str(run.pk))


@pytest.mark.parametrize("algorithm", crypto.ALGORITHMS)
@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
@pytest.mark.django_db
def test_a_signature_made_here_verifies_with_the_openssl_command_line(
    algorithm, tmp_path, sent, django_capture_on_commit_callbacks
):
    from signing.runs.actors import signing_triggered
    from signing.runs.dispatch import dispatch_batches

    # Given a record signed by the pipeline's own code path
    seed(records=3, keys=1, algorithm=algorithm)
    run = plan_run(batch_size=3)
    with django_capture_on_commit_callbacks(execute=True):
        dispatch_batches(run.pk)
    signing_triggered.fn(**sent.named("signing_triggered")[0].kwargs)
    assert Signature.objects.count() == 3

    # When it is exported and checked with the README's openssl command
    out = io.StringIO()
    record_id = Signature.objects.order_by("record_id").values_list("record_id", flat=True)[1]
    call_command("export_signature", record_id, out=tmp_path, stdout=out)
    command = out.getvalue().strip().splitlines()[-1]
    verified = subprocess.run(command.split(), capture_output=True, text=True, check=False)

    # Then openssl agrees, and disagrees once the input is changed by one byte
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Signature Verified Successfully" in verified.stdout
    data = (tmp_path / "input.bin").read_bytes()
    (tmp_path / "input.bin").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    tampered = subprocess.run(command.split(), capture_output=True, text=True, check=False)
    assert tampered.returncode != 0


@pytest.mark.django_db
def test_audit_json_lists_every_rule():
    out = io.StringIO()
    call_command("audit", json=True, stdout=out)
    report = json.loads(out.getvalue())
    assert report["passed"] is True
    assert {check["rule"] for check in report["checks"]} == {"1", "2", "3", "4", "5"}


@pytest.fixture
def database_one_migration_behind(worker_env) -> Iterator[dict[str, str]]:
    """A database of its own, migrated up to but not including the newest migration: code
    upgraded, `migrate` not run yet."""
    name = f"{connection.settings_dict['NAME']}_behind"
    env = {**worker_env, "SIGNING_DATABASE_NAME": name}
    created = manage(env, "ensure_db")
    assert created.returncode == 0, created.stderr
    _, before = newest_records_migration()
    for target in ([], ["records", before]):  # all, then the newest one undone
        migrated = manage(env, "migrate", *target, "-v", "0")
        assert migrated.returncode == 0, migrated.stderr
    yield env
    connection.close()
    with connection._nodb_cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def newest_records_migration() -> tuple[str, str]:
    """The records app's newest migration and the one before it (names)."""
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    newest = next(node for node in graph.leaf_nodes() if node[0] == "records")
    before = next(parent for parent in graph.node_map[newest].parents if parent[0] == "records")
    return newest[1], before[1]


@pytest.mark.parametrize("command", [["sign"], ["seed", "--records", "10", "--keys", "1"]])
def test_a_database_behind_the_code_is_refused_with_the_command_to_run(
    command, database_one_migration_behind
):
    result = manage(database_one_migration_behind, *command)
    assert result.returncode == 1
    assert f"lacks 1 migration(s) (records.{newest_records_migration()[0]})" in result.stderr
    assert "run `manage.py migrate` first" in result.stderr
    assert "Traceback" not in result.stderr


def test_chaos_help_lists_each_trial_and_no_empty_choice(worker_env):
    shown = manage(worker_env, "chaos", "--help")
    assert shown.returncode == 0, shown.stderr
    assert "[]" not in shown.stdout
    assert "{," not in shown.stdout
    listed = "".join(shown.stdout.split())  # argparse wraps the list, at hyphens too
    assert f"trialstorun(default:all):{','.join(TRIALS)}" in listed
    unknown = manage(worker_env, "chaos", "no-such-trial")
    assert unknown.returncode == 2
    assert "no trial 'no-such-trial': one of kill-one-worker," in unknown.stderr
