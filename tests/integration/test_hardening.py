"""Safe by default with DEBUG off: serving refused with the development key or open hosts,
TLS settings behind a proxy, password validators, login lockouts, expiring tokens, and error
pages that show no secret."""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from devtools.sandbox import free_port
from kernel.safety import development_server_address, is_loopback, refuse_unsafe_serving
from signing.management.commands.demo import ensure_admin_user
from tests.conftest import wait_until
from tests.support import MANAGE

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
# What a WSGI server does: load signing_site.wsgi, then serve `application` (here with the
# server runserver uses, which puts the whole environment into request.META).
SERVE_WSGI = (
    "import sys\n"
    "from django.core.servers.basehttp import run\n"
    "from signing_site.wsgi import application\n"
    "run('127.0.0.1', int(sys.argv[1]), application, threading=True)\n"
)


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The environment of a process on the project's own settings (not the tests'), with
    no .env read and nothing of the tests' SECRET_KEY unless given."""
    env_file = tmp_path / "empty.env"
    env_file.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))}
    env.update(
        DJANGO_SETTINGS_MODULE="signing_site.settings",
        SIGNING_ENV_FILE=str(env_file),
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres",
        BROKER_URL=os.environ["BROKER_URL"],
    )
    env.update(overrides)
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wsgi_server(port: int) -> list[str]:
    return [sys.executable, "-c", SERVE_WSGI, str(port)]


def runserver(port: int) -> list[str]:
    return [sys.executable, MANAGE, "runserver", "--noreload", "--skip-checks", f"127.0.0.1:{port}"]


@contextmanager
def serving(command: Callable[[int], list[str]], env: dict[str, str], log: Path) -> Iterator[int]:
    """A real server process on a free local port, stopped on the way out."""
    port = free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            command(port),
            env=env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: process.poll() is not None or answers(port), timeout=60)
        assert process.poll() is None, log.read_text()
        yield port
    finally:
        process.terminate()
        process.wait(timeout=15)


def get(port: int, path: str, *, method: str = "GET", body: str | None = None, **headers: str):
    """One request, redirects not followed; the response is read whole."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


def strong_key() -> str:
    return secrets.token_urlsafe(50)


# --- refusing to serve ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"SECRET_KEY": "dev-only-insecure-secret-key"}, "DJANGO_SECRET_KEY"),
        ({"SECRET_KEY": "django-insecure-" + "x1y2z3" * 10}, "DJANGO_SECRET_KEY"),
        ({"SECRET_KEY": "short-but-not-the-default"}, "DJANGO_SECRET_KEY"),
        ({"ALLOWED_HOSTS": ["*"]}, "DJANGO_ALLOWED_HOSTS"),
        ({"ALLOWED_HOSTS": []}, "DJANGO_ALLOWED_HOSTS"),
    ],
)
def test_serving_over_the_network_is_refused_with_the_variable_named(overrides, named):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(settings, "DEBUG", False)
        patch.setattr(settings, "ALLOWED_HOSTS", ["signing.example.org"])
        patch.setattr(settings, "SECRET_KEY", strong_key())
        refuse_unsafe_serving(address=None)  # fine as it is
        for name, value in overrides.items():
            patch.setattr(settings, name, value)
        for address in (None, "0.0.0.0:8000", "10.1.2.3:80", "signing.example.org:8000"):
            with pytest.raises(ImproperlyConfigured, match=named):
                refuse_unsafe_serving(address=address)
        for address in ("127.0.0.1:8000", "8000", "[::1]:8000", "localhost:8000", "127.0.0.2"):
            refuse_unsafe_serving(address=address)  # loopback: the development way
        patch.setattr(settings, "DEBUG", True)
        refuse_unsafe_serving(address=None)


def test_the_development_servers_address_is_read_with_their_own_parsers():
    assert development_server_address(["manage.py", "runserver"]) == "127.0.0.1:8000"
    assert development_server_address(["manage.py", "runserver", "--noreload", "0:9"]) == "0:9"
    assert development_server_address(["manage.py", "serve", "--threads", "2"]) == "127.0.0.1:8000"
    assert development_server_address(["manage.py", "serve", "0.0.0.0:80"]) == "0.0.0.0:80"
    assert development_server_address(["gunicorn", "signing_site.wsgi:application"]) is None
    assert development_server_address(["manage.py", "sign"]) is None
    assert not is_loopback("0:8000")  # runserver's shorthand for 0.0.0.0


def test_loading_the_wsgi_app_without_a_secret_key_fails_and_says_how_to_fix_it(tmp_path):
    load = [sys.executable, "-c", "import signing_site.wsgi"]
    refused = run(load, production_env(tmp_path))
    assert refused.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in refused.stderr
    assert "secrets.token_urlsafe(50)" in refused.stderr

    open_hosts = run(load, production_env(tmp_path, DJANGO_ALLOWED_HOSTS="*"))
    assert "DJANGO_ALLOWED_HOSTS is *" in open_hosts.stderr

    loaded = run(load, production_env(tmp_path, DJANGO_SECRET_KEY=strong_key()))
    assert loaded.returncode == 0, loaded.stderr


def test_serve_on_a_public_address_without_a_key_refuses_before_starting_workers(tmp_path):
    refused = run([sys.executable, MANAGE, "serve", "0.0.0.0:0"], production_env(tmp_path))
    assert refused.returncode == 1
    assert "Refusing to serve on 0.0.0.0:0" in refused.stderr
    assert "DJANGO_SECRET_KEY" in refused.stderr
    assert "starting" not in refused.stdout  # no worker was started


def test_runserver_on_a_public_address_refuses_and_on_loopback_serves_without_a_key(tmp_path):
    env = production_env(tmp_path)
    port = free_port()
    public = run(
        [sys.executable, MANAGE, "runserver", "--noreload", "--skip-checks", f"0.0.0.0:{port}"],
        env,
    )
    assert public.returncode != 0
    assert "Refusing to serve on 0.0.0.0" in public.stderr
    assert not answers(port)
    with serving(runserver, env, tmp_path / "runserver.log") as port:
        status, _, _ = get(port, "/accounts/login/")
        assert status == 200


def test_compose_requires_a_secret_key_and_answers_only_local_host_names_by_default():
    app = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["x-app"]["environment"]
    assert app["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?")  # no key, no start
    assert app["DJANGO_ALLOWED_HOSTS"] == "${DJANGO_ALLOWED_HOSTS:-localhost,127.0.0.1,[::1]}"


def test_manage_py_commands_run_without_a_secret_key(tmp_path):
    result = run([sys.executable, MANAGE, "showmigrations", "axes"], production_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "[" in result.stdout  # it read the database's migration table


# --- TLS behind a reverse proxy ---------------------------------------------------------------
def behind_the_tls_proxy(tmp_path: Path, *, hosts: str) -> dict[str, str]:
    return production_env(
        tmp_path,
        DJANGO_SECRET_KEY=strong_key(),
        DJANGO_ALLOWED_HOSTS=hosts,
        SIGNING_BEHIND_TLS_PROXY="1",
    )


def test_check_deploy_behind_the_tls_proxy_leaves_only_the_whole_domain_hsts_choices(tmp_path):
    env = behind_the_tls_proxy(tmp_path, hosts="signing.example.org")
    checked = run([sys.executable, MANAGE, "check", "--deploy"], env)
    assert set(re.findall(r"\((\w+\.\w+)\)", checked.stderr)) == {
        "security.W005",  # includeSubDomains: every subdomain then needs HTTPS
        "security.W021",  # preload: the same, into browsers, for good
    }
    env.update(SIGNING_HSTS_INCLUDE_SUBDOMAINS="1", SIGNING_HSTS_PRELOAD="1")
    clean = run([sys.executable, MANAGE, "check", "--deploy", "--fail-level", "WARNING"], env)
    assert clean.returncode == 0, clean.stderr
    assert "no issues" in clean.stdout

    without_tls = run(
        [sys.executable, MANAGE, "check", "--deploy"], {**env, "SIGNING_BEHIND_TLS_PROXY": "0"}
    )
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in without_tls.stderr


def test_behind_the_tls_proxy_plain_http_is_redirected_and_cookies_are_secure(tmp_path):
    env = behind_the_tls_proxy(tmp_path, hosts="signing.example.org,127.0.0.1")
    with serving(wsgi_server, env, tmp_path / "server.log") as port:
        host = {"Host": "signing.example.org"}
        status, headers, _ = get(port, "/accounts/login/", **host)
        assert status == 301
        assert headers["Location"] == "https://signing.example.org/accounts/login/"

        status, headers, page = get(
            port, "/accounts/login/", **host, **{"X-Forwarded-Proto": "https"}
        )
        assert status == 200, page
        assert headers["Strict-Transport-Security"] == "max-age=31536000"
        assert "csrftoken=" in headers["Set-Cookie"]
        assert "Secure" in headers["Set-Cookie"]

        # The container's health check speaks plain HTTP to the app itself
        status, _, _ = get(port, "/healthz", Host="127.0.0.1")
        assert status in (200, 503)  # answered, not redirected


# --- password validators ------------------------------------------------------------------
def test_the_four_standard_password_validators_are_on():
    assert [v["NAME"].rsplit(".", 1)[1] for v in settings.AUTH_PASSWORD_VALIDATORS] == [
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    ]
    for weak in ("pw", "password123", "12345678901", "admin"):
        with pytest.raises(ValidationError):
            validate_password(weak)


@pytest.mark.django_db
def test_the_demos_generated_admin_password_passes_the_validators(monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    said = ensure_admin_user()
    password = re.search(r"password (\S+) \(shown once\)", said)[1]
    admin = get_user_model().objects.get(username="admin")
    validate_password(password, admin)
    assert admin.check_password(password)


@pytest.mark.django_db
def test_the_demo_refuses_a_weak_superuser_password(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "12345678")
    with pytest.raises(CommandError, match="DJANGO_SUPERUSER_PASSWORD is too weak"):
        ensure_admin_user()
    assert not get_user_model().objects.exists()


# --- lockout after repeated failures --------------------------------------------------------
@pytest.fixture
def operator(db):
    return get_user_model().objects.create_user("operator", password=PASSWORD, is_staff=True)


def fail_logins(post, count: int) -> list[int]:
    return [post("operator", "wrong password").status_code for _ in range(count)]


def let_the_cooloff_pass() -> None:
    AccessAttempt.objects.update(
        attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    )


@pytest.mark.parametrize("login_url", ["/accounts/login/", "/admin/login/"])
def test_a_login_page_locks_out_after_the_failure_limit_until_the_cooloff_passes(
    operator, login_url
):
    client = Client()

    def post(username: str, password: str):
        return client.post(login_url, {"username": username, "password": password})

    limit = settings.AXES_FAILURE_LIMIT
    assert limit == 5
    assert fail_logins(post, limit - 1) == [200] * (limit - 1)  # the form again, with its error
    locked = post("operator", "wrong password")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert "15 minutes" in locked.content.decode()

    assert post("operator", PASSWORD).status_code == 429  # even the right password
    assert (
        not AccessAttempt.objects.filter(post_data__contains="password")
        .exclude(post_data__contains="password=*****")
        .exists()
    )  # the attempts recorded keep no password
    assert post("someone-else", "wrong password").status_code == 200  # per user…
    other_address = Client(REMOTE_ADDR="10.9.8.7")
    assert (
        other_address.post(login_url, {"username": "operator", "password": PASSWORD}).status_code
        == 302
    )  # …and address

    let_the_cooloff_pass()
    assert post("operator", PASSWORD).status_code == 302  # logged in


def test_the_token_endpoint_locks_out_with_429_in_the_apis_error_shape(operator):
    client = APIClient()

    def post(username: str, password: str):
        return client.post(
            "/api/auth/token/", {"username": username, "password": password}, format="json"
        )

    assert fail_logins(post, 4) == [400] * 4
    locked = post("operator", "wrong password")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.json()["errors"]["detail"][0]
    assert post("operator", PASSWORD).status_code == 429
    assert not Token.objects.exists()

    let_the_cooloff_pass()
    assert post("operator", PASSWORD).status_code == 200


def test_a_success_before_the_limit_starts_the_count_again(operator):
    client = Client()

    def post(username: str, password: str):
        return client.post("/accounts/login/", {"username": username, "password": password})

    fail_logins(post, 4)
    assert post("operator", PASSWORD).status_code == 302
    client.logout()
    assert fail_logins(post, 4) == [200] * 4  # four more, not locked at the first


def test_failures_counted_by_one_server_process_lock_out_in_another(
    transactional_db, worker_env, tmp_path
):
    """The count lives in the database: every gunicorn process sees the same."""
    get_user_model().objects.create_user("operator", password=PASSWORD)
    env = production_env(tmp_path, DJANGO_SECRET_KEY=strong_key(), **worker_env)
    with serving(wsgi_server, env, tmp_path / "server.log") as port:
        body = json.dumps({"username": "operator", "password": "wrong password"})
        statuses = [
            get(
                port,
                "/api/auth/token/",
                method="POST",
                body=body,
                **{"Content-Type": "application/json"},
            )[0]
            for _ in range(5)
        ]
    assert statuses == [400, 400, 400, 400, 429]
    here = APIClient().post(
        "/api/auth/token/", {"username": "operator", "password": PASSWORD}, format="json"
    )
    assert here.status_code == 429


# --- tokens that expire and die with a password change --------------------------------------
def issue_token(client: APIClient, password: str = PASSWORD) -> dict:
    response = client.post(
        "/api/auth/token/", {"username": "operator", "password": password}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_a_token_works_until_its_ttl_then_gets_401_and_a_new_one_is_issued(operator):
    client = APIClient()
    issued = issue_token(client)
    token = Token.objects.get(key=issued["token"])
    ttl = timedelta(hours=settings.SIGNING_TOKEN_TTL_HOURS)
    assert ttl == timedelta(hours=24)
    assert issued["expires_at"] == (token.created + ttl).isoformat().replace("+00:00", "Z")
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/keys/").status_code == 200
    assert issue_token(APIClient())["token"] == token.key  # still valid: the same one

    Token.objects.filter(pk=token.pk).update(created=timezone.now() - ttl)
    expired = client.get("/api/keys/")
    assert expired.status_code == 401
    assert "Token expired" in expired.json()["errors"]["detail"][0]
    assert expired["WWW-Authenticate"] == "Token"

    renewed = issue_token(APIClient())
    assert renewed["token"] != token.key
    assert not Token.objects.filter(key=token.key).exists()
    client.credentials(HTTP_AUTHORIZATION=f"Token {renewed['token']}")
    assert client.get("/api/keys/").status_code == 200


def test_a_password_change_kills_the_users_tokens_and_nothing_else_does(operator):
    client = APIClient()
    key = issue_token(client)["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    operator.first_name = "Ops"
    operator.save()  # a save that keeps the password
    Client().login(username="operator", password=PASSWORD)  # saves last_login
    assert client.get("/api/keys/").status_code == 200

    operator.set_password("another long passphrase")
    operator.save()
    assert client.get("/api/keys/").status_code == 401
    assert not Token.objects.filter(user=operator).exists()


def test_a_password_changed_on_the_admins_page_kills_the_tokens(operator):
    operator.is_superuser = True
    operator.save()
    key = issue_token(APIClient())["token"]
    admin = Client()
    admin.force_login(operator)
    changed = admin.post(
        f"/admin/auth/user/{operator.pk}/password/",
        {"password1": "a new long passphrase", "password2": "a new long passphrase"},
    )
    assert changed.status_code == 302, changed.content.decode()[:2000]
    assert not Token.objects.filter(key=key).exists()


# --- error pages and logs show no secret -----------------------------------------------------
DATABASE_PASSWORD = "pg-secret-pw-4711"
BROKER_PASSWORD = "broker-secret-pw-4711"


@pytest.mark.parametrize(("debug", "log_format"), [("1", "text"), ("0", "json")])
def test_a_500_shows_no_kek_no_database_or_broker_url_on_the_page_or_in_the_log(
    tmp_path, debug, log_format
):
    """A real server whose database is missing: the JWKS view fails on its first query,
    with the password in the connection's parameters, and the whole environment in
    request.META (the development server's WSGI handler puts it there)."""
    kek = os.environ["SIGNING_KEK"]
    secret_key = strong_key()
    database_url = f"postgres://postgres:{DATABASE_PASSWORD}@127.0.0.1:5432/hardening_no_such_db"
    broker_url = f"redis://:{BROKER_PASSWORD}@127.0.0.1:6379/13"
    env = production_env(
        tmp_path,
        DJANGO_DEBUG=debug,
        DJANGO_SECRET_KEY=secret_key,
        DATABASE_URL=database_url,
        BROKER_URL=broker_url,
        SIGNING_KEK=kek,
        SIGNING_LOG_FORMAT=log_format,
    )
    log = tmp_path / "server.log"
    with serving(wsgi_server, env, log) as port:
        status, _, page = get(port, "/.well-known/jwks.json")
        wait_until(lambda: "hardening_no_such_db" in log.read_text())  # the error is logged
    logged = log.read_text()
    assert status == 500
    if debug == "1":  # the technical page, with everything it shows
        assert "OperationalError" in page
        for name in ("SIGNING_KEK", "DJANGO_SECRET_KEY", "DATABASE_URL", "BROKER_URL"):
            assert name in page  # shown, with its value starred
        assert "conn_params" in page  # the frame whose variables held the password
    else:
        assert "Server Error (500)" in page
        error = next(line for line in logged.splitlines() if "Internal Server Error" in line)
        assert json.loads(error)["level"] == "ERROR"
        assert "hardening_no_such_db" in json.loads(error)["exception"]  # the traceback, read
    assert "Internal Server Error: /.well-known/jwks.json" in logged
    for secret in (kek, secret_key, DATABASE_PASSWORD, BROKER_PASSWORD, database_url, broker_url):
        assert secret not in page
        assert secret not in logged
