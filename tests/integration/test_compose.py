"""docker-compose.yml: valid, with health checks instead of the seed's start-up delays, and
brokers that ask for a password."""

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
RABBITMQ = ROOT / "docker-compose.rabbitmq.yml"
# What `make secrets` writes to .env, as compose would read it.
SECRETS = {
    "SIGNING_KEK": "x" * 44,
    "DJANGO_SECRET_KEY": "k7Qz-x" * 9,  # as random-looking as Django asks (W009)
    "REDIS_PASSWORD": "r" * 64,
    "RABBITMQ_PASSWORD": "q" * 64,
    "POSTGRES_PASSWORD": "s" * 48,
    "SIGNING_DB_OWNER_PASSWORD": "o" * 48,
    "SIGNING_DB_APP_PASSWORD": "a" * 48,
}
needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose not installed"
)


def compose(
    *args: str, env: dict[str, str], files: tuple[Path, ...] = (COMPOSE,)
) -> subprocess.CompletedProcess:
    """Run docker-compose on the project's file (only `config`: no engine is needed)."""
    return subprocess.run(
        ["docker-compose", *(arg for file in files for arg in ("-f", str(file))), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


@needs_compose
def test_docker_compose_config_is_valid_and_names_every_service():
    env = {**os.environ, **SECRETS}
    checked = compose("config", "--services", env=env)
    assert checked.returncode == 0, checked.stderr
    services = set(checked.stdout.split())
    assert {"db", "redis", "web", "worker", "seeder", "migrate", "executor"} <= services


@needs_compose
@pytest.mark.parametrize("missing", sorted(set(SECRETS) - {"RABBITMQ_PASSWORD"}))
def test_docker_compose_refuses_to_start_without_a_secret(tmp_path, missing):
    env = {**{k: v for k, v in os.environ.items() if k not in SECRETS}, **SECRETS}
    del env[missing]
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    checked = compose("--env-file", str(empty_env_file), "config", "-q", env=env)
    assert checked.returncode != 0
    assert missing in checked.stderr


@needs_compose
def test_the_rabbitmq_file_refuses_to_start_without_its_password(tmp_path):
    env = {**os.environ, **SECRETS}
    del env["RABBITMQ_PASSWORD"]
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    checked = compose(
        "--env-file", str(empty_env_file), "config", "-q", env=env, files=(COMPOSE, RABBITMQ)
    )
    assert checked.returncode != 0
    assert "RABBITMQ_PASSWORD" in checked.stderr


def test_services_wait_on_health_not_on_sleeps():
    text = COMPOSE.read_text()
    assert "sleep" not in text
    assert text.count("condition: service_healthy") >= 3
    assert text.count("healthcheck:") == 3  # db, redis, and web on /healthz
    assert "http://127.0.0.1:8000/healthz" in text
    # SIGTERM lets workers finish their batch (25 s) before Docker's SIGKILL (30 s)
    assert '"--worker-shutdown-timeout", "25000"' in text
    assert "stop_grace_period: 30s" in text
    assert text.count("restart: unless-stopped") == 4  # db, redis, web, worker
    rabbitmq = RABBITMQ.read_text()
    assert "sleep" not in rabbitmq
    assert rabbitmq.count("healthcheck:") == 1
    assert rabbitmq.count("condition: service_healthy") == 1


@needs_compose
def test_the_rabbitmq_file_adds_a_broker_with_its_own_user_and_workers_scale():
    env = {**os.environ, **SECRETS}
    env.pop("RABBITMQ_USER", None)
    checked = compose("config", env=env, files=(COMPOSE, RABBITMQ))
    assert checked.returncode == 0, checked.stderr
    services = yaml.safe_load(checked.stdout)["services"]
    assert services["rabbitmq"]["image"] == "rabbitmq:3"
    assert services["rabbitmq"]["environment"] == {
        "RABBITMQ_DEFAULT_USER": "signing",
        "RABBITMQ_DEFAULT_PASS": SECRETS["RABBITMQ_PASSWORD"],
    }
    url = f"amqp://signing:{SECRETS['RABBITMQ_PASSWORD']}@rabbitmq:5672/%2F"
    apps = {name: service for name, service in services.items() if "build" in service}
    assert {name: app["environment"]["BROKER_URL"] for name, app in apps.items()} == (
        dict.fromkeys(apps, url)
    )
    # what sends or takes messages waits for the broker; migrate and the seeder need none
    assert {name for name, app in apps.items() if "rabbitmq" in app.get("depends_on", {})} == {
        "web",
        "worker",
        "executor",
    }
    assert "guest" not in checked.stdout
    assert "container_name" not in COMPOSE.read_text() + RABBITMQ.read_text()  # --scale worker=N


@needs_compose
def test_every_app_service_runs_on_the_servers_whatever_a_copied_env_file_says():
    # `COPY . .` takes the project's .env into the image, and on a laptop without servers
    # that .env says SIGNING_EMBEDDED=1: the environment must win over it.
    env = {**os.environ, **SECRETS}
    checked = compose("config", env=env)
    assert checked.returncode == 0, checked.stderr
    services = yaml.safe_load(checked.stdout)["services"]
    apps = {name: service for name, service in services.items() if "build" in service}
    assert set(apps) == {"migrate", "seeder", "web", "worker", "executor"}
    assert {name: app["environment"]["SIGNING_EMBEDDED"] for name, app in apps.items()} == (
        dict.fromkeys(apps, "0")
    )


def rendered_services(env: dict[str, str]) -> dict:
    checked = compose("config", env={**os.environ, **env})
    assert checked.returncode == 0, checked.stderr
    return yaml.safe_load(checked.stdout)["services"]


@needs_compose
def test_redis_asks_for_the_password_and_every_app_service_gives_it():
    services = rendered_services(SECRETS)
    password = SECRETS["REDIS_PASSWORD"]
    redis = services["redis"]
    assert redis["command"][-2:] == ["--requirepass", password]
    assert redis["environment"] == {"REDISCLI_AUTH": password}  # for the health check
    assert password not in str(redis["healthcheck"])
    apps = {name: service for name, service in services.items() if "build" in service}
    assert {name: app["environment"]["BROKER_URL"] for name, app in apps.items()} == (
        dict.fromkeys(apps, f"redis://:{password}@redis:6379/0")
    )


def without_network_works() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False)
    return probe.returncode == 0


# Starts the redis service's command, as compose renders it, in a network namespace of its
# own (so its default port is free and nothing else is reached), then runs the service's
# health check with and without the service's environment; prints both exit codes.
REDIS_IN_ITS_OWN_NETWORK = """
ip link set lo up
"$@" --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" --dir "$DIR"
deadline=$((SECONDS + 20))
until redis-cli -a "$REDISCLI_AUTH" --no-auth-warning ping 2>/dev/null | grep -qx PONG; do
    [ "$SECONDS" -lt "$deadline" ] || { cat "$DIR/redis.log"; exit 99; }
    sleep 0.05
done
sh -c "$HEALTHCHECK"; with=$?
env -u REDISCLI_AUTH sh -c "$HEALTHCHECK"; without=$?
echo "with=$with without=$without unauthenticated=$(env -u REDISCLI_AUTH redis-cli ping)"
kill "$(cat "$DIR/redis.pid")"
"""


@needs_compose
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
@pytest.mark.skipif(not without_network_works(), reason="cannot unshare the network here")
def test_the_redis_service_refuses_strangers_and_its_health_check_authenticates(tmp_path):
    redis = rendered_services(SECRETS)["redis"]
    kind, healthcheck = redis["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    ran = subprocess.run(
        ["unshare", "--net", "bash", "-c", REDIS_IN_ITS_OWN_NETWORK, "redis", *redis["command"]],
        env={
            "PATH": os.environ["PATH"],
            "DIR": str(tmp_path),
            "HEALTHCHECK": healthcheck,
            **redis["environment"],
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "with=0 without=1 unauthenticated=NOAUTH" in ran.stdout


@needs_compose
@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_secrets_writes_every_secret_compose_needs_once(tmp_path):
    env_file = tmp_path / ".env"
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}

    def make_secrets() -> None:
        made = subprocess.run(
            ["make", "-s", "secrets"],
            cwd=ROOT,
            env={**env, "SIGNING_ENV_FILE": str(env_file)},
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert made.returncode == 0, made.stdout + made.stderr

    make_secrets()
    written = env_file.read_text()
    assert set(dotenv_values(env_file)) == set(SECRETS)
    assert env_file.stat().st_mode & 0o777 == 0o600
    make_secrets()  # a second time keeps every value
    assert env_file.read_text() == written
    checked = compose(
        "--env-file", str(env_file), "config", "-q", env=env, files=(COMPOSE, RABBITMQ)
    )
    assert checked.returncode == 0, checked.stderr


def app_services() -> dict[str, dict]:
    checked = compose("config", env={**os.environ, **SECRETS})
    assert checked.returncode == 0, checked.stderr
    services = yaml.safe_load(checked.stdout)["services"]
    return {name: service for name, service in services.items() if "build" in service}


@needs_compose
def test_migrate_connects_as_the_owner_and_every_other_service_as_the_app_role():
    users = {
        name: urlparse(app["environment"]["DATABASE_URL"]).username
        for name, app in app_services().items()
    }
    assert users == {
        "migrate": "signing_owner",
        "seeder": "signing_app",
        "web": "signing_app",
        "worker": "signing_app",
        "executor": "signing_app",
    }


@needs_compose
def test_only_the_worker_and_the_seeder_hold_the_kek():
    holders = {name for name, app in app_services().items() if "SIGNING_KEK" in app["environment"]}
    assert holders == {"worker", "seeder"}


@needs_compose
def test_the_database_makes_the_two_roles_on_its_first_start():
    checked = compose("config", env={**os.environ, **SECRETS})
    db = yaml.safe_load(checked.stdout)["services"]["db"]
    init = ROOT / "docker" / "postgres-init"
    assert f"{init}:/docker-entrypoint-initdb.d:ro" in db["volumes"]
    assert os.access(init / "10-signing-roles.sh", os.X_OK)
    assert "POSTGRES_DB" not in db["environment"]  # the init script makes it, owned by the owner
