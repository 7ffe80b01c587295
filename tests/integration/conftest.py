"""The named cast of the integration tests (tests/integration/factories.py builds it)."""

from __future__ import annotations

import pytest

from tests.integration.factories import Cast, cast_of


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "cast(records=20, keys=3, batch_size=5): the sizes of the `cast` fixture's set-up",
    )


@pytest.fixture
def cast(db, request: pytest.FixtureRequest) -> Cast:
    """20 records, 3 keys, a run in batches of 5 planned and its first batch leased: the
    usual starting point, with short names (`cast.run`, `cast.keys`, `cast.batch`,
    `cast.lease`). Other sizes: `@pytest.mark.cast(records=50, batch_size=50)` on the test
    or the module. With `django_db(transaction=True)` it is committed, for other threads."""
    sizes = request.node.get_closest_marker("cast")
    return cast_of(**(sizes.kwargs if sizes else {}))
