"""The compose stack's web service, as it runs there, in Chromium: gunicorn and WhiteNoise.

The command is the web service's own, read from `docker-compose config`; the static files
are collected as the Dockerfile collects them (its ENV, its RUN line); the environment is
the image's and the service's, pointed at the local test database and Redis, and only the
address it listens on is moved, through WEB_BIND. Every response the browser gets is
recorded: a static file missing is a 404 there.
"""

import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

import pytest
import yaml
from django.conf import settings

from devtools.sandbox import free_port
from signing.models import SigningRun
from tests.browser.conftest import SCREENSHOTS, log_in, start_a_run_and_watch_it_finish
from tests.conftest import ARTIFACTS, seed, wait_until
from tests.integration.test_compose import SECRETS, compose, needs_compose
from tests.integration.test_docker_context import dockerfile_env, dockerfile_instructions

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = str(Path(sys.executable).parent)

pytestmark = [pytest.mark.browser, pytest.mark.workers, needs_compose]


@dataclass(frozen=True)
class WebService:
    url: str
    log: Path  # gunicorn's output: its access log holds every response


def the_image_environment() -> dict[str, str]:
    """A bare environment with the image's ENV; this venv's python and gunicorn first on PATH."""
    return {"PATH": f"{VENV_BIN}:{os.environ['PATH']}", **dockerfile_env()}


@pytest.fixture
def collected_static(tmp_path: Path) -> Path:
    """STATIC_ROOT as the image has it: the Dockerfile's collectstatic, with its ENV."""
    static_root = tmp_path / "staticfiles"
    (run_line,) = [line for line in dockerfile_instructions("RUN") if "collectstatic" in line]
    done = subprocess.run(
        ["sh", "-c", run_line],
        cwd=ROOT,
        env={**the_image_environment(), "SIGNING_STATIC_ROOT": str(static_root)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (static_root / "staticfiles.json").exists()
    return static_root


@pytest.fixture
def web_service(worker_env, collected_static, request) -> Iterator[WebService]:
    """compose's web command, started as the stack starts it."""
    checked = compose("config", env={**os.environ, **SECRETS})
    assert checked.returncode == 0, checked.stderr
    web = yaml.safe_load(checked.stdout)["services"]["web"]
    command = web["command"]
    assert Path(command[0]).name == "gunicorn", command
    port = free_port()
    env = {
        **the_image_environment(),
        **{name: str(value) for name, value in web["environment"].items()},
        # the local servers instead of the stack's hosts db and redis
        "DATABASE_URL": worker_env["DATABASE_URL"],
        "BROKER_URL": settings.BROKER_URL,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "SIGNING_STATIC_ROOT": str(collected_static),
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
    }
    if "SIGNING_KEK" in env:
        env["SIGNING_KEK"] = os.environ["SIGNING_KEK"]  # the tests' KEK, that seeded the keys
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"gunicorn-{request.node.name}.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base_url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert server.poll() is None, f"gunicorn exited: {log_path.read_text()}"
        try:
            with urllib.request.urlopen(base_url + "/healthz", timeout=2) as response:
                return response.status == 200
        except (URLError, OSError):
            return False

    try:
        wait_until(healthy, timeout=60, every=0.2)
        yield WebService(url=base_url, log=log_path)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_the_stack_web_service_serves_the_dashboard_the_live_run_page_and_the_api_docs(
    browser, web_service, operator, start_workers
):
    from playwright.sync_api import expect

    seed(records=2_000, keys=10)
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    responses: list[tuple[int, str, dict[str, str]]] = []
    page.on("response", lambda r: responses.append((r.status, r.url, r.headers)))

    log_in(page, web_service.url)
    # The workers start once the page shows the run at 0%: the page must move by itself.
    start_a_run_and_watch_it_finish(
        page,
        batch_size=200,
        records="2,000",
        then=lambda: start_workers(processes=1, threads=4),
    )
    expect(page.locator("[data-testid=timeline] rect.lease")).to_have_count(10, timeout=10_000)
    page.screenshot(path=SCREENSHOTS / "gunicorn-run-finished.png", full_page=True)
    assert SigningRun.objects.get().status == "completed"

    page.goto(web_service.url + "/api/docs/")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible(timeout=30_000)
    page.screenshot(path=SCREENSHOTS / "gunicorn-swagger.png")
    page.goto(web_service.url + "/api/redoc/")
    expect(page.get_by_text("Record signing service API").first).to_be_visible(timeout=30_000)
    page.screenshot(path=SCREENSHOTS / "gunicorn-redoc.png")
    page.close()

    failed = [(status, url) for status, url, _ in responses if status >= 400]
    assert failed == []
    # The server's own log holds every response, those Chromium makes on its own too.
    access = re.findall(r'"[A-Z]+ (\S+) HTTP/[\d.]+" (\d{3}) ', web_service.log.read_text())
    assert ("/favicon.ico", "200") in access
    assert [(path, status) for path, status in access if int(status) >= 400] == []
    # The page polled for progress, and its script came from WhiteNoise: hashed, gzipped,
    # cacheable for good.
    assert sum("/progress.json" in url for _, url, _ in responses) >= 2
    scripts = {url: headers for _, url, headers in responses if "/static/signing/run." in url}
    ((script_url, script_headers),) = scripts.items()
    assert re.search(r"/static/signing/run\.[0-9a-f]{12}\.js$", script_url)
    assert script_headers.get("content-encoding") == "gzip"
    assert "immutable" in script_headers.get("cache-control", "")
    sidecar = [url for _, url, _ in responses if "/static/drf_spectacular_sidecar/" in url]
    assert any("swagger-ui-dist" in url for url in sidecar)
    assert any("redoc" in url for url in sidecar)


def test_the_access_log_leaves_query_strings_out(web_service):
    url = web_service.url + "/healthz?token=do-not-log-me"
    with urllib.request.urlopen(url, timeout=5) as got:
        assert got.status == 200
    wait_until(lambda: '"GET /healthz HTTP/1.1" 200' in web_service.log.read_text())
    assert "do-not-log-me" not in web_service.log.read_text()
