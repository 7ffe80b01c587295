"""Settings for the signing service, every one read from the environment (12-factor).

A `.env` file at the project root (written by `make demo` and by the first manage.py
command that decides on embedded mode, git-ignored) is read first; variables already in the
environment win over it. SIGNING_ENV_FILE names another file (the tests use their own).
"""

import importlib.util
import ipaddress
import os
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

import dj_database_url
from dotenv import dotenv_values, load_dotenv

from kernel import backends, events

BASE_DIR = Path(__file__).resolve().parent.parent
ENV_FILE = backends.env_file_path(os.environ, BASE_DIR)
_GIVEN_ENVIRONMENT = dict(os.environ)  # before .env: commands say where a setting came from
load_dotenv(ENV_FILE, override=False)


def env_int(name: str, default: int, *, minimum: int = 1, maximum: int | None = None) -> int:
    """Read a whole-number setting (from `minimum` to `maximum`), failing at start-up with
    its name: a bad value is the environment's fault, and the message says which variable."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SystemExit(f"{name} must be {minimum} or more, got {value}")
    if maximum is not None and value > maximum:
        raise SystemExit(f"{name} must be at most {maximum}, got {value}")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...], *, upper: bool = False) -> str:
    """Read a setting that is one of `choices` (any case), failing at start-up with one
    line that names it and the values it takes, as env_int does."""
    raw = os.environ.get(name, "").strip()
    value = (raw.upper() if upper else raw.lower()) if raw else default
    if value not in choices:
        raise SystemExit(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-insecure-secret-key")
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    # signing comes before django_dramatiq so that its rundramatiq command wins.
    "records",
    "keyring",
    "signing",
    "django_dramatiq",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
]
# Development tooling (chaos, bench, loadtest): in a checkout only, never in the image. This
# checkout's own folder, not any importable package of that name (PyPI has a `devtools`).
_DEVTOOLS = importlib.util.find_spec("devtools")
if _DEVTOOLS is not None and Path(_DEVTOOLS.origin or "").parent == BASE_DIR / "devtools":
    INSTALLED_APPS += ["devtools"]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "signing_site.urls"
WSGI_APPLICATION = "signing_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The servers, or embedded mode (SQLite and an in-process broker): kernel.backends
# says how it is decided. Read, never probed: manage.py probes and records before this
# runs when nothing decides it, and prints the decision's announcement on stderr.
SIGNING_BACKENDS = backends.choose(
    _GIVEN_ENVIRONMENT,
    base_dir=BASE_DIR,
    env_file=ENV_FILE,
    env_file_values=dotenv_values(ENV_FILE),
)
SIGNING_EMBEDDED = SIGNING_BACKENDS.embedded
# The names (never the values) of the variables given to this process itself, not read from
# the env file: `demo` says what a later command must be given to open the data it signed
# (backends.to_reopen).
SIGNING_NAMES_GIVEN = frozenset(_GIVEN_ENVIRONMENT)
DATABASE_URL = SIGNING_BACKENDS.database_url
# Every transaction here is short. One left idle (its process paused or wedged) would keep
# its locks, the keyring lock among them, so PostgreSQL ends its session after this long.
# Keep it under the lease TTL, or a paused holder of the keyring lock lets leases expire.
SIGNING_IDLE_TRANSACTION_TIMEOUT = env_int(
    "SIGNING_IDLE_TRANSACTION_TIMEOUT", max(2, env_int("SIGNING_LEASE_TTL", 30) // 3)
)
if SIGNING_EMBEDDED:
    # Readable by its owner only: folder 0700, file 0600 (signing.apps keeps it so).
    backends.keep_sqlite_private(SIGNING_BACKENDS.sqlite_path, base_dir=BASE_DIR)
    # BEGIN IMMEDIATE takes SQLite's write lock when a transaction starts, so a transaction
    # is as serialized as one under PostgreSQL's keyring lock, and never fails half-way
    # upgrading a read to a write. WAL lets the dashboard read while a worker writes, and
    # synchronous=FULL keeps a committed batch through a power cut, as PostgreSQL does
    # (NORMAL was 8% quicker at batch size 10, docs/benchmarks.md).
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": SIGNING_BACKENDS.sqlite_path,
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
            },
            "TEST": {"NAME": SIGNING_BACKENDS.sqlite_path.with_name("test.sqlite3")},
        }
    }
else:
    # Health checks: a connection that PostgreSQL dropped (a restart) is replaced, not reused.
    DATABASES = {
        "default": dj_database_url.parse(DATABASE_URL, conn_max_age=600, conn_health_checks=True)
    }
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = (
        f"-c idle_in_transaction_session_timeout={SIGNING_IDLE_TRANSACTION_TIMEOUT * 1000}"
    )
    DATABASES["default"].setdefault("TEST", {})
    if os.environ.get("SIGNING_DATABASE_NAME"):  # checked by backends.database_name
        DATABASES["default"]["NAME"] = backends.database_name(os.environ["SIGNING_DATABASE_NAME"])
# The database operations of the run path, one implementation per mode (signing.backends).
SIGNING_DATABASE_BACKEND = (
    "signing.backends.sqlite.SQLiteBackend"
    if SIGNING_EMBEDDED
    else "signing.backends.postgresql.PostgreSQLBackend"
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# --- Dramatiq -------------------------------------------------------------------------
BROKER_URL = SIGNING_BACKENDS.broker_url
_BROKER_CLASSES = {
    "redis": "dramatiq.brokers.redis.RedisBroker",
    "rediss": "dramatiq.brokers.redis.RedisBroker",
    "amqp": "dramatiq.brokers.rabbitmq.RabbitmqBroker",
    "amqps": "dramatiq.brokers.rabbitmq.RabbitmqBroker",
}
_scheme = urlparse(BROKER_URL).scheme
if _scheme not in _BROKER_CLASSES:
    raise SystemExit(f"BROKER_URL must start with redis:// or amqp://, got {BROKER_URL!r}")

# A Redis that stops answering (paused, its host gone) must fail a send or a fetch within
# seconds, not hang the thread for good: redis-py waits without limit unless told. A send
# that fails gives its batch back at once, and the reaper dispatches again once Redis
# answers (docs/reliability.md). Values already in BROKER_URL win.
BROKER_TIMEOUT_SECONDS = 5


def _with_redis_timeouts(url: str) -> str:
    parsed = urlparse(url)
    if not parsed.scheme.startswith("redis"):
        return url
    query = dict(parse_qsl(parsed.query))
    for option in ("socket_timeout", "socket_connect_timeout"):
        query.setdefault(option, str(BROKER_TIMEOUT_SECONDS))
    return urlunparse(parsed._replace(query=urlencode(query)))


DRAMATIQ_BROKER = {
    # Embedded: the broker lives in the process, and so do the workers that consume it
    # (signing.ops.workers.EmbeddedWorkers).
    "BROKER": "dramatiq.brokers.stub.StubBroker" if SIGNING_EMBEDDED else _BROKER_CLASSES[_scheme],
    "OPTIONS": {} if SIGNING_EMBEDDED else {"url": _with_redis_timeouts(BROKER_URL)},
    # No AdminMiddleware: it writes a row per message, and the tables of record here are
    # the leases and batches. DatabaseConnections closes a connection that failed (a
    # restarted PostgreSQL), so its message's retry gets a new one, without the health
    # check query per message that django_dramatiq's DbConnectionsMiddleware costs.
    "MIDDLEWARE": [
        "dramatiq.middleware.AgeLimit",
        "dramatiq.middleware.TimeLimit",
        "dramatiq.middleware.Callbacks",
        "dramatiq.middleware.Retries",
        "dramatiq.middleware.CurrentMessage",
        "signing.ops.connections.DatabaseConnections",
        "signing.runs.reaper.ReaperMiddleware",
        "signing.runs.reaper.FollowTickMiddleware",
    ],
}
DRAMATIQ_AUTODISCOVER_MODULES = ["runs.actors"]  # signing.runs.actors
DRAMATIQ_ENCODER = "signing.ops.encoding.OrjsonEncoder"

# --- Signing --------------------------------------------------------------------------
# At most signing.runs.dispatch.MAX_BATCH_SIZE (PostgreSQL's integer; settings import no app,
# so the number is written here too; a test in tests/integration/test_commands.py holds them
# equal).
SIGNING_BATCH_SIZE = env_int("SIGNING_BATCH_SIZE", 1000, maximum=2_147_483_647)
SIGNING_LEASE_TTL = env_int("SIGNING_LEASE_TTL", 30)
# How many times a batch may be leased before the run gives up on it and fails.
SIGNING_MAX_ATTEMPTS = env_int("SIGNING_MAX_ATTEMPTS", 5)
# How often each worker process tries to run the reaper (one at a time across all workers,
# under an advisory lock): expired leases are closed at most this long after they expire.
# At most a third of the TTL (and at least 1 s): an expired lease then waits at most a third
# of a TTL for its batch to go back. A longer interval is refused, not quietly capped: the
# value an operator set is the one that runs, or the process says why it will not start.
_MAX_REAPER_INTERVAL = max(1, SIGNING_LEASE_TTL // 3)
SIGNING_REAPER_INTERVAL = env_int("SIGNING_REAPER_INTERVAL", min(5, _MAX_REAPER_INTERVAL))
if SIGNING_REAPER_INTERVAL > _MAX_REAPER_INTERVAL:
    raise SystemExit(
        f"SIGNING_REAPER_INTERVAL must be at most {_MAX_REAPER_INTERVAL} (a third of "
        f"SIGNING_LEASE_TTL={SIGNING_LEASE_TTL}, at least 1), got {SIGNING_REAPER_INTERVAL}"
    )
# How many batches of one run may be leased at once: enough to keep every worker thread
# busy while the next dispatch happens; the keyring's size bounds it too.
SIGNING_MAX_IN_FLIGHT = env_int("SIGNING_MAX_IN_FLIGHT", 16)
# Follow runs (signing.runs.follow): the longest a record waits for a batch to fill before
# what is waiting is cut as a smaller batch, in milliseconds. The workers check every
# quarter of it (at least 10 ms, at most 1 s). At most an hour: a longer wait is a typo.
SIGNING_FOLLOW_MAX_WAIT_MS = env_int("SIGNING_FOLLOW_MAX_WAIT_MS", 200)
if SIGNING_FOLLOW_MAX_WAIT_MS > 3_600_000:
    raise SystemExit(
        f"SIGNING_FOLLOW_MAX_WAIT_MS must be at most 3600000 (an hour), "
        f"got {SIGNING_FOLLOW_MAX_WAIT_MS}"
    )
# Follow runs: a signed checkpoint of the run's root every this many batches (signing.runs
# .checkpoints). At most a million: a larger one is a typo, and would mean no checkpoint.
SIGNING_FOLLOW_CHECKPOINT_BATCHES = env_int("SIGNING_FOLLOW_CHECKPOINT_BATCHES", 100)
if SIGNING_FOLLOW_CHECKPOINT_BATCHES > 1_000_000:
    raise SystemExit(
        f"SIGNING_FOLLOW_CHECKPOINT_BATCHES must be at most 1000000, "
        f"got {SIGNING_FOLLOW_CHECKPOINT_BATCHES}"
    )
# A finished run whose audit is not recorded this long after its audit_run was sent gets
# another (the reaper sends it): the message was lost, or the worker auditing it died. As
# long as the audit actor's own time limit, so a slow audit is not asked for twice.
SIGNING_AUDIT_RESEND_SECONDS = env_int("SIGNING_AUDIT_RESEND_SECONDS", 600)
# The KEK is read when a key is sealed or opened (keyring.sealing), never at import, so
# commands that need no private key (migrate, audit) run without it.

# Structured lines: an event name, then key=value fields (ids, kid, counts, timings) and
# never key material. Commands log warnings only; `rundramatiq` raises workers to INFO.
SIGNING_LOG_LEVEL = env_choice("SIGNING_LOG_LEVEL", "WARNING", events.LOG_LEVELS, upper=True)
# "text" (`time LEVEL logger event key=value …`) or "json" (one object per line): every
# line of the process, Dramatiq's and Django's too (kernel.events.logging_config).
SIGNING_LOG_FORMAT = env_choice("SIGNING_LOG_FORMAT", "text", events.LOG_FORMATS)
LOGGING = events.logging_config(
    log_format=SIGNING_LOG_FORMAT,
    level=SIGNING_LOG_LEVEL,
    # Worker life: booting, "ready for action" (WorkerPool.wait_ready reads it), consumer
    # restarts after a broker outage. Embedded workers are threads of the command the
    # user watches, whose output their start and stop lines would only clutter.
    dramatiq_level="WARNING" if SIGNING_EMBEDDED else "INFO",
)

# --- REST API -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["signing.api.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "signing.api.openapi.ContractAutoSchema",
    "DEFAULT_PAGINATION_CLASS": "signing.api.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_RATES": {
        "start-run": os.environ.get("SIGNING_START_RUN_THROTTLE", "30/minute"),
    },
    "EXCEPTION_HANDLER": "signing.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Record signing service API",
    "DESCRIPTION": (
        "Start and watch signing runs, read keys (public parts only) and signed records, "
        "and verify signatures. Authenticate with `Authorization: Token <token>` "
        "(POST /api/auth/token/)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The schema and its docs describe the API; they hold no data, so no login is needed.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
}
# A request body larger than this is refused before it is parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024

# --- Production serving -----------------------------------------------------------------
# gunicorn (gunicorn.conf.py) serves the WSGI app in the image and in compose, and WhiteNoise
# (the middleware right after SecurityMiddleware) serves /static/ from inside it: no other
# server is needed, and `make serve` (runserver --insecure) stays the development way.
STATIC_ROOT = Path(os.environ.get("SIGNING_STATIC_ROOT") or STATIC_ROOT)
# Set where collectstatic runs (the Dockerfile sets it before running it): hashed, gzipped
# copies in STATIC_ROOT and a manifest, so browsers may cache each name for good. Unset (a
# checkout: make serve, the tests), nothing needs collectstatic first: plain names, found in
# the apps' folders at each request. The manifest storage cannot be the default, because it
# answers every page with a 500 (a name missing from the manifest) until collectstatic ran.
SIGNING_COLLECTED_STATIC = os.environ.get("SIGNING_COLLECTED_STATIC", "0") == "1"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if SIGNING_COLLECTED_STATIC
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = not SIGNING_COLLECTED_STATIC
# Files served at the site's root: browsers ask every page's site for /favicon.ico.
WHITENOISE_ROOT = BASE_DIR / "static" / "root"
WHITENOISE_AUTOREFRESH = DEBUG or not SIGNING_COLLECTED_STATIC

# --- Bounded cost per request (issue 15) ---------------------------------------------------
# /metrics runs a few whole-table aggregates: a scrape answered within this many seconds of
# the last one gets the same text from the cache (Django's default cache: LocMemCache, one
# per process, so a burst costs one set of queries per process per interval; point CACHES
# at a shared cache to make it one per deployment). 0 computes every scrape.
SIGNING_METRICS_CACHE_SECONDS = env_int("SIGNING_METRICS_CACHE_SECONDS", 5, minimum=0)
# Who may scrape /metrics: the client address (REMOTE_ADDR: behind a reverse proxy, the
# proxy's) must be in one of these networks ("*" for any); loopback and private networks by
# default, so Prometheus on the host, in the compose network or on a LAN works unchanged
# and the open internet gets 403. When SIGNING_METRICS_TOKEN is set, a scrape must also
# send `Authorization: Bearer <token>` (else 401). Refused scrapes run no query.
SIGNING_METRICS_ALLOWED_NETWORKS = os.environ.get(
    "SIGNING_METRICS_ALLOWED_NETWORKS",
    "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7",
)
for _network in SIGNING_METRICS_ALLOWED_NETWORKS.split(","):
    if _network.strip() not in {"", "*"}:
        try:
            ipaddress.ip_network(_network.strip(), strict=False)
        except ValueError as _error:
            raise SystemExit(f"SIGNING_METRICS_ALLOWED_NETWORKS: {_error}") from None
SIGNING_METRICS_TOKEN = os.environ.get("SIGNING_METRICS_TOKEN", "")
# A run with more leases than this draws its lease timeline as a summary (one segment per
# key per slice of the run, at most SIGNING_TIMELINE_MAX_SEGMENTS of them) instead of one
# bar per lease: a page and its SVG stay the same size however long the run.
SIGNING_TIMELINE_MAX_LEASES = env_int("SIGNING_TIMELINE_MAX_LEASES", 2000)
SIGNING_TIMELINE_MAX_SEGMENTS = env_int("SIGNING_TIMELINE_MAX_SEGMENTS", 1000)
# The run page's charts partial (every open page asks every 3 s) is cached per run this long.
SIGNING_CHARTS_CACHE_SECONDS = env_int("SIGNING_CHARTS_CACHE_SECONDS", 2, minimum=0)

# --- Least privilege: database roles ------------------------------------------------------
# DATABASE_URL is the role this process works as. In a deployment that is the app role,
# which reads and writes rows and owns nothing: no DDL, no TRUNCATE (kernel/roles.py).
# DATABASE_OWNER_URL, when set, names the database owner: `migrate` and the commands that
# reset (seed --reset, demo, bench, flush) connect with its user, password, host and port to
# the same database. Unset, DATABASE_URL's role does everything, as on a laptop whose
# PostgreSQL user is the superuser.
DATABASE_OWNER_URL = os.environ.get("DATABASE_OWNER_URL", "").strip()
SIGNING_OWNER_DATABASE = (
    dj_database_url.parse(DATABASE_OWNER_URL)
    if DATABASE_OWNER_URL and not SIGNING_EMBEDDED
    else None
)
# The role `migrate` grants the app's privileges to, and `ensure_db` creates when it may
# (with SIGNING_DB_APP_PASSWORD, if set, as its password).
SIGNING_DB_APP_ROLE = os.environ.get("SIGNING_DB_APP_ROLE", "").strip() or "signing_app"
if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", SIGNING_DB_APP_ROLE):
    raise SystemExit(
        "SIGNING_DB_APP_ROLE must be lower-case letters, digits and underscores (at most 63, "
        f"not starting with a digit), got {SIGNING_DB_APP_ROLE!r}"
    )
SIGNING_DB_APP_PASSWORD = os.environ.get("SIGNING_DB_APP_PASSWORD", "")

# --- Hardening: safe defaults with DEBUG off (docs/deployment.md, "Production settings") ---
# SECRET_KEY and ALLOWED_HOSTS are checked where the app is served, not here: manage.py
# commands (sign, seed, audit, rundramatiq, migrate) serve nothing and must run on a
# developer's machine with no DJANGO_SECRET_KEY. kernel.safety refuses to serve over
# the network (the WSGI app that gunicorn loads, runserver or `serve` on a non-loopback
# address) with DEBUG off and the development key or open hosts.
DEVELOPMENT_SECRET_KEY = "dev-only-insecure-secret-key"
ALLOWED_HOSTS = [host.strip() for host in ALLOWED_HOSTS if host.strip()]

# Served over HTTPS by a reverse proxy that terminates TLS and sets X-Forwarded-Proto
# (docs/deployment.md, "Production settings"): secure cookies, HSTS, and a redirect of plain HTTP.
SIGNING_BEHIND_TLS_PROXY = os.environ.get("SIGNING_BEHIND_TLS_PROXY", "0") == "1"
if SIGNING_BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    # The container's health check and an in-network scraper speak plain HTTP to the app.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # One year, as browsers' preload lists ask. Subdomains and preloading commit every
    # host of the domain to HTTPS: the operator's call, so off unless asked for.
    SECURE_HSTS_SECONDS = env_int("SIGNING_HSTS_SECONDS", 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = os.environ.get("SIGNING_HSTS_INCLUDE_SUBDOMAINS") == "1"
    SECURE_HSTS_PRELOAD = os.environ.get("SIGNING_HSTS_PRELOAD") == "1"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]

# Brute-force protection: django-axes counts failed logins in the database, so every
# gunicorn process and worker host sees the same count, and it sees every authenticate()
# call with a request: the login page, the admin login and /api/auth/token/ alike.
# A client (username and address together, so nobody locks another user out from
# elsewhere) is locked out after SIGNING_LOGIN_FAILURE_LIMIT failures for
# SIGNING_LOGIN_COOLOFF_MINUTES; a failure while locked out starts the cool-off again.
# An admin unlocks one early: Axes > Access attempts in the admin, or `manage.py axes_reset`.
INSTALLED_APPS += ["axes"]
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]  # last, as axes asks
AUTHENTICATION_BACKENDS = [
    "signing.ops.logins.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("SIGNING_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("SIGNING_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "signing.ops.logins.client_address"
AXES_LOCKOUT_CALLABLE = "signing.ops.logins.lockout_response"
AXES_RESET_ON_SUCCESS = True

# API tokens live this long from when they were issued; a password change deletes them.
SIGNING_TOKEN_TTL_HOURS = env_int("SIGNING_TOKEN_TTL_HOURS", 24)
REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"] = [
    "signing.api.authentication.ExpiringTokenAuthentication",
    "rest_framework.authentication.SessionAuthentication",
]

# Error pages and reports, with DEBUG on or off, hide the KEK, URLs (database, broker)
# and any password written into a URL, besides what Django hides already.
DEFAULT_EXCEPTION_REPORTER_FILTER = "signing_site.error_reports.SecretsHiddenFilter"
DEFAULT_EXCEPTION_REPORTER = "signing_site.error_reports.SecretsHiddenReporter"
