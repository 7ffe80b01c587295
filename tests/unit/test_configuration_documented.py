"""Every environment variable the service reads is named in docs/configuration.md, which
says it lists every one.

Found in the source, not listed by hand: each read of the environment (`os.environ.get`,
`os.environ[...]`, `os.getenv`, settings' `env_int`, kernel.backends' `setting` and its
`environ` parameter) whose name is a string, or a module constant holding one
(keyring.sealing's KEK_ENV).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    *(
        path
        for app in ("kernel", "keyring", "records", "signing", "signing_site")
        for path in (ROOT / app).rglob("*.py")
        if "migrations" not in path.parts
    ),
    ROOT / "gunicorn.conf.py",
    ROOT / "manage.py",
]
# Functions called by name that read one variable: settings' env_int, kernel.backends'
# setting (the environment over the env file), and getenv imported from os.
READERS = {"env_int", "setting", "getenv"}
NOT_OURS = {
    "DJANGO_SETTINGS_MODULE",  # Django's own, set by manage.py and the WSGI module
    "PYTHONPATH",  # Python's own: rundramatiq extends it for the worker processes
}
DOCUMENTED = (ROOT / "docs" / "configuration.md").read_text()


def names_read(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text())
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and _reads_environment(node.func):
            argument = node.args[0]
        elif isinstance(node, ast.Subscript) and _is_os_environ(node.value):
            if not isinstance(node.ctx, ast.Load):
                continue
            argument = node.slice
        else:
            continue
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
            yield argument.value
        elif isinstance(argument, ast.Name) and argument.id in constants:
            yield constants[argument.id]


def _reads_environment(function: ast.expr) -> bool:
    if isinstance(function, ast.Name):
        return function.id in READERS
    if isinstance(function, ast.Attribute) and function.attr == "get":
        return _is_os_environ(function.value)
    return isinstance(function, ast.Attribute) and function.attr == "getenv"


def _is_os_environ(node: ast.expr) -> bool:
    """`os.environ`, or a parameter named `environ` (kernel.backends takes it as one)."""
    if isinstance(node, ast.Name):
        return node.id == "environ"
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def every_name_read() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in SOURCES:
        for name in names_read(path):
            found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


def test_the_finder_sees_reads_of_every_kind() -> None:
    found = every_name_read()
    for name in (
        "DJANGO_SECRET_KEY",  # os.environ.get in settings
        "SIGNING_BATCH_SIZE",  # env_int in settings
        "SIGNING_EMBEDDED_DB",  # setting() in kernel.backends
        "SIGNING_KEK",  # a module constant, in keyring.sealing
        "WEB_TIMEOUT",  # gunicorn.conf.py
        "SIGNING_DATABASE_NAME",  # os.environ[...] in settings
        "SIGNING_ENV_FILE",  # environ.get in kernel.backends, environ a parameter
    ):
        assert name in found, name


def test_every_environment_variable_read_is_in_configuration_md() -> None:
    missing = {
        name: where
        for name, where in every_name_read().items()
        if name not in NOT_OURS and not re.search(rf"`{name}[`=]", DOCUMENTED)
    }
    assert not missing, f"not in docs/configuration.md: {missing}"
