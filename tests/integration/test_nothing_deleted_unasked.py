"""No command deletes data unless told so in that invocation: `demo`, `bench` and `seed` refuse
a database that holds records, signatures or keys unless given --reset (or, for demo and
bench, a "yes" typed at a terminal), say what they would delete, and leave it intact."""

from __future__ import annotations

import os
import pty

import pytest

from devtools.sandbox import free_port
from keyring.models import SigningKey
from records.models import Record
from tests.conftest import seed
from tests.support import manage

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def held() -> tuple[list[int], list[str]]:
    """A database holding 30 records and 3 keys: what must survive."""
    seed(records=30, keys=3)
    return snapshot()


def snapshot() -> tuple[list[int], list[str]]:
    return (
        list(Record.objects.order_by("id").values_list("id", flat=True)),
        list(SigningKey.objects.order_by("id").values_list("kid", flat=True)),
    )


@pytest.mark.parametrize(
    "command",
    [
        ["demo", "--records", "5", "--keys", "1"],
        ["bench", "--records", "5", "--keys", "1", "--batch-sizes", "5"],
        ["loadtest", "--records", "5", "--keys", "1", "--rates", "0"],
        ["follow_latency", "--keys", "1", "--seconds", "1"],
    ],
    ids=["demo", "bench", "loadtest", "follow_latency"],
)
def test_demo_and_the_measuring_commands_refuse_a_database_holding_data_and_say_what_it_holds(
    command, held, worker_env
):
    result = manage(worker_env, *command)
    assert result.returncode == 1
    assert "this database holds 30 records, 0 signatures and 3 keys" in result.stderr
    assert "Give --reset to delete them" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot() == held


def test_seed_refuses_a_database_holding_data_unless_told_to_add_or_reset(held, worker_env):
    refused = manage(worker_env, "seed", "--records", "5", "--keys", "1")
    assert refused.returncode == 1
    assert "this database holds 30 records" in refused.stderr
    assert "--append to add to them, or --reset" in refused.stderr
    assert snapshot() == held

    added = manage(worker_env, "seed", "--records", "5", "--keys", "1", "--append")
    assert added.returncode == 0, added.stderr
    records, kids = snapshot()
    assert (records[:30], len(records)) == (held[0], 35)
    assert (kids[:3], len(kids)) == (held[1], 4)


def test_seed_reset_says_what_it_deleted(held, worker_env):
    result = manage(worker_env, "seed", "--records", "5", "--keys", "1", "--reset")
    assert result.returncode == 0, result.stderr
    assert "deleted 30 records, 0 signatures and 3 keys" in result.stdout
    assert Record.objects.count() == 5


def test_the_demo_asks_at_a_terminal_and_an_answer_other_than_yes_deletes_nothing(held, worker_env):
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"no\n")
        result = manage(worker_env, "demo", "--records", "5", stdin=terminal)
    finally:
        os.close(controller)
        os.close(terminal)
    assert result.returncode == 1
    assert "This database holds 30 records, 0 signatures and 3 keys" in result.stdout
    assert "nothing deleted" in result.stderr
    assert snapshot() == held


@pytest.mark.parametrize("problem", ["broker", "kek"])
def test_bench_checks_the_kek_and_the_broker_before_it_deletes_anything(problem, held, worker_env):
    broken = (
        {"BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
        if problem == "broker"
        else {"SIGNING_KEK": ""}
    )
    result = manage({**worker_env, **broken}, "bench", "--reset", "--records", "5")
    assert result.returncode == 1
    assert ("cannot reach the broker" if problem == "broker" else "SIGNING_KEK") in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot() == held
