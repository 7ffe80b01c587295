"""gunicorn's settings for the web app (the image's default command and compose's `web`).

Every value comes from the environment, with a default that suits one small host:

| env var | default | meaning |
|---|---|---|
| WEB_BIND | 0.0.0.0:$PORT | address to listen on (PORT defaults to 8000) |
| WEB_CONCURRENCY | 2 | worker processes (gunicorn's own variable) |
| WEB_THREADS | 4 | threads per worker: pages wait on PostgreSQL, not the CPU |
| WEB_TIMEOUT | 30 | seconds a request may run before its worker is replaced |
| FORWARDED_ALLOW_IPS | 127.0.0.1,::1 | proxies whose X-Forwarded-* headers are believed |

Behind a reverse proxy on another host or container, set FORWARDED_ALLOW_IPS to its address
(or network): only then does gunicorn believe its `X-Forwarded-Proto: https`. Never `*`
while the port can be reached without the proxy: anyone could then say they came over TLS.
"""

import os

bind = [os.environ.get("WEB_BIND") or f"0.0.0.0:{os.environ.get('PORT') or 8000}"]
workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
threads = int(os.environ.get("WEB_THREADS") or 4)
worker_class = "gthread"
timeout = int(os.environ.get("WEB_TIMEOUT") or 30)
# A stopped container gets SIGTERM, then SIGKILL 10 s later (Docker's default): requests
# under way finish first.
graceful_timeout = 8
keepalive = 5
# The heartbeat file on a memory file system: on overlayfs its writes can stall a worker.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS") or "127.0.0.1,::1"
# No control socket: nothing here uses gunicornc, and two servers on one host (or the
# tests beside a developer's) would share its default path under $HOME.
control_socket_disable = True

accesslog = "-"
errorlog = "-"
# The path without its query string (%(U)s) and no Referer: either may carry a token or a
# search someone should not find in a log. Time taken in milliseconds (%(M)s).
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'

# SIGNING_LOG_FORMAT=json: gunicorn's own lines (its error log and the access log above, the
# access line as the object's `message`) go to the one handler settings configure
# (kernel.events.logging_config), so the web tier writes nothing but JSON lines either. The
# app's settings configure the same handler again when it loads, leaving these as they are.
if os.environ.get("SIGNING_LOG_FORMAT", "").strip().lower() == "json":
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from kernel.events import logging_config

    logconfig_dict = logging_config(log_format="json", level="WARNING", dramatiq_level="WARNING")
    for _logger in ("gunicorn.error", "gunicorn.access"):
        logconfig_dict["loggers"][_logger] = {"handlers": [], "level": "INFO", "propagate": True}
