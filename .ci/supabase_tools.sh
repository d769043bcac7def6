#!/usr/bin/env bash
# Supabase's own tools against our migrations, on a PostgreSQL 15 server (no Docker):
#   1. after `cmon db migrate`, `supabase migration list` shows every file applied and
#      `supabase db push --dry-run` has nothing to push;
#   2. a database migrated by `supabase db push` is "nothing to apply" for `cmon db migrate`;
#   3. `supabase db lint` (plpgsql_check) reports no error -- and does report a broken
#      function, so the check itself can fail;
#   4. the pgTAP tests in supabase/tests/ pass under pg_prove.
#
#   .ci/supabase_tools.sh "$(.ci/pg15.sh start)"
#
# Needs: tools/supabase-cli (`npm install` there), psql, pg_prove, postgresql-15-pgtap,
# postgresql-15-plpgsql-check, and .venv with cmon installed.
set -euo pipefail
cd "$(dirname "$0")/.."
ADMIN_URL="${1:?usage: $0 SUPERUSER_URL (e.g. from .ci/pg15.sh start)}"
SUPABASE="tools/supabase-cli/node_modules/.bin/supabase"
CMON=".venv/bin/cmon"
export SUPABASE_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1
base="${ADMIN_URL%/*}"

fail() { echo "supabase_tools: $*" >&2; exit 1; }
fresh_db() {
    psql "$ADMIN_URL" -qX -v ON_ERROR_STOP=1 -c "drop database if exists $1 with (force)" -c "create database $1"
    echo "$base/$1"
}

versions=$(ls supabase/migrations/*.sql | sed -E 's|.*/([0-9]{14})_.*|\1|')

echo "-- 1. cmon db migrate, then the CLI's view"
by_cmon=$(fresh_db sb_by_cmon)
$CMON db migrate --database-url "$by_cmon" >/dev/null
listing=$($SUPABASE migration list --db-url "$by_cmon" --workdir . 2>/dev/null)
for v in $versions; do
    grep -Eq "\`$v\` +\| +\`$v\`" <<<"$listing" || fail "migration list: $v not applied remotely"$'\n'"$listing"
done
echo "migration list: $(wc -w <<<"$versions") of $(wc -w <<<"$versions") applied"
dry=$($SUPABASE db push --dry-run --db-url "$by_cmon" --workdir . 2>&1)
grep -q "Remote database is up to date" <<<"$dry" || fail "db push --dry-run would push:"$'\n'"$dry"
echo "db push --dry-run: nothing to push"

echo "-- 2. supabase db push, then cmon db migrate"
by_cli=$(fresh_db sb_by_cli)
psql "$by_cli" -qX -v ON_ERROR_STOP=1 -f supabase/local_bootstrap.sql >/dev/null  # roles Supabase has
$SUPABASE db push --db-url "$by_cli" --workdir . --yes >/dev/null 2>&1
again=$($CMON db migrate --database-url "$by_cli" 2>/dev/null)
grep -q "^nothing to apply" <<<"$again" || fail "cmon db migrate after db push: $again"
echo "cmon db migrate: $again"

echo "-- 3. supabase db lint (plpgsql_check)"
$SUPABASE db lint --db-url "$by_cmon" --workdir . --level error --fail-on error >/dev/null 2>&1 \
    || fail "db lint reports errors: $($SUPABASE db lint --db-url "$by_cmon" --workdir . --level error 2>&1)"
broken=$(fresh_db sb_lint_canary)
psql "$broken" -qX -v ON_ERROR_STOP=1 -c \
    "create function public.canary() returns int language plpgsql as \$\$ begin return (select count(*) from public.no_such_table); end \$\$" >/dev/null
if $SUPABASE db lint --db-url "$broken" --workdir . --level error --fail-on error >/dev/null 2>&1; then
    fail "db lint did not report a function that reads a missing table: the check is blind"
fi
echo "db lint: no error (and a broken canary function is reported)"

echo "-- 4. pgTAP (supabase/tests) with pg_prove"
pg_prove --failures -d "$by_cmon" supabase/tests/*.sql

for db in sb_by_cmon sb_by_cli sb_lint_canary; do
    psql "$ADMIN_URL" -qX -c "drop database if exists $db with (force)"
done
