"""Private, throwaway PostgreSQL, Redis and RabbitMQ servers for the chaos trials and their
tests.

Trials kill and restart servers; doing that to the machine's shared services would break
everything else running on it. These live in a temporary folder, on free ports, and are
gone when the sandbox closes. Nothing here imports Django models.

Each server listens on the loopback address, and also on `host` when one is given (the
address of a bridge that network namespaces reach, tests/chaos/test_many_hosts.py): its
`url` then names that address, so processes in those namespaces can use it too.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

LOOPBACK = "127.0.0.1"


class SandboxError(RuntimeError):
    """A private server could not be started; the message says which and why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, *, what: str, timeout: float = 30.0, every: float = 0.05):
    """Poll until `check()` is truthy; raise SandboxError naming `what` after the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if result := check():
                return result
        except Exception:  # a server still starting refuses connections
            pass
        if time.monotonic() > deadline:
            raise SandboxError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(every)


def postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    if path := shutil.which(name):
        return path
    raise SandboxError(f"{name} not found (install PostgreSQL's server package)")


class PrivateRedis:
    """A redis-server that keeps nothing on disk: a restart empties every queue."""

    def __init__(self, root: Path, *, host: str = LOOPBACK) -> None:
        self.port = free_port()
        self.root = root
        self.host = host
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise SandboxError("redis-server not found")
        self.process = subprocess.Popen(
            [
                server,
                "--port",
                str(self.port),
                "--bind",
                " ".join(dict.fromkeys([LOOPBACK, self.host])),
                # No password: beyond the loopback it answers only if told to.
                "--protected-mode",
                "yes" if self.host == LOOPBACK else "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._pings, what=f"redis on port {self.port}")

    def _pings(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def restart_empty(self) -> None:
        """Kill -9 and start again on the same port: every queued message is gone."""
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a hung or frozen host)."""
        assert self.process is not None, "start() first"
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None, "start() first"
        self.process.send_signal(signal.SIGCONT)


# Debian's RabbitMQ, without the wrapper in /usr/sbin (which switches to the rabbitmq user and
# its own folders, and would not pass our environment through).
RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
RABBITMQCTL = RABBITMQ_SERVER.with_name("rabbitmqctl")


class PrivateRabbitMQ:
    """A RabbitMQ node of its own (its own name, ports, config and data folder), for the
    broker trials that use RabbitMQ instead of Redis. Started on first use: it takes a few
    seconds, and most trials never need it."""

    def __init__(self, root: Path, *, host: str = LOOPBACK) -> None:
        self.port = free_port()
        self.dist_port = free_port()
        self.root = root / "rabbitmq"
        self.host = host
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/%2F"

    @property
    def env(self) -> dict[str, str]:
        node = f"chaos{self.port}@localhost"
        return {
            **os.environ,
            "HOME": str(self.root),  # its Erlang cookie
            "RABBITMQ_NODENAME": node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.root / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_PID_FILE": str(self.root / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self, *, empty: bool = False) -> None:
        """Start the node; `empty`: without the queues and messages it kept on disk."""
        if not RABBITMQ_SERVER.exists():
            raise SandboxError(f"{RABBITMQ_SERVER} not found (install RabbitMQ's package)")
        if empty:
            shutil.rmtree(self.root / "mnesia", ignore_errors=True)
        self.root.mkdir(exist_ok=True)
        (self.root / "rabbitmq.conf").write_text(self._config())
        for name, text in (("rabbitmq-env.conf", ""), ("enabled_plugins", "[].\n")):
            (self.root / name).write_text(text)
        self.process = subprocess.Popen(
            [RABBITMQ_SERVER],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(self._accepts, what=f"rabbitmq on port {self.port}", timeout=60)

    def _config(self) -> str:
        lines = [f"listeners.tcp.local = {LOOPBACK}:{self.port}"]
        if self.host != LOOPBACK:
            # guest may only log in over the loopback unless told otherwise; this node is
            # throwaway and listens on nothing but the loopback and `host`.
            lines += [f"listeners.tcp.shared = {self.host}:{self.port}", "loopback_users = none"]
        return "\n".join(lines) + "\n"

    def _accepts(self) -> bool:
        with socket.create_connection((self.host, self.port), timeout=1):
            return (self.root / "pid").exists()

    def ctl(self, *args: str) -> list[list[str]]:
        """Ask the node with rabbitmqctl (`list_queues name messages_ready`, ...): its rows,
        split on tabs. What a test reads of the broker's own view (who holds what)."""
        done = subprocess.run(
            [str(RABBITMQCTL), "--quiet", "--no-table-headers", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise SandboxError(f"rabbitmqctl {args[0]} failed: {done.stderr.strip()[-300:]}")
        return [line.split("\t") for line in done.stdout.splitlines() if line.strip()]

    def _beam(self) -> int:
        """The Erlang VM's pid: the process that holds the queues and answers clients."""
        return int((self.root / "pid").read_text().split()[0])

    def pause(self) -> None:
        os.kill(self._beam(), signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self._beam(), signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, FileNotFoundError, ValueError):
                os.kill(self._beam(), signal.SIGCONT)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None
        (self.root / "pid").unlink(missing_ok=True)


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb in a temp folder), on a free port."""

    def __init__(self, root: Path, *, host: str = LOOPBACK) -> None:
        self.port = free_port()
        self.host = host
        self.data = root / "pgdata"
        self.socket_dir = root / "pgsocket"
        self.log = root / "postgres.log"
        self._as_postgres = os.geteuid() == 0  # initdb and pg_ctl refuse to run as root

    @property
    def url(self) -> str:
        return f"postgres://postgres@{self.host}:{self.port}/signing"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        done = subprocess.run(
            [*prefix, *command], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise SandboxError(f"{Path(command[0]).name} failed: {done.stderr.strip()[-500:]}")

    def init(self) -> None:
        for folder in (self.data, self.socket_dir):
            folder.mkdir(parents=True)
        self.log.touch()
        if self._as_postgres:
            shutil.chown(self.data.parent, "postgres")
            for path in (self.data, self.socket_dir, self.log):
                shutil.chown(path, "postgres")
        self._run(
            postgres_bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        if self.host != LOOPBACK:
            # initdb trusts the loopback only; also trust the subnets this machine is on
            # (the bridge behind `host` among them), as throwaway as the rest.
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write("host all all samenet trust\n")
        self.start()
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE signing")

    def _dsn(self, dbname: str) -> str:
        return f"host={LOOPBACK} port={self.port} user=postgres dbname={dbname} connect_timeout=2"

    def start(self) -> None:
        listen = ",".join(dict.fromkeys([LOOPBACK, self.host]))
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses={listen} -c fsync=off"
        self._run(
            postgres_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "start",
        )
        wait_for(self._accepts, what=f"postgres on port {self.port}")

    def _accepts(self) -> bool:
        with psycopg.connect(self._dsn("postgres")) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    def stop(self, mode: str = "fast") -> None:
        self._run(postgres_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop the way a crash does (immediate: no checkpoint, connections cut), start again."""
        self.stop("immediate")
        self.start()

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self._dsn("signing"), autocommit=True)


class Sandbox:
    """The private servers in one temporary folder; `env` points a process at them.

    `host`: an address of this machine (a bridge's) the servers listen on besides the
    loopback, and that their URLs name; it must exist before they start.
    """

    def __init__(self, *, host: str = LOOPBACK) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="signing-sandbox-")
        self.root = Path(self._tmp.name)
        self.redis = PrivateRedis(self.root, host=host)
        self.postgres = PrivatePostgres(self.root, host=host)
        self.rabbitmq = PrivateRabbitMQ(self.root, host=host)

    @property
    def env(self) -> dict[str, str]:
        # The trials are about these servers: never embedded mode, whatever .env says.
        return {
            "DATABASE_URL": self.postgres.url,
            "BROKER_URL": self.redis.url,
            "SIGNING_EMBEDDED": "0",
        }

    def __enter__(self) -> Sandbox:
        try:
            self.redis.start()
            self.postgres.init()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.redis.kill()
        self.rabbitmq.kill()
        try:
            if (self.postgres.data / "postmaster.pid").exists():
                self.postgres.stop("immediate")
        except SandboxError:
            pass
        finally:
            self._tmp.cleanup()
