#!/usr/bin/env bash
# The signing database's two roles, made once by the postgres image on an empty data volume
# (it runs /docker-entrypoint-initdb.d/* as its superuser, POSTGRES_USER), so that:
# - the owner (signing_owner) owns the database and is what `migrate` connects as: it makes,
#   and so owns, every table, sequence and function; it is no superuser;
# - the app role (signing_app) is what web, worker, seeder and executor connect as: rows
#   only, no DDL, no TRUNCATE (kernel/roles.py). `migrate` grants it what it needs.
# The superuser is left for administration. Passwords come from the environment; compose
# requires them. A volume made before this script existed keeps its old roles: recreate it
# (docker-compose down -v) or run this script against it by hand.
set -euo pipefail
: "${SIGNING_DB_OWNER_PASSWORD:?SIGNING_DB_OWNER_PASSWORD is not set}"
: "${SIGNING_DB_APP_PASSWORD:?SIGNING_DB_APP_PASSWORD is not set}"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v owner="${SIGNING_DB_OWNER:-signing_owner}" \
    -v app="${SIGNING_DB_APP_ROLE:-signing_app}" \
    -v database="${SIGNING_DB_NAME:-signing}" \
    -v owner_password="$SIGNING_DB_OWNER_PASSWORD" \
    -v app_password="$SIGNING_DB_APP_PASSWORD" <<'SQL'
CREATE ROLE :"owner" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_password';
CREATE ROLE :"app" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_password';
CREATE DATABASE :"database" OWNER :"owner";
-- Only the roles granted CONNECT (the app role, by migrate) and the owner may connect.
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
\connect :"database"
-- The lease exclusion constraint needs btree_gist; made here so the owner need not.
CREATE EXTENSION IF NOT EXISTS btree_gist;
-- Nobody but the owner creates objects in the schema (PostgreSQL 15's default, made sure).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO :"owner";
SQL
