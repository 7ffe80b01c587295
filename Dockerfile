# One image for web, workers, the seeder and the executor.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

RUN apt-get update \
    && apt-get install -y --no-install-recommends openssl \
    && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml constraints.txt ./
COPY signing_site ./signing_site
COPY records ./records
COPY keyring ./keyring
COPY signing ./signing
RUN pip install --no-cache-dir -c constraints.txt -e .

COPY . .
RUN useradd --create-home signer && chown -R signer /app
USER signer

EXPOSE 8000
CMD ["python", "manage.py", "runserver", "0.0.0.0:8000"]
