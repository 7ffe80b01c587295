# One image for web, workers, the seeder and the executor. Only what runs is copied in, and
# .dockerignore keeps the rest (.env, .embedded, .git, .venv above all) out of the context.
FROM python:3.11-slim

# SIGNING_ENV_FILE=/dev/null: settings never read a .env here (nor write one: /dev/null
# swallows what kernel.backends.record appends), so a developer's SIGNING_EMBEDDED=1
# or DJANGO_DEBUG=1 can never apply in a container: its settings are its environment.
# SIGNING_EMBEDDED=0: the servers, never a probe. SIGNING_COLLECTED_STATIC=1: collectstatic
# below writes hashed, gzipped files and their manifest, and WhiteNoise serves those.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    SIGNING_ENV_FILE=/dev/null SIGNING_EMBEDDED=0 SIGNING_COLLECTED_STATIC=1
WORKDIR /app

RUN apt-get update \
    && apt-get install -y --no-install-recommends openssl \
    && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml constraints.txt ./
COPY signing_site ./signing_site
COPY records ./records
COPY keyring ./keyring
COPY signing ./signing
COPY kernel ./kernel
RUN pip install --no-cache-dir -c constraints.txt -e .

COPY manage.py gunicorn.conf.py ./
COPY templates ./templates
COPY static ./static
RUN python manage.py collectstatic --noinput -v 0

# The code stays root's, read-only to the app; only .demo (logs of demo and serve,
# if someone runs them in a container) is the app user's to write.
RUN useradd --create-home signer && install -d -o signer /app/.demo
USER signer

EXPOSE 8000
CMD ["gunicorn", "--config", "gunicorn.conf.py", "signing_site.wsgi:application"]
