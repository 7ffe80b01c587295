"""How a process picks the servers or embedded mode (kernel.backends), and keeps the
decision once a probe made it: manage.py probes and records (`decide_once`) before settings
read the decision (`choose`), which never probes."""

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dotenv import dotenv_values

from devtools.sandbox import free_port
from kernel import backends
from kernel.backends import (
    DEFAULT_BROKER_URL,
    DEFAULT_DATABASE_URL,
    Backends,
    answers,
    choose,
    decide_once,
    probe,
    record,
)

BASE = Path("/srv/signing")
NOBODY = f"postgres://postgres@127.0.0.1:{free_port()}/signing"


def test_signing_embedded_1_forces_embedded_mode_whatever_is_configured():
    chosen = choose({"SIGNING_EMBEDDED": "1", "DATABASE_URL": DEFAULT_DATABASE_URL}, base_dir=BASE)
    assert chosen.embedded
    assert chosen.reason == "SIGNING_EMBEDDED=1 in the environment"
    assert chosen.sqlite_path == BASE / ".embedded" / "signing.sqlite3"


def test_an_explicit_url_is_used_even_when_nothing_answers_there():
    chosen = choose({"DATABASE_URL": NOBODY}, base_dir=BASE)
    assert not answers(NOBODY)
    assert not chosen.embedded
    assert not chosen.probed
    assert chosen.database_url == NOBODY
    assert chosen.broker_url == DEFAULT_BROKER_URL


def test_signing_embedded_0_never_falls_back():
    assert not choose({"SIGNING_EMBEDDED": "0"}, base_dir=BASE).embedded


def test_the_default_servers_are_used_when_both_answer():
    # PostgreSQL and Redis run on every machine the suite runs on.
    assert answers(DEFAULT_DATABASE_URL)
    assert answers(DEFAULT_BROKER_URL)
    chosen = probe(choose({}, base_dir=BASE))
    assert not chosen.embedded
    assert chosen.probed
    assert (chosen.database_url, chosen.broker_url) == (DEFAULT_DATABASE_URL, DEFAULT_BROKER_URL)


def test_the_embedded_database_can_be_placed_elsewhere():
    chosen = choose({"SIGNING_EMBEDDED": "1", "SIGNING_EMBEDDED_DB": "/tmp/x.db"}, base_dir=BASE)
    assert chosen.sqlite_path == Path("/tmp/x.db")


@pytest.mark.parametrize("value", ["yes", "true", "2"])
def test_an_unknown_signing_embedded_value_is_refused(value):
    with pytest.raises(SystemExit, match="SIGNING_EMBEDDED must be 0 or 1"):
        choose({"SIGNING_EMBEDDED": value}, base_dir=BASE)


def test_a_sqlite_database_url_is_refused_with_the_way_to_embedded_mode():
    with pytest.raises(SystemExit, match="set SIGNING_EMBEDDED=1"):
        choose({"DATABASE_URL": "sqlite:///signing.db"}, base_dir=BASE)


# --- Decided once: nothing configured, manage.py probes and `record` writes it down ---

NOW = datetime(2026, 11, 27, 15, 46, tzinfo=UTC)
NONE_SET = "neither SIGNING_EMBEDDED, DATABASE_URL nor BROKER_URL is set"


class Probes:
    """Stands in for the TCP probe: the default servers answer or not; each probe is kept."""

    def __init__(self) -> None:
        self.servers_answer = False
        self.urls: list[str] = []

    def __call__(self, url: str, **_: object) -> bool:
        self.urls.append(url)
        return self.servers_answer


@pytest.fixture
def probes(monkeypatch) -> Probes:
    probes = Probes()
    monkeypatch.setattr(backends, "answers", probes)
    return probes


def start_a_command(
    probes: Probes, env_file: Path, environ: dict[str, str] | None = None
) -> Backends:
    """Like `manage.py seed`: probe and record when nothing decides (`decide_once`), then
    read the decision as settings do, which must never probe and must agree. Returns what
    the command announces: the probe's decision if it probed, else settings' one."""
    environ = {**(environ or {}), "SIGNING_ENV_FILE": str(env_file)}
    decided = decide_once(environ, base_dir=BASE, by="manage.py seed", now=NOW)
    probed = list(probes.urls)
    in_settings = choose(
        environ, base_dir=BASE, env_file=env_file, env_file_values=dotenv_values(env_file)
    )
    assert probes.urls == probed
    assert not in_settings.undecided
    if decided is None:
        return in_settings
    assert in_settings.embedded == decided.embedded
    return decided


def test_with_nothing_configured_settings_assume_the_servers_and_never_probe(probes, tmp_path):
    chosen = choose({}, base_dir=BASE, env_file=tmp_path / ".env")

    assert probes.urls == []
    assert not chosen.embedded
    assert chosen.undecided
    assert (chosen.database_url, chosen.broker_url) == (DEFAULT_DATABASE_URL, DEFAULT_BROKER_URL)
    assert chosen.announcement() == ""
    assert not (tmp_path / ".env").exists()


def test_the_probe_decides_and_asks_to_be_recorded(probes, tmp_path):
    chosen = probe(choose({}, base_dir=BASE, env_file=tmp_path / ".env"))

    assert probes.urls == [DEFAULT_DATABASE_URL, DEFAULT_BROKER_URL]
    assert chosen.embedded
    assert chosen.probed
    assert not chosen.undecided
    assert chosen.reason == (
        "PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379 are not reachable and " + NONE_SET
    )
    assert not (tmp_path / ".env").exists()  # probe only decides: decide_once records


def test_the_decision_is_written_to_a_new_env_file_that_only_its_owner_reads(probes, tmp_path):
    env_file = tmp_path / ".env"

    chosen = start_a_command(probes, env_file)

    assert env_file.read_text() == (
        "# decided by manage.py seed on 2026-11-27 15:46 UTC: PostgreSQL at 127.0.0.1:5432 and "
        f"Redis at 127.0.0.1:6379 are not reachable and {NONE_SET}\n"
        "SIGNING_EMBEDDED=1\n"
    )
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert chosen.embedded
    assert chosen.reason.endswith(f"; recorded as SIGNING_EMBEDDED=1 in {env_file}")


def test_the_decision_is_appended_after_the_lines_already_there(probes, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("SIGNING_KEK=kept\n# a comment of the user's\nSIGNING_LOG_LEVEL=INFO")
    probes.servers_answer = True

    chosen = start_a_command(probes, env_file)

    assert not chosen.embedded
    assert env_file.read_text() == (
        "SIGNING_KEK=kept\n# a comment of the user's\nSIGNING_LOG_LEVEL=INFO\n"
        "# decided by manage.py seed on 2026-11-27 15:46 UTC: PostgreSQL at 127.0.0.1:5432 and "
        "Redis at 127.0.0.1:6379 answered\n"
        "SIGNING_EMBEDDED=0\n"
    )


def test_a_later_process_reads_the_recorded_decision_and_never_probes(probes, tmp_path):
    # Given a first process that found no server and recorded embedded mode
    env_file = tmp_path / ".env"
    start_a_command(probes, env_file)
    recorded = env_file.read_text()

    # When the servers answer now, and another process starts
    probes.servers_answer = True
    probes.urls.clear()
    later = start_a_command(probes, env_file)

    # Then it stays embedded, says why, and neither probes nor writes
    assert later.embedded
    assert not later.probed
    assert later.reason == f"SIGNING_EMBEDDED=1 in {env_file}"
    assert probes.urls == []
    assert env_file.read_text() == recorded


def test_once_the_servers_are_recorded_a_silent_server_is_never_a_switch_to_sqlite(
    probes, tmp_path
):
    # Given a first process that found both servers and recorded them
    env_file = tmp_path / ".env"
    probes.servers_answer = True
    assert not start_a_command(probes, env_file).embedded

    # When Redis restarts (nothing answers) just as `manage.py keys disable` starts
    probes.servers_answer = False
    probes.urls.clear()
    later = start_a_command(probes, env_file)

    # Then it uses the servers all the same (and fails there if they stay down)
    assert not later.embedded
    assert (later.database_url, later.broker_url) == (DEFAULT_DATABASE_URL, DEFAULT_BROKER_URL)
    assert probes.urls == []


def test_a_decision_recorded_meanwhile_by_another_process_is_the_one_kept(probes, tmp_path):
    # Given this process probed and found nothing, but another one recorded the servers first
    env_file = tmp_path / ".env"
    chosen = probe(choose({}, base_dir=BASE, env_file=env_file))
    env_file.write_text("# decided by manage.py serve on …: … answered\nSIGNING_EMBEDDED=0\n")

    # When this process records its decision
    kept = record(chosen, env_file, by="manage.py seed", now=NOW)

    # Then it takes the one already written, and writes nothing
    assert not kept.embedded
    assert kept.reason == f"SIGNING_EMBEDDED=0 in {env_file}"
    assert env_file.read_text().count("SIGNING_EMBEDDED") == 1


def test_a_decision_that_cannot_be_written_holds_for_this_process_only(probes, tmp_path, capsys):
    env_file = tmp_path / "no-such-folder" / ".env"
    environ = {"SIGNING_ENV_FILE": str(env_file)}

    chosen = decide_once(environ, base_dir=BASE, by="manage.py seed", now=NOW)

    assert chosen.embedded
    assert chosen.reason.endswith("; not recorded: for this process only")
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"could not record SIGNING_EMBEDDED=1 in {env_file} (")
    assert not env_file.exists()
    # Settings, and the workers the command starts, read it from the environment instead
    assert environ["SIGNING_EMBEDDED"] == "1"
    assert choose(environ, base_dir=BASE, env_file=env_file).embedded


def test_the_environment_wins_over_the_env_file_and_says_where_the_setting_is(probes, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("SIGNING_EMBEDDED=0\n")

    from_environment = start_a_command(probes, env_file, {"SIGNING_EMBEDDED": "1"})
    env_file.write_text("SIGNING_EMBEDDED=1\n")
    from_file = start_a_command(probes, env_file)
    configured = start_a_command(probes, env_file, {"BROKER_URL": DEFAULT_BROKER_URL})

    assert from_environment.reason == "SIGNING_EMBEDDED=1 in the environment"
    assert from_file.reason == f"SIGNING_EMBEDDED=1 in {env_file}"
    assert from_file.embedded
    assert configured.embedded  # SIGNING_EMBEDDED=1 forces it, wherever it is set
    assert probes.urls == []


def test_an_empty_value_in_the_environment_leaves_the_recorded_decision_in_force(probes, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("SIGNING_EMBEDDED=1\n")

    chosen = start_a_command(probes, env_file, {"SIGNING_EMBEDDED": "", "DATABASE_URL": " "})

    assert chosen.embedded
    assert probes.urls == []


def test_a_configured_process_never_probes_so_never_writes(probes, tmp_path):
    # tests/settings.py sets BROKER_URL; docker-compose.yml sets both URLs
    for configured in ({"BROKER_URL": "redis://127.0.0.1:6379/15"}, {"DATABASE_URL": NOBODY}):
        assert not start_a_command(probes, tmp_path / ".env", configured).probed
    assert probes.urls == []
    assert not (tmp_path / ".env").exists()


def test_what_a_command_says_on_stderr(tmp_path):
    embedded = choose({"SIGNING_EMBEDDED": "1"}, base_dir=BASE)
    probed = Backends(embedded=False, reason="both answered; recorded", probed=True)

    assert embedded.announcement() == (
        "embedded mode (SIGNING_EMBEDDED=1 in the environment): SQLite at "
        "/srv/signing/.embedded/signing.sqlite3, in-process broker"
    )
    assert probed.announcement() == "the servers (both answered; recorded)"
    assert choose({"DATABASE_URL": NOBODY}, base_dir=BASE).announcement() == ""


# What a later command must be given to open the data a process opened (`to_reopen`: the
# demo's summary puts it before `make serve`). base_dir is tmp_path, whose .env is the file.


def reopen(tmp_path: Path, env_file: str, **given: str) -> backends.Reopening:
    (tmp_path / ".env").write_text(env_file)
    return backends.to_reopen(given, base_dir=tmp_path)


def test_embedded_mode_given_once_is_given_again_when_the_env_file_chose_the_servers(tmp_path):
    reopening = reopen(tmp_path, "SIGNING_EMBEDDED=0\n", SIGNING_EMBEDDED="1")
    assert reopening.prefix() == "SIGNING_EMBEDDED=1 "
    assert reopening.caveat() == ""


def test_embedded_mode_given_once_is_given_again_when_nothing_is_recorded(tmp_path):
    assert reopen(tmp_path, "", SIGNING_EMBEDDED="1").prefix() == "SIGNING_EMBEDDED=1 "


def test_a_mode_the_env_file_records_needs_nothing(tmp_path):
    assert reopen(tmp_path, "SIGNING_EMBEDDED=1\n").prefix() == ""
    assert reopen(tmp_path, "SIGNING_EMBEDDED=1\n", SIGNING_EMBEDDED="1").prefix() == ""
    assert reopen(tmp_path, "SIGNING_EMBEDDED=0\n", SIGNING_DATABASE_NAME="x").prefix() == ""


def test_the_servers_given_once_over_a_recorded_embedded_mode_are_given_again(tmp_path):
    reopening = reopen(tmp_path, "SIGNING_EMBEDDED=1\n", SIGNING_EMBEDDED="0")
    assert reopening.prefix() == "SIGNING_EMBEDDED=0 "


def test_another_embedded_file_and_env_file_are_given_again_quoted(tmp_path):
    (tmp_path / "my env").write_text("SIGNING_EMBEDDED=1\n")
    reopening = backends.to_reopen(
        {"SIGNING_ENV_FILE": str(tmp_path / "my env"), "SIGNING_EMBEDDED_DB": "/tmp/x y.db"},
        base_dir=tmp_path,
    )
    assert reopening.prefix() == (
        f"SIGNING_ENV_FILE='{tmp_path / 'my env'}' SIGNING_EMBEDDED_DB='/tmp/x y.db' "
    )


def test_a_database_url_given_once_is_shown_unless_it_holds_a_password(tmp_path):
    plain = "postgres://postgres@127.0.0.1:5432/other"
    assert reopen(tmp_path, "SIGNING_EMBEDDED=0\n", DATABASE_URL=plain).prefix() == (
        f"DATABASE_URL={plain} "
    )
    secret = reopen(
        tmp_path, "SIGNING_EMBEDDED=0\n", DATABASE_URL="postgres://app:s3cret@db:5432/other"
    )
    assert secret.prefix() == ""
    assert secret.caveat() == " with the DATABASE_URL this one was given"


@pytest.mark.parametrize(
    "url",
    [
        "postgres://app@db:5432/other?password=s3cret",
        "postgres://app@db:5432/other?sslmode=require&sslpassword=s3cret",
        "postgres://app@db:5432/other?sslmode=verify-full",  # any query string: a driver's
        "postgres://app@db:5432/other;password=s3cret",
        "postgres://app@db:5432/other#s3cret",
        "postgres://app:@db:5432/other",  # an empty password is still a password part
        "postgres://app@db:5432/Password-s3cret",
        "postgres://app@db:99999999/other",  # does not parse (its port): never printed
    ],
)
def test_a_database_url_that_may_hold_a_password_anywhere_is_named_never_shown(tmp_path, url):
    secret = reopen(tmp_path, "SIGNING_EMBEDDED=0\n", DATABASE_URL=url)
    assert secret.prefix() == ""
    assert secret.caveat() == " with the DATABASE_URL this one was given"


def test_a_kek_given_once_is_named_never_shown(tmp_path):
    reopening = reopen(tmp_path, "SIGNING_EMBEDDED=0\nSIGNING_KEK=in-file\n", SIGNING_KEK="k3k")
    assert reopening.prefix() == ""
    assert reopening.caveat() == " with the SIGNING_KEK this one was given"
    assert reopen(tmp_path, "SIGNING_KEK=k3k\n", SIGNING_KEK="k3k").caveat() == ""
