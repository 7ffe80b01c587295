"""/healthz against the real database and broker, and against ones that do not answer."""

import copy

import pytest
from django.db import connection
from django.db.backends.postgresql.base import DatabaseWrapper
from dramatiq.brokers.redis import RedisBroker

from devtools.sandbox import free_port
from kernel import connectivity

pytestmark = pytest.mark.django_db


def test_healthz_answers_ok_without_login_when_both_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_healthz_names_a_broker_that_does_not_answer(client, monkeypatch):
    nobody = RedisBroker(url=f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setattr(connectivity.dramatiq, "get_broker", lambda: nobody)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unhealthy", "database": "ok", "broker": "ConnectionError"}


def test_healthz_names_a_database_that_does_not_answer(client, monkeypatch):
    settings = copy.deepcopy(connection.settings_dict)
    settings["PORT"] = str(free_port())
    unreachable = DatabaseWrapper(settings, alias="unreachable")
    monkeypatch.setattr(connectivity, "connection", unreachable)
    try:
        response = client.get("/healthz")
    finally:
        unreachable.close()
    assert response.status_code == 503
    assert response.json()["database"] == "OperationalError"
    assert response.json()["broker"] == "ok"


def test_healthz_only_answers_get(client):
    assert client.post("/healthz").status_code == 405
