"""docker-compose.yml: valid, with health checks instead of the seed's start-up delays."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose not installed"
)


def compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run docker-compose on the project's file (only `config`: no engine is needed)."""
    return subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


@needs_compose
def test_docker_compose_config_is_valid_and_names_every_service():
    env = {**os.environ, "SIGNING_KEK": "x" * 44}
    checked = compose("config", "--services", env=env)
    assert checked.returncode == 0, checked.stderr
    services = set(checked.stdout.split())
    assert {"db", "redis", "web", "worker", "seeder", "migrate", "executor"} <= services


@needs_compose
def test_docker_compose_refuses_to_start_without_a_kek(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SIGNING_KEK"}
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    checked = compose("--env-file", str(empty_env_file), "config", "-q", env=env)
    assert checked.returncode != 0
    assert "SIGNING_KEK" in checked.stderr


def test_services_wait_on_health_not_on_sleeps():
    text = COMPOSE.read_text()
    assert "sleep" not in text
    assert text.count("condition: service_healthy") >= 3
    assert text.count("healthcheck:") == 4  # db, redis, rabbitmq, and web on /healthz
    assert "http://127.0.0.1:8000/healthz" in text
    # SIGTERM lets workers finish their batch (25 s) before Docker's SIGKILL (30 s)
    assert '"--worker-shutdown-timeout", "25000"' in text
    assert "stop_grace_period: 30s" in text
    assert text.count("restart: unless-stopped") == 5  # db, redis, rabbitmq, web, worker


@needs_compose
def test_the_rabbitmq_profile_adds_a_broker_and_workers_scale():
    env = {
        **os.environ,
        "SIGNING_KEK": "x" * 44,
        "BROKER_URL": "amqp://guest:guest@rabbitmq:5672/%2F",
    }
    checked = compose("--profile", "rabbitmq", "config", env=env)
    assert checked.returncode == 0, checked.stderr
    assert "rabbitmq:3" in checked.stdout
    assert "BROKER_URL: amqp://guest:guest@rabbitmq:5672/%2F" in checked.stdout
    assert "container_name" not in COMPOSE.read_text()  # --scale worker=N needs none


@needs_compose
def test_every_app_service_runs_on_the_servers_whatever_a_copied_env_file_says():
    # `COPY . .` takes the project's .env into the image, and on a laptop without servers
    # that .env says SIGNING_EMBEDDED=1: the environment must win over it.
    env = {**os.environ, "SIGNING_KEK": "x" * 44}
    checked = compose("config", env=env)
    assert checked.returncode == 0, checked.stderr
    services = yaml.safe_load(checked.stdout)["services"]
    apps = {name: service for name, service in services.items() if "build" in service}
    assert set(apps) == {"migrate", "seeder", "web", "worker", "executor"}
    assert {name: app["environment"]["SIGNING_EMBEDDED"] for name, app in apps.items()} == (
        dict.fromkeys(apps, "0")
    )
