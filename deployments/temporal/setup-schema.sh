#!/bin/sh
# setup-schema.sh — create Temporal's two PostgreSQL databases and bring their schemas up to the
# version this admin-tools image ships. Run by the temporal-schema one-shot in docker-compose.yml,
# before the server starts. Every step is idempotent: an existing database is kept, and
# update-schema only applies the versions that are missing.
# Needs POSTGRES_SEEDS, POSTGRES_USER and SQL_PASSWORD (read by temporal-sql-tool); DB_PORT.
set -eu
: "${POSTGRES_SEEDS:?}" "${POSTGRES_USER:?}" "${SQL_PASSWORD:?}"
port=${DB_PORT:-5432}
schema=${TEMPORAL_SCHEMA_DIR:-/etc/temporal/schema}/postgresql/v12

sql() { temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$port" -u "$POSTGRES_USER" "$@"; }

for db in temporal:temporal temporal_visibility:visibility; do
	name=${db%%:*}
	dir=${db#*:}
	echo "schema: database $name"
	sql --db "$name" create
	sql --db "$name" setup-schema -v 0.0
	sql --db "$name" update-schema -d "$schema/$dir/versioned"
done
echo "schema: up to date"
