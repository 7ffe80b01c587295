"""How a process picks the servers or embedded mode (signing_site.backends.choose)."""

from pathlib import Path

import pytest

from signing.sandbox import free_port
from signing_site.backends import DEFAULT_BROKER_URL, DEFAULT_DATABASE_URL, answers, choose

BASE = Path("/srv/signing")
NOBODY = f"postgres://postgres@127.0.0.1:{free_port()}/signing"


def test_signing_embedded_1_forces_embedded_mode_whatever_is_configured():
    chosen = choose({"SIGNING_EMBEDDED": "1", "DATABASE_URL": DEFAULT_DATABASE_URL}, base_dir=BASE)
    assert chosen.embedded
    assert chosen.reason == "SIGNING_EMBEDDED=1 forces it"
    assert chosen.sqlite_path == BASE / ".embedded" / "signing.sqlite3"


def test_an_explicit_url_is_used_even_when_nothing_answers_there():
    chosen = choose({"DATABASE_URL": NOBODY}, base_dir=BASE)
    assert not answers(NOBODY)
    assert not chosen.embedded
    assert chosen.database_url == NOBODY
    assert chosen.broker_url == DEFAULT_BROKER_URL


def test_signing_embedded_0_never_falls_back():
    assert not choose({"SIGNING_EMBEDDED": "0"}, base_dir=BASE).embedded


def test_the_default_servers_are_used_when_both_answer():
    # PostgreSQL and Redis run on every machine the suite runs on.
    assert answers(DEFAULT_DATABASE_URL)
    assert answers(DEFAULT_BROKER_URL)
    chosen = choose({}, base_dir=BASE)
    assert not chosen.embedded
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
