"""Nothing secret reaches the image: not in the build context, not read by the container.

The context is listed as Docker lists it (tests.dockerignore ports Docker's matcher), from a
copy of this checkout in which a developer's secrets have been left lying around.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from keyring.sealing import generate_kek
from tests.dockerignore import context_files

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def dockerfile_instructions(name: str) -> list[str]:
    """The arguments of every `name` instruction in the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [
        line.split(None, 1)[1]
        for line in text.splitlines()
        if line.split(None, 1)[:1] == [name] and len(line.split(None, 1)) == 2
    ]


def dockerfile_env() -> dict[str, str]:
    """What the image's ENV instructions set (the `ENV a=b c=d` form)."""
    return dict(
        pair.split("=", 1) for args in dockerfile_instructions("ENV") for pair in args.split()
    )


@pytest.fixture
def checkout_with_secrets(tmp_path: Path) -> tuple[Path, str]:
    """A copy of this checkout's files (committed or not) plus what a developer's tree holds:
    a .env with the KEK, embedded mode's files, a virtualenv, logs, caches. Every planted
    file carries the KEK, so a test can look for it in the context by content too."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    copy = tmp_path / "checkout"
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    kek = generate_kek()
    planted = {
        ".env": f"SIGNING_KEK={kek}\nSIGNING_EMBEDDED=1\nDJANGO_DEBUG=1\n",
        ".env.production": f"SIGNING_KEK={kek}\n",
        ".embedded/signing.sqlite3": f"sealed keys under {kek}",
        ".embedded/signing.sqlite3-wal": kek,
        "signing/.embedded/stray.sqlite3": kek,
        "records/stray.sqlite3": kek,
        ".git/config": f"[secret]\n\tkek = {kek}\n",
        ".venv/lib/site.py": kek,
        ".demo/workers.log": kek,
        "test-artifacts/workers-test.log": kek,
        "staticfiles/leak.txt": kek,
        "signing/__pycache__/settings.cpython-311.pyc": kek,
        "signing/leak.pyc": kek,
        ".pytest_cache/v/cache/lastfailed": kek,
        ".ruff_cache/content": kek,
        ".hypothesis/examples/x": kek,
        "signing_service.egg-info/PKG-INFO": kek,
    }
    for name, text in planted.items():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_text(text)
    return copy, kek


def test_no_secret_file_and_no_file_holding_the_kek_is_in_the_build_context(
    checkout_with_secrets,
):
    copy, kek = checkout_with_secrets
    context = context_files(copy)

    assert "manage.py" in context  # the listing did find the project
    leaked_by_name = [
        path
        for path in context
        if re.search(
            r"(^|/)(\.env(\..*)?|\.embedded|\.git|\.venv|\.demo|test-artifacts|staticfiles"
            r"|__pycache__|\.pytest_cache|\.ruff_cache|\.hypothesis|[^/]*\.egg-info)(/|$)"
            r"|\.sqlite3|\.pyc$",
            path,
        )
    ]
    assert leaked_by_name == []
    leaked_by_content = [path for path in context if kek.encode() in (copy / path).read_bytes()]
    assert leaked_by_content == []


def test_the_context_still_holds_everything_the_dockerfile_copies(checkout_with_secrets):
    copy, _ = checkout_with_secrets
    context = set(context_files(copy))
    sources = [
        source
        for args in dockerfile_instructions("COPY")
        for source in args.split()[:-1]
        if not source.startswith("--")
    ]
    assert "." not in sources  # only what runs is copied, never the whole context
    assert {"manage.py", "gunicorn.conf.py", "pyproject.toml", "constraints.txt"} <= set(sources)
    for source in sources:
        assert source in context or any(path.startswith(source + "/") for path in context), source


def test_the_container_ignores_a_dot_env_file_that_sits_in_its_folder(checkout_with_secrets):
    copy, kek = checkout_with_secrets
    probe = (
        "import json, os, django; django.setup(); from django.conf import settings; "
        "print(json.dumps([str(settings.BASE_DIR), settings.DEBUG, settings.SIGNING_EMBEDDED, "
        "os.environ.get('SIGNING_KEK')]))"
    )
    bare = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "signing_site.settings"}

    def settings_seen(env: dict[str, str]) -> list:
        done = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=copy,
            env={**bare, **env, "PYTHONPATH": str(copy)},
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    # Outside the image, that .env applies (so the check below can fail)...
    assert settings_seen({}) == [str(copy), True, True, kek]
    # ...inside it, the Dockerfile's environment shuts it out.
    image_env = dockerfile_env()
    assert image_env["SIGNING_ENV_FILE"] == "/dev/null"
    assert image_env["SIGNING_EMBEDDED"] == "0"
    assert settings_seen(image_env) == [str(copy), False, False, None]


def test_what_the_image_copies_runs_the_app_without_the_development_tooling(tmp_path: Path):
    """Every module the Dockerfile copies imports from the copied files alone (so a new
    package the app needs cannot be forgotten), and devtools (chaos, bench, loadtest, the
    sandbox that starts initdb) is not among them."""
    image = tmp_path / "app"
    image.mkdir()
    for args in dockerfile_instructions("COPY"):
        *sources, _ = (arg for arg in args.split() if not arg.startswith("--"))
        for source in sources:
            copy = shutil.copytree if (ROOT / source).is_dir() else shutil.copy2
            copy(ROOT / source, image / source)
    assert not (image / "devtools").exists()
    # This checkout's editable install would find every package here whatever was copied:
    # its finders go, so only the copied files can be imported.
    walk = (
        "import sys; "
        "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in repr(f)]; "
        "sys.path_hooks[:] = [h for h in sys.path_hooks if '__editable__' not in repr(h)]; "
        "sys.path[:] = [p for p in sys.path if '__editable__' not in p]; "
        "sys.path_importer_cache.clear(); "
        "import django, importlib, pkgutil; django.setup(); "
        "from django.core.management import get_commands; "
        "names = [m.name for p in ('kernel', 'keyring', 'records', 'signing', 'signing_site') "
        "for m in pkgutil.walk_packages(importlib.import_module(p).__path__, p + '.') "
        "if '.migrations.' not in m.name and not m.name.endswith('.wsgi')]; "
        "[importlib.import_module(name) for name in names]; "
        "print(len(names), sorted(get_commands()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", walk],
        cwd=image,
        env={
            "PATH": os.environ["PATH"],
            "DJANGO_SETTINGS_MODULE": "signing_site.settings",
            "PYTHONPATH": str(image),
            **dockerfile_env(),
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    modules, commands = done.stdout.split(" ", 1)
    assert int(modules) > 50
    for command in ("sign", "audit", "serve"):
        assert f"'{command}'" in commands
    for command in ("bench", "chaos", "loadtest"):
        assert f"'{command}'" not in commands
