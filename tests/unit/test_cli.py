"""kernel.cli: the one-line message manage.py prints for a database it cannot use."""


def test_a_database_lacking_a_migration_is_one_line_saying_migrate() -> None:
    import psycopg
    from django.db import ProgrammingError

    from kernel.cli import database_problem

    error = ProgrammingError("column keyring_signingkey.retired_at does not exist\nLINE 1: …")
    error.__cause__ = psycopg.errors.UndefinedColumn("column … does not exist")
    message = database_problem(error)
    assert message is not None
    assert message.endswith(
        "lacks a migration this code needs (column keyring_signingkey.retired_at does not "
        "exist): run `manage.py migrate` first"
    )
    assert database_problem(ProgrammingError("syntax error at or near")) is None
    assert database_problem(ValueError("connection failed")) is None
